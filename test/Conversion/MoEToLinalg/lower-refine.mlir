// RUN: moe-opt %s -split-input-file -moe-lower-gate | FileCheck %s

// moe.refine is decomposed first: the stacked routers viewed as [P · E, H]
// and their biases as [P · E] give every parent's logits at once, a
// linalg.matmul from the widened bias, viewed as [T, P, E]. Then for every
// token and parent slot, the parent's row of the token's logits is copied
// into a [1, E] scratch row and scored there; the gate's selection writes
// top_k experts into the slot's block of the result; the block then gets
// the parent's offset (parent · E) and weight. A dropped parent (-1) gives
// top_k dropped slots.
// CHECK-LABEL: func.func @refine
// CHECK-SAME: (%[[X:[^:]*]]: {{.*}}, %[[IDS:[^:]*]]: {{.*}}, %[[W:[^:]*]]: {{.*}}, %[[WR:[^:]*]]: {{.*}}, %[[RB:[^:]*]]: {{.*}}, %[[SB:[^:]*]]: {{.*}})
// CHECK-NOT: moe.refine
// CHECK-DAG: %[[E:.*]] = arith.constant 8 : i32
// CHECK-DAG: %[[ROUTERS:.*]] = tensor.collapse_shape %[[WR]] {{\[\[}}0, 1], [2]] : tensor<4x8x16xbf16> into tensor<32x16xbf16>
// CHECK-DAG: %[[BIASES:.*]] = tensor.collapse_shape %[[RB]] {{\[\[}}0, 1]] : tensor<4x8xbf16> into tensor<32xbf16>
// CHECK: %[[INIT:.*]] = linalg.generic {{.*}} ins(%[[BIASES]] : tensor<32xbf16>) outs(%{{.*}} : tensor<?x32xf32>)
// CHECK: %[[LOGITS:.*]] = linalg.matmul {{.*}} ins(%[[X]], %[[ROUTERS]] : tensor<?x16xbf16>, tensor<32x16xbf16>) outs(%[[INIT]] : tensor<?x32xf32>)
// CHECK: %[[PER_PARENT:.*]] = tensor.expand_shape %[[LOGITS]] {{\[\[}}0], [1, 2]] output_shape [%{{.*}}, 4, 8] : tensor<?x32xf32> into tensor<?x4x8xf32>
// CHECK-DAG: %[[IDS_BUF:.*]] = bufferization.to_buffer %[[IDS]] read_only
// CHECK-DAG: %[[W_BUF:.*]] = bufferization.to_buffer %[[W]] read_only
// CHECK-DAG: %[[LOGITS_BUF:.*]] = bufferization.to_buffer %[[PER_PARENT]] read_only
// CHECK-DAG: %[[SB_BUF:.*]] = bufferization.to_buffer %[[SB]] read_only
// CHECK: %[[OUT_IDS:.*]] = memref.alloc(%{{.*}}) : memref<?x6xi32>
// CHECK: %[[OUT_W:.*]] = memref.alloc(%{{.*}}) : memref<?x6xf32>
// CHECK: %[[SCORES:.*]] = memref.alloc() : memref<1x8xf32>
// CHECK: scf.for %[[T:.*]] = %c0 to
// CHECK: scf.for %[[J:.*]] = %c0 to %c2
// CHECK: %[[PARENT:.*]] = memref.load %[[IDS_BUF]][%[[T]], %[[J]]]
// CHECK: %[[FIRST:.*]] = arith.muli %[[J]], %c3 : index
// CHECK: %[[BLOCK_IDS:.*]] = memref.subview %[[OUT_IDS]][0, %[[FIRST]]] [%{{.*}}, 3] [1, 1]
// CHECK: %[[BLOCK_W:.*]] = memref.subview %[[OUT_W]][0, %[[FIRST]]] [%{{.*}}, 3] [1, 1]
// CHECK: %[[KEPT:.*]] = arith.cmpi sge, %[[PARENT]], %c0_i32
// CHECK: scf.if %[[KEPT]] {
// CHECK: %[[P:.*]] = arith.index_cast %[[PARENT]] : i32 to index
// CHECK: %[[TOKEN_LOGITS:.*]] = memref.subview %[[LOGITS_BUF]][%[[T]], 0, 0] [1, 4, 8] [1, 1, 1]
// CHECK: %[[PARENT_LOGITS:.*]] = memref.subview %[[TOKEN_LOGITS]][%[[P]], 0] [1, 8] [1, 1]
// CHECK: %[[SCORE_ROW:.*]] = memref.subview %[[SCORES]][%c0, 0] [1, 8] [1, 1]
// CHECK: linalg.copy ins(%[[PARENT_LOGITS]] : {{.*}}) outs(%[[SCORE_ROW]] :
// CHECK: math.exp
// CHECK: %[[SB_ROW:.*]] = memref.subview %[[SB_BUF]][%[[P]], 0] [1, 8] [1, 1]
// CHECK: scf.for {{.*}} -> (index, f32)
// CHECK: memref.load %[[SB_ROW]]
// CHECK: memref.store %{{.*}}, %[[BLOCK_IDS]][%[[T]], %{{.*}}]
// CHECK: %[[OFFSET:.*]] = arith.muli %[[PARENT]], %[[E]] : i32
// CHECK: %[[PARENT_W:.*]] = memref.load %[[W_BUF]][%[[T]], %[[J]]]
// CHECK: scf.for
// CHECK: arith.addi %{{.*}}, %[[OFFSET]] : i32
// CHECK: arith.mulf %{{.*}}, %[[PARENT_W]] : f32
// CHECK: } else {
// CHECK: memref.store %c-1_i32, %[[BLOCK_IDS]]
// CHECK: memref.store %cst{{.*}}, %[[BLOCK_W]]
// CHECK: bufferization.to_tensor %[[OUT_IDS]] restrict writable
// CHECK: bufferization.to_tensor %[[OUT_W]] restrict writable
func.func @refine(%x: tensor<?x16xbf16>, %ids: tensor<?x2xi32>,
    %w: tensor<?x2xf32>, %wr: tensor<4x8x16xbf16>, %rb: tensor<4x8xbf16>,
    %sb: tensor<4x8xbf16>) -> (tensor<?x6xi32>, tensor<?x6xf32>) {
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr router_bias(%rb : tensor<4x8xbf16>)
      selection_bias(%sb : tensor<4x8xbf16>) {top_k = 3 : i64}
      : tensor<?x16xbf16>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x8x16xbf16>
      -> tensor<?x6xi32>, tensor<?x6xf32>
  return %ids2, %w2 : tensor<?x6xi32>, tensor<?x6xf32>
}

// -----

// A dense inner level for a consumer that takes slots in any order: expert
// i goes to slot i of the block, with no selection loop.
// CHECK-LABEL: func.func @refine_dense_unordered
// CHECK-NOT: memref<3xi1>
// CHECK-NOT: -> (index, f32)
// CHECK: scf.if
// CHECK: arith.negf
// CHECK: scf.for %[[I:.*]] = %c0 to %c3 step %c1 iter_args(%{{.*}}) -> (f32)
// CHECK: %[[ID:.*]] = arith.index_cast %[[I]] : index to i32
// CHECK: memref.store %[[ID]], %{{.*}}[%{{.*}}, %[[I]]] : memref<?x3xi32, strided<[6, 1], offset: ?>>
// CHECK-NOT: arith.divf
// CHECK: } else {
func.func @refine_dense_unordered(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>,
    %w: tensor<?x2xf32>, %wr: tensor<4x3x16xf32>)
    -> (tensor<?x6xi32>, tensor<?x6xf32>) {
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr
      {top_k = 3 : i64, scoring = #moe.scoring<sigmoid>, normalize_top_k = false,
       unordered}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x3x16xf32>
      -> tensor<?x6xi32>, tensor<?x6xf32>
  return %ids2, %w2 : tensor<?x6xi32>, tensor<?x6xf32>
}

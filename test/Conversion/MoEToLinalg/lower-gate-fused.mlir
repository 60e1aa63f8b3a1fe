// RUN: moe-opt %s -split-input-file -moe-lower-gate | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-lower-gate=token-tile=8 | FileCheck %s --check-prefix=TILE8
// RUN: not moe-opt %s -moe-lower-gate=token-tile=0 -o /dev/null 2>&1 | FileCheck %s --check-prefix=BAD-TILE
// RUN: moe-opt %s -split-input-file -moe-lower-gate=vector-lanes=8 | FileCheck %s --check-prefix=LANES8
// RUN: not moe-opt %s -moe-lower-gate=vector-lanes=0 -o /dev/null 2>&1 | FileCheck %s --check-prefix=BAD-LANES

// The fused gate: one loop over tiles of 16 tokens; the router logits (the
// bias, then register-tiled dot products over the tile's rows of x) and the
// softmax write a [16, E] scratch buffer and every token of the tile is
// selected from it. No [T, E] tensor or buffer exists.
// CHECK-LABEL: func.func @fused_softmax
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xbf16>, %[[WR:.*]]: tensor<4x16xbf16>, %[[RB:.*]]: tensor<4xbf16>)
// CHECK-NOT: tensor<?x4xf32>
// CHECK-NOT: memref<?x4xf32>
// CHECK-DAG: %[[X_BUF:.*]] = bufferization.to_buffer %[[X]] read_only
// CHECK-DAG: %[[WR_BUF:.*]] = bufferization.to_buffer %[[WR]] read_only
// CHECK-DAG: %[[RB_BUF:.*]] = bufferization.to_buffer %[[RB]] read_only
// CHECK: %[[SCORES:.*]] = memref.alloc() : memref<16x4xf32>
// CHECK: scf.for %[[FIRST:.*]] = %c0 to %{{.*}} step %c16
// CHECK: %[[COUNT:.*]] = arith.minui
// CHECK: %[[TILE:.*]] = memref.subview %[[SCORES]][0, 0] [%[[COUNT]], 4] [1, 1]
// CHECK: linalg.generic {{.*}} ins(%[[RB_BUF]] : memref<4xbf16>) outs(%[[TILE]]
// CHECK: scf.for %[[R:.*]] = %c0 to %{{.*}} step %c2 {
// CHECK: %[[TOKEN0:.*]] = arith.addi %[[FIRST]], %[[R]]
// CHECK: vector.load %[[X_BUF]][%[[TOKEN0]], %{{.*}}] : memref<?x16xbf16>, vector<16xbf16>
// CHECK: vector.load %[[WR_BUF]]
// CHECK: memref.store %{{.*}}, %[[SCORES]][%[[R]], %{{.*}}] : memref<16x4xf32>
// CHECK: arith.maximumf
// CHECK: math.exp
// CHECK: arith.divf
// CHECK: scf.for %[[ROW:.*]] = %c0 to %[[COUNT]]
// CHECK: %[[TOKEN:.*]] = arith.addi %[[FIRST]], %[[ROW]]
// CHECK: memref.load %[[SCORES]][%[[ROW]], %{{.*}}] : memref<16x4xf32>
// CHECK: memref.store %{{.*}}, %{{.*}}[%[[TOKEN]], %{{.*}}] : memref<?x2xi32>
// TILE8-LABEL: func.func @fused_softmax
// TILE8: memref.alloc() : memref<8x4xf32>
// With 8 lanes the 16-element rows take two steps.
// LANES8-LABEL: func.func @fused_softmax
// LANES8: scf.for %{{.*}} = %c0 to %c16 step %c8 iter_args({{.*}}) -> (vector<8xf32>,
// LANES8: vector.load {{.*}} : memref<?x16xbf16>, vector<8xbf16>
// BAD-LANES: error: moe-lower-gate: 'vector-lanes' (0) must be positive
func.func @fused_softmax(%x: tensor<?x16xbf16>, %wr: tensor<4x16xbf16>,
    %rb: tensor<4xbf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr router_bias(%rb : tensor<4xbf16>) {top_k = 2 : i64}
      : tensor<?x16xbf16>, tensor<4x16xbf16> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

// -----

// Sigmoid scores are computed in place in the tile.
// CHECK-LABEL: func.func @fused_sigmoid
// CHECK-NOT: tensor<?x8xf32>
// CHECK: memref.alloc() : memref<16x8xf32>
// CHECK: linalg.fill
// CHECK: vector.fma
// CHECK: linalg.generic {{.*}}["parallel", "parallel"]{{.*}} outs(%{{.*}} : memref<?x8xf32, strided<[8, 1]>>)
// CHECK: arith.negf
// CHECK-NOT: arith.maximumf
func.func @fused_sigmoid(%x: tensor<?x16xf32>, %wr: tensor<8x16xf32>)
    -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64, scoring = #moe.scoring<sigmoid>}
      : tensor<?x16xf32>, tensor<8x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

// -----

// Expert choice ranks all tokens per expert: it keeps the [T, E] matrix.
// CHECK-LABEL: func.func @expert_choice_unfused
// CHECK: memref.alloc(%{{.*}}) : memref<?x4xf32>
func.func @expert_choice_unfused(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>)
    -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.gate %x, %wr
      {top_k = 1 : i64, routing = #moe.routing<expert_choice>,
       capacity_factor = 2.0 : f64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

// BAD-TILE: error: moe-lower-gate: 'token-tile' (0) must be positive

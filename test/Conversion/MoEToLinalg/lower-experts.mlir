// RUN: moe-opt %s -split-input-file -moe-lower-experts=intermediate-tile=4 | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-lower-experts=fuse-combine=false | FileCheck %s --check-prefix=UNFUSED-COMBINE
// RUN: moe-opt %s -split-input-file -moe-lower-experts=fuse-activation=false | FileCheck %s --check-prefix=UNFUSED-ACT
// RUN: moe-opt %s -split-input-file -moe-lower-experts=fuse-gather=false | FileCheck %s --check-prefix=UNFUSED-GATHER
// RUN: not moe-opt %s -moe-lower-experts=row-tile=0 -o /dev/null 2>&1 | FileCheck %s --check-prefix=BAD-TILE

// Everything fused. A loop over experts; weights are read in place through
// subviews of the stacked buffers; the gate and up projections run as one
// contraction per tile of 4 columns, reading x through the plan, and only
// act(gate) * up is stored ([rows, F]); the down projection runs per tile
// of 16 rows into a [16, H] block whose epilogue adds each row, scaled by
// its routing weight, to its token's output. No [rows, H] buffer exists.
// CHECK-LABEL: func.func @expert_combine
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x16xbf16>, %[[SLOTS:[^:]*]]: tensor<?xi32>, %[[OFFSETS:[^:]*]]: tensor<5xi32>, %[[ROWS:[^:]*]]: tensor<?x2xi32>, %[[W:[^:]*]]: tensor<?x2xf32>, %[[WG:[^:]*]]: tensor<4x8x16xbf16>, %[[WU:[^:]*]]: tensor<4x8x16xbf16>, %[[WD:[^:]*]]: tensor<4x16x8xbf16>)
// CHECK-NOT: moe.
// CHECK: %[[ACC:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
// CHECK: linalg.fill {{.*}} outs(%[[ACC]]
// CHECK-DAG: %[[X_BUF:.*]] = bufferization.to_buffer %[[X]] read_only
// CHECK-DAG: %[[SLOTS_BUF:.*]] = bufferization.to_buffer %[[SLOTS]] read_only
// CHECK-DAG: %[[WG_BUF:.*]] = bufferization.to_buffer %[[WG]] read_only
// CHECK-DAG: %[[WU_BUF:.*]] = bufferization.to_buffer %[[WU]] read_only
// CHECK-DAG: %[[WD_BUF:.*]] = bufferization.to_buffer %[[WD]] read_only
// CHECK-DAG: %[[W_BUF:.*]] = bufferization.to_buffer %[[W]] read_only
// CHECK: %[[BLOCK:.*]] = memref.alloc() : memref<16x16xf32>
// CHECK: scf.for %[[E:.*]] = %c0 to %c4
// CHECK: %[[HIDDEN:.*]] = memref.alloc(%[[N:.*]]) : memref<?x8xf32>
// CHECK: %[[GATE_TILE:.*]] = memref.alloc(%[[N]]) : memref<?x4xf32>
// CHECK: %[[UP_TILE:.*]] = memref.alloc(%[[N]]) : memref<?x4xf32>
// CHECK-NOT: memref<?x16xf32>
// CHECK: scf.for %[[F0:.*]] = %c0 to %c8 step %c4
// CHECK: %[[UP:.*]] = memref.subview %[[UP_TILE]]
// CHECK: %[[UP_W:.*]] = memref.subview %[[WU_BUF]][%[[E]], %[[F0]], 0]
// CHECK: %[[GATE_W:.*]] = memref.subview %[[WG_BUF]][%[[E]], %[[F0]], 0]
// CHECK: %[[GATE:.*]] = memref.subview %[[GATE_TILE]]
// CHECK: linalg.generic {{.*}} ins(%[[UP_W]], %[[GATE_W]] : {{.*}}) outs(%[[UP]], %[[GATE]] : {{.*}})
// CHECK: memref.load %[[SLOTS_BUF]]
// CHECK: arith.divui %{{.*}}, %c2
// CHECK: memref.load %[[X_BUF]]
// CHECK: linalg.yield %{{.*}}, %{{.*}} : f32, f32
// CHECK: %[[ACT:.*]] = memref.subview %[[HIDDEN]][0, %[[F0]]]
// CHECK: linalg.generic {{.*}} ins(%[[UP]], %[[GATE]] : {{.*}}) outs(%[[ACT]] : {{.*}})
// CHECK: math.exp
// CHECK: scf.for %[[R0:.*]] = %c0 to %[[N]] step %c16
// CHECK: %[[DEST:.*]] = memref.subview %[[BLOCK]][0, 0]
// CHECK: %[[DOWN_W:.*]] = memref.subview %[[WD_BUF]][%[[E]], 0, 0] [1, 16, 8]
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[DOWN_W]] : {{.*}}) outs(%[[DEST]] : {{.*}})
// CHECK: %[[SLOT:.*]] = memref.load %[[SLOTS_BUF]]
// CHECK: arith.cmpi sge, %[[SLOT]]
// CHECK: %[[TOKEN:.*]] = arith.divui
// CHECK: %[[J:.*]] = arith.remui
// CHECK: %[[WEIGHT:.*]] = memref.load %[[W_BUF]][%[[TOKEN]], %[[J]]]
// CHECK: memref.load %[[BLOCK]]
// CHECK: memref.load %[[ACC]][%[[TOKEN]]
// CHECK: memref.store %{{.*}}, %[[ACC]][%[[TOKEN]]
// CHECK: %[[SUM:.*]] = bufferization.to_tensor %[[ACC]] restrict writable
// CHECK: linalg.generic {{.*}} ins(%[[SUM]] : tensor<?x16xf32>) outs(%{{.*}} : tensor<?x16xbf16>)
// CHECK: arith.truncf

// Combine unfused: moe.expert writes its [rows, H] result, each tile of the
// down projection straight into its rows; moe.combine is left for
// moe-lower-combine.
// UNFUSED-COMBINE-LABEL: func.func @expert_combine
// UNFUSED-COMBINE: %[[ROWS_BUF:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
// UNFUSED-COMBINE: scf.for
// UNFUSED-COMBINE: %[[DEST:.*]] = memref.subview %[[ROWS_BUF]][%{{.*}}, 0] [%{{.*}}, 16] [1, 1]
// UNFUSED-COMBINE: linalg.generic {{.*}} outs(%[[DEST]]
// UNFUSED-COMBINE: %[[OUT:.*]] = bufferization.to_tensor %[[ROWS_BUF]]
// UNFUSED-COMBINE: moe.combine %[[OUT]]

// Activation unfused: the gate and up projections are stored whole.
// UNFUSED-ACT-LABEL: func.func @expert_combine
// UNFUSED-ACT: memref.alloc(%[[N:.*]]) : memref<?x8xf32>
// UNFUSED-ACT: memref.alloc(%[[N]]) : memref<?x8xf32>
// UNFUSED-ACT: memref.alloc(%[[N]]) : memref<?x8xf32>
// UNFUSED-ACT: scf.for %{{.*}} = %c0 to %c8 step %c8

// Gather unfused: each expert's rows are copied out first, and the
// projections read the copy.
// UNFUSED-GATHER-LABEL: func.func @expert_combine
// UNFUSED-GATHER: scf.for
// UNFUSED-GATHER: %[[GATHERED:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
// UNFUSED-GATHER: linalg.generic {{.*}} outs(%[[GATHERED]]
// UNFUSED-GATHER: memref.load %{{.*}} : memref<?x16xbf16>
// UNFUSED-GATHER: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}}, %[[GATHERED]] :

// BAD-TILE: error: moe-lower-experts: 'intermediate-tile' and 'row-tile' must be positive
func.func @expert_combine(%x: tensor<?x16xbf16>, %slots: tensor<?xi32>,
    %offsets: tensor<5xi32>, %rows: tensor<?x2xi32>, %w: tensor<?x2xf32>,
    %wg: tensor<4x8x16xbf16>, %wu: tensor<4x8x16xbf16>,
    %wd: tensor<4x16x8xbf16>) -> tensor<?x16xbf16> {
  %r = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<4x8x16xbf16>)
         up_proj(%wu : tensor<4x8x16xbf16>) down_proj(%wd : tensor<4x16x8xbf16>)
         {slots_per_token = 2 : i64}
         : tensor<?x16xbf16>, tensor<?xi32>, tensor<5xi32> -> tensor<?x16xf32>
  %y = moe.combine %r, %rows, %w
         : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// Plain FFN: the activation of the up projection alone, for each of the
// four (a standalone moe.expert: no combine to fuse).
// CHECK-LABEL: func.func @plain_activations
// CHECK: linalg.generic {{.*}} ins(%{{.*}} : memref<?x?xf32, strided<[4, 1]>>) outs(%{{.*}} : memref<?x?xf32, strided<[8, 1], offset: ?>>)
// CHECK-NEXT: ^bb0(%[[V:.*]]: f32, %{{.*}}: f32):
// CHECK: math.erf
// CHECK: linalg.generic
// CHECK: math.tanh
// CHECK: linalg.generic
// CHECK: arith.maximumf
func.func @plain_activations(%x: tensor<?x16xf32>, %slots: tensor<?xi32>,
    %offsets: tensor<5xi32>, %wu: tensor<4x8x16xf32>,
    %wd: tensor<4x16x8xf32>)
    -> (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>) {
  %a = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {slots_per_token = 1 : i64, activation = #moe.activation<gelu>}
         : tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32> -> tensor<?x16xf32>
  %b = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {slots_per_token = 1 : i64, activation = #moe.activation<gelu_tanh>}
         : tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32> -> tensor<?x16xf32>
  %c = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {slots_per_token = 1 : i64, activation = #moe.activation<relu>}
         : tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32> -> tensor<?x16xf32>
  return %a, %b, %c : tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>
}

// -----

// The shared expert reads x directly and, with an expert gate, scales each
// token's row by sigmoid(x · gate).
// CHECK-LABEL: func.func @shared_gated
// CHECK-SAME: (%[[X:.*]]: tensor<3x16xf32>, %[[SU:[^:]*]]: {{.*}}, %[[SD:[^:]*]]: {{.*}}, %[[G:[^:]*]]: tensor<16xf32>)
// CHECK-NOT: moe.shared_expert
// CHECK: %[[UP:.*]] = linalg.generic {{.*}} ins(%[[X]], %[[SU]] : tensor<3x16xf32>, tensor<32x16xf32>)
// CHECK: %[[ACT:.*]] = linalg.generic {{.*}} outs(%[[UP]] : tensor<?x32xf32>)
// CHECK: %[[OUT:.*]] = linalg.generic {{.*}} ins(%[[ACT]], %[[SD]] : tensor<?x32xf32>, tensor<16x32xf32>)
// CHECK: %[[LOGITS:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "reduction"]{{.*}} ins(%[[X]], %[[G]] : tensor<3x16xf32>, tensor<16xf32>)
// CHECK: %[[SCALED:.*]] = linalg.generic {{.*}} ins(%[[LOGITS]] : tensor<?xf32>) outs(%[[OUT]] : tensor<?x16xf32>)
// CHECK: math.exp
// CHECK: arith.divf
// CHECK: %[[CAST:.*]] = tensor.cast %[[SCALED]] : tensor<?x16xf32> to tensor<3x16xf32>
// CHECK: return %[[CAST]]
func.func @shared_gated(%x: tensor<3x16xf32>, %su: tensor<32x16xf32>,
    %sd: tensor<16x32xf32>, %g: tensor<16xf32>) -> tensor<3x16xf32> {
  %s = moe.shared_expert %x up_proj(%su : tensor<32x16xf32>)
         down_proj(%sd : tensor<16x32xf32>) expert_gate(%g : tensor<16xf32>)
         : tensor<3x16xf32> -> tensor<3x16xf32>
  return %s : tensor<3x16xf32>
}

// RUN: moe-opt %s -split-input-file -moe-lower-experts | FileCheck %s

// A loop over experts; each reads its weights as slices of the stacked
// tensors and its input rows through the plan inside the projection (the
// gather is fused: x is never sliced or copied), and writes its segment of
// the result in place.
// CHECK-LABEL: func.func @gated_bf16
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xbf16>, %[[SLOTS:.*]]: tensor<?xi32>, %[[OFFSETS:.*]]: tensor<5xi32>, %[[WG:.*]]: tensor<4x8x16xbf16>, %[[WU:.*]]: tensor<4x8x16xbf16>, %[[WD:.*]]: tensor<4x16x8xbf16>)
// CHECK-NOT: moe.expert
// CHECK: %[[ROWS:.*]] = tensor.dim %[[SLOTS]], %c0
// CHECK: %[[INIT:.*]] = tensor.empty(%[[ROWS]]) : tensor<?x16xf32>
// CHECK: %[[RESULT:.*]] = scf.for %[[E:.*]] = %c0 to %c4 step %c1 iter_args(%[[ACC:.*]] = %[[INIT]])
// CHECK: %[[START_I32:.*]] = tensor.extract %[[OFFSETS]][%[[E]]]
// CHECK: %[[START:.*]] = arith.index_cast %[[START_I32]]
// CHECK: %[[GATE_W:.*]] = tensor.extract_slice %[[WG]][%[[E]], 0, 0] [1, 8, 16] [1, 1, 1] : tensor<4x8x16xbf16> to tensor<8x16xbf16>
// CHECK: %[[SEGMENT:.*]] = tensor.extract_slice %[[ACC]][%[[START]], 0]
// CHECK: %[[UP_W:.*]] = tensor.extract_slice %[[WU]][%[[E]], 0, 0]
// CHECK: %[[DOWN_W:.*]] = tensor.extract_slice %[[WD]][%[[E]], 0, 0] [1, 16, 8] [1, 1, 1] : tensor<4x16x8xbf16> to tensor<16x8xbf16>
// CHECK: %[[UP:.*]] = linalg.generic {{.*}} ins(%[[UP_W]] : tensor<8x16xbf16>)
// CHECK: %[[ROW:.*]] = arith.addi %[[START]], %{{.*}} : index
// CHECK: %[[SLOT:.*]] = tensor.extract %[[SLOTS]][%[[ROW]]]
// CHECK: arith.divui %{{.*}}, %c2
// CHECK: tensor.extract %[[X]][%{{.*}}, %{{.*}}] : tensor<?x16xbf16>
// CHECK: %[[GATE:.*]] = linalg.generic {{.*}} ins(%[[GATE_W]] : tensor<8x16xbf16>)
// The activation updates the up projection in place.
// CHECK: %[[ACTIVATED:.*]] = linalg.generic {{.*}} ins(%[[GATE]] : tensor<?x8xf32>) outs(%[[UP]] : tensor<?x8xf32>)
// CHECK: math.exp
// CHECK: arith.mulf
// CHECK: %[[ZEROED:.*]] = linalg.fill {{.*}} outs(%[[SEGMENT]] : tensor<?x16xf32>)
// CHECK: %[[BLOCK:.*]] = linalg.generic {{.*}} ins(%[[ACTIVATED]], %[[DOWN_W]] : tensor<?x8xf32>, tensor<16x8xbf16>) outs(%[[ZEROED]] : tensor<?x16xf32>)
// CHECK: tensor.insert_slice %[[BLOCK]] into %[[ACC]][%[[START]], 0]
// CHECK: return %[[RESULT]]
// CHECK-NOT: tensor.extract_slice %[[X]]
func.func @gated_bf16(%x: tensor<?x16xbf16>, %slots: tensor<?xi32>,
    %offsets: tensor<5xi32>, %wg: tensor<4x8x16xbf16>,
    %wu: tensor<4x8x16xbf16>, %wd: tensor<4x16x8xbf16>) -> tensor<?x16xf32> {
  %r = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<4x8x16xbf16>)
         up_proj(%wu : tensor<4x8x16xbf16>) down_proj(%wd : tensor<4x16x8xbf16>)
         {slots_per_token = 2 : i64}
         : tensor<?x16xbf16>, tensor<?xi32>, tensor<5xi32> -> tensor<?x16xf32>
  return %r : tensor<?x16xf32>
}

// -----

// Plain FFN: the activation alone, in place, for each of the four.
// CHECK-LABEL: func.func @plain_activations
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<?x8xf32>)
// CHECK-NEXT: ^bb0(%[[V:.*]]: f32):
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

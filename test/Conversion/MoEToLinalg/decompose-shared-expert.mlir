// moe-decompose-shared-expert: the shared expert as linalg ops on tensors,
// row-wise for few tokens and packed by the target's lanes for more.
// RUN: moe-opt %s -split-input-file -moe-decompose-shared-expert | FileCheck %s

// A dynamic token count chooses the form at run time. Fewer than one
// vector of rows (8 f32 lanes without a target) take the row-wise form:
// each weight viewed as 4 streams of rows ([4, N / 4, K]), each
// contraction's result as [T, 4, N / 4], which is [T, N]. More take
// contractions over rows packed 8 at a time, whose activation feeds the
// down projection packed and whose result is unpacked.
// CHECK-LABEL: func.func @dynamic
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x16xf32>, %[[SG:[^:]*]]: tensor<32x16xf32>, %[[SU:[^:]*]]: tensor<32x16xf32>, %[[SD:[^:]*]]: tensor<16x32xf32>)
// CHECK: %[[T:.*]] = tensor.dim %[[X]], %c0
// CHECK: %[[FEW:.*]] = arith.cmpi ult, %[[T]], %c8
// CHECK: scf.if %[[FEW]] -> (tensor<?x16xf32>)
// CHECK-NOT: linalg.pack
// CHECK: %[[UP_W:.*]] = tensor.expand_shape %[[SU]] {{\[\[}}0, 1], [2]] output_shape [4, 8, 16] : tensor<32x16xf32> into tensor<4x8x16xf32>
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%{{.*}}, %[[UP_W]] : tensor<?x16xf32>, tensor<4x8x16xf32>) outs(%{{.*}} : tensor<?x4x8xf32>)
// CHECK: tensor.expand_shape %[[SG]]
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "reduction"]
// CHECK: %[[ACT:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel"]
// CHECK: %[[HIDDEN:.*]] = tensor.collapse_shape %[[ACT]] {{\[\[}}0], [1, 2]] : tensor<?x4x8xf32> into tensor<?x32xf32>
// CHECK: %[[DOWN:.*]] = linalg.generic {{.*}} ins(%[[HIDDEN]], %{{.*}} : tensor<?x32xf32>, tensor<4x4x32xf32>) outs(%{{.*}} : tensor<?x4x4xf32>)
// CHECK: tensor.collapse_shape %[[DOWN]] {{\[\[}}0], [1, 2]] : tensor<?x4x4xf32> into tensor<?x16xf32>
// CHECK: } else {
// CHECK: %[[ROWS:.*]] = linalg.pack %{{.*}} padding_value(%{{.*}} : f32) inner_dims_pos = [0] inner_tiles = [8] {{.*}} -> tensor<?x16x8xf32>
// CHECK: %[[UP:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction", "parallel"]} ins(%[[ROWS]], %[[SU]] : tensor<?x16x8xf32>, tensor<32x16xf32>) outs(%{{.*}} : tensor<?x32x8xf32>)
// CHECK: %[[GATE:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction", "parallel"]} ins(%[[ROWS]], %[[SG]] : tensor<?x16x8xf32>, tensor<32x16xf32>) outs(%{{.*}} : tensor<?x32x8xf32>)
// CHECK: %[[ACT:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel"]} ins(%[[UP]], %[[GATE]] :
// CHECK: math.exp
// CHECK: %[[DOWN:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction", "parallel"]} ins(%[[ACT]], %[[SD]] : tensor<?x32x8xf32>, tensor<16x32xf32>) outs(%{{.*}} : tensor<?x16x8xf32>)
// CHECK: linalg.unpack %[[DOWN]] inner_dims_pos = [0] inner_tiles = [8] {{.*}} -> tensor<?x16xf32>
// CHECK-NOT: moe.shared_expert
func.func @dynamic(%x: tensor<?x16xf32>, %sg: tensor<32x16xf32>,
    %su: tensor<32x16xf32>, %sd: tensor<16x32xf32>) -> tensor<?x16xf32> {
  %s = moe.shared_expert %x gate_proj(%sg : tensor<32x16xf32>)
         up_proj(%su : tensor<32x16xf32>) down_proj(%sd : tensor<16x32xf32>)
         : tensor<?x16xf32> -> tensor<?x16xf32>
  return %s : tensor<?x16xf32>
}

// -----

// AVX-512 packs 16 rows, and bf16 weights take the packed form from two
// vectors of rows: the input and each weight are widened to f32 by a
// generic of their own, which the tiling fuses into the reduction's blocks.
// CHECK-LABEL: func.func @bf16_avx512
// CHECK: arith.cmpi ult, %{{.*}}, %c32
// CHECK: } else {
// CHECK: linalg.generic {{.*}} ins(%{{.*}} : tensor<?x16xbf16>)
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: linalg.pack {{.*}} inner_tiles = [16] {{.*}} -> tensor<?x16x16xf32>
// CHECK: %[[WIDE:.*]] = linalg.generic {{.*}} ins(%{{.*}} : tensor<32x16xbf16>) outs(%{{.*}} : tensor<32x16xf32>)
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[WIDE]] : tensor<?x16x16xf32>, tensor<32x16xf32>)
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma", "avx512f"]>} {
func.func @bf16_avx512(%x: tensor<?x16xbf16>, %su: tensor<32x16xbf16>,
    %sd: tensor<16x32xbf16>) -> tensor<?x16xf32> {
  %s = moe.shared_expert %x up_proj(%su : tensor<32x16xbf16>)
         down_proj(%sd : tensor<16x32xbf16>)
         : tensor<?x16xbf16> -> tensor<?x16xf32>
  return %s : tensor<?x16xf32>
}
}

// -----

// A static token count takes one form, without a branch: 3 tokens the
// row-wise one, whose clamped SwiGLU is the activation generic's body. A
// hidden size of 18 is not a multiple of the 4 streams: its projections
// read their weight rows as they are, by linalg.matmuls.
// CHECK-LABEL: func.func @few_static
// CHECK-DAG: %[[LIMIT:.*]] = arith.constant 7.000000e+00 : f32
// CHECK-DAG: %[[NEG_LIMIT:.*]] = arith.constant -7.000000e+00 : f32
// CHECK-NOT: scf.if
// CHECK-NOT: linalg.pack
// CHECK-NOT: tensor.expand_shape
// CHECK: linalg.matmul {{.*}} -> tensor<3x32xf32>
// CHECK: linalg.matmul {{.*}} -> tensor<3x32xf32>
// CHECK: linalg.generic
// CHECK: %[[G:.*]] = arith.minimumf %{{.*}}, %[[LIMIT]]
// CHECK: %[[U_HIGH:.*]] = arith.minimumf %{{.*}}, %[[LIMIT]]
// CHECK: arith.maximumf %[[U_HIGH]], %[[NEG_LIMIT]]
// CHECK: linalg.matmul {{.*}} -> tensor<3x18xf32>
func.func @few_static(%x: tensor<3x18xf32>, %sg: tensor<32x18xf32>,
    %su: tensor<32x18xf32>, %sd: tensor<18x32xf32>) -> tensor<3x18xf32> {
  %s = moe.shared_expert %x gate_proj(%sg : tensor<32x18xf32>)
         up_proj(%su : tensor<32x18xf32>) down_proj(%sd : tensor<18x32xf32>)
         {activation = #moe.activation<clamped_swiglu>}
         : tensor<3x18xf32> -> tensor<3x18xf32>
  return %s : tensor<3x18xf32>
}

// -----

// 20 tokens are packed into 3 groups; with an expert gate each unpacked row
// is scaled by sigmoid(x_t · gate), a reduction over the hidden size.
// CHECK-LABEL: func.func @many_static_gated
// CHECK-NOT: scf.if
// CHECK: linalg.pack {{.*}} -> tensor<3x16x8xf32>
// CHECK: %[[OUT:.*]] = linalg.unpack {{.*}} -> tensor<20x16xf32>
// CHECK: %[[LOGIT:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]} ins(%{{.*}}, %{{.*}} : tensor<20x16xf32>, tensor<16xf32>) outs(%{{.*}} : tensor<20xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[LOGIT]] : tensor<20xf32>) outs(%[[OUT]] : tensor<20x16xf32>)
// CHECK: math.exp
func.func @many_static_gated(%x: tensor<20x16xf32>, %su: tensor<32x16xf32>,
    %sd: tensor<16x32xf32>, %g: tensor<16xf32>) -> tensor<20x16xf32> {
  %s = moe.shared_expert %x up_proj(%su : tensor<32x16xf32>)
         down_proj(%sd : tensor<16x32xf32>) expert_gate(%g : tensor<16xf32>)
         : tensor<20x16xf32> -> tensor<20x16xf32>
  return %s : tensor<20x16xf32>
}

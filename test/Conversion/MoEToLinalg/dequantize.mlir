// Quantized projections on the CPU's linalg stage: moe-decompose-experts
// and moe-decompose-shared-expert read a moe.dequantize's integers, scales
// and zero points inside each contraction, so no dequantized weight is
// stored. The reduction over K runs as loops over groups and within them:
// (kg, h, kb) for 4 bits, h the nibble, whose shift is read from a constant
// [0, 4]; (kg, kb) for 8 bits.
// RUN: moe-opt %s -split-input-file -moe-decompose-shared-expert -moe-decompose-experts=fuse-combine=false | FileCheck %s --implicit-check-not=moe.dequantize
// RUN: moe-opt %s -split-input-file -moe-decompose-shared-expert -moe-decompose-experts=fuse-combine=false -moe-configure-cpu | FileCheck %s --check-prefix=CONFIG
// RUN: moe-opt %s -split-input-file -moe-decompose-shared-expert -moe-decompose-experts=fuse-combine=false -moe-configure-cpu -moe-tile-cpu | FileCheck %s --check-prefix=TILED
// RUN: not moe-opt %s -split-input-file -moe-decompose-grouped=row-tile=16 2>&1 | FileCheck %s --check-prefix=GROUPED

// Row-wise (fewer rows than one vector, 8 with AVX2: quantized weights
// take the packed form from there on, unlike bf16's two vectors, as their
// row-wise form dequantizes a weight again for every two rows): each
// projection is one contraction over
// (m, s, j, kg, h, kb) reading the rows, the bytes by group, the scales,
// the zero points and the nibble shifts. Packed: a dequantizing generic
// over [N, K / g, 2, g / 2] feeds a contraction over (n, g, kg, h, kb, l).
// CHECK-LABEL: func.func @expert_int4
// CHECK: %[[SHIFTS:.*]] = arith.constant dense<[0, 4]> : tensor<2xi32>
// CHECK: scf.for
// CHECK: %[[UP_Q:.*]] = tensor.extract_slice %{{.*}}[%{{.*}}, 0, 0] [1, 32, 32] [1, 1, 1] : tensor<4x32x32xi8> to tensor<32x32xi8>
// CHECK: %[[ROWWISE:.*]] = arith.cmpi ult, %{{.*}}, %c8 : index
// CHECK: scf.if %[[ROWWISE]]
// CHECK: tensor.expand_shape %{{.*}} {{\[\[}}0], [1, 2, 3]] output_shape [%{{.*}}, 2, 2, 16] : tensor<?x64xf32> into tensor<?x2x2x16xf32>
// CHECK: tensor.expand_shape %[[UP_Q]] {{\[\[}}0, 1], [2, 3]] output_shape [4, 8, 2, 16] : tensor<32x32xi8> into tensor<4x8x2x16xi8>
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "reduction", "reduction", "reduction"]} ins(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[SHIFTS]] : tensor<?x2x2x16xf32>, tensor<4x8x2x16xi8>, tensor<4x8x2xf32>, tensor<4x8x2xi8>, tensor<2xi32>) outs(%{{.*}} : tensor<?x4x8xf32>)
// CHECK: ^bb0(%[[X:.*]]: f32, %[[BYTE:.*]]: i8, %[[SCALE:.*]]: f32, %[[ZERO:.*]]: i8, %[[SHIFT:.*]]: i32, %[[ACC:.*]]: f32):
// CHECK: %[[WIDE:.*]] = arith.extui %[[BYTE]] : i8 to i32
// CHECK: %[[SHIFTED:.*]] = arith.shrui %[[WIDE]], %[[SHIFT]] : i32
// CHECK: %[[NIBBLE:.*]] = arith.andi %[[SHIFTED]], %c15_i32
// CHECK: %[[Z:.*]] = arith.uitofp %[[ZERO]] : i8 to f32
// CHECK: %[[Q:.*]] = arith.sitofp %[[NIBBLE]] : i32 to f32
// CHECK: %[[QS:.*]] = arith.mulf %[[Q]], %[[SCALE]]
// CHECK: %[[ZS:.*]] = arith.mulf %[[Z]], %[[SCALE]]
// CHECK: %[[W:.*]] = arith.subf %[[QS]], %[[ZS]]
// CHECK: %[[P:.*]] = arith.mulf %[[X]], %[[W]]
// CHECK: arith.addf %[[ACC]], %[[P]]
// CHECK: } else {
// CHECK: %[[DEQUANTIZED:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%{{.*}}, %{{.*}}, %{{.*}}, %[[SHIFTS]] : tensor<32x2x16xi8>, tensor<32x2xf32>, tensor<32x2xi8>, tensor<2xi32>) outs(%{{.*}} : tensor<32x2x2x16xf32>)
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction", "reduction", "reduction", "parallel"]} ins(%{{.*}}, %[[DEQUANTIZED]] : tensor<?x2x2x16x8xf32>, tensor<32x2x2x16xf32>) outs(%{{.*}} : tensor<?x32x8xf32>)

// The row-wise contraction steps its groups one at a time, keeps a byte's
// two nibbles in each step (one load for both) and vectorizes within a
// group; the packed one steps every reduction loop, and the dequantization
// gets a register tile of a vector within a group.
// CONFIG-LABEL: func.func @expert_int4
// CONFIG: tensor<4x8x2x16xi8>, tensor<4x8x2xf32>, tensor<4x8x2xi8>, tensor<2xi32>) {{.*}}lowering_config = #moe.tiling<registers = [2, 4, 1, 0, 0, 0], reduction = [0, 0, 0, 1, 0, 8]
// CONFIG: tensor<32x2x16xi8>, tensor<32x2xf32>, tensor<32x2xi8>, tensor<2xi32>) {{.*}}lowering_config = #moe.tiling<registers = [1, 1, 1, 8]>
// CONFIG: tensor<?x2x2x16x8xf32>, tensor<32x2x2x16xf32>) {{.*}}lowering_config = #moe.tiling<cache = [0, 32, 0, 0, 0, 0], registers = [6, 2, 0, 0, 0, 8], reduction = [0, 0, 1, 1, 1, 0]

// Vectorized: a vector of bytes is read once for both its nibbles, which
// are shifted out of 32-bit lanes.
// TILED-LABEL: func.func @expert_int4
// TILED: vector.transfer_read {{.*}} : tensor<4x1x1x8xi8>, vector<2x4x1x1x2x8xi8>
// TILED: arith.extui {{.*}} : vector<2x4x1x1x2x8xi8> to vector<2x4x1x1x2x8xi32>
// TILED: arith.shrui {{.*}} : vector<2x4x1x1x2x8xi32>
// TILED: arith.sitofp {{.*}} : vector<2x4x1x1x2x8xi32> to vector<2x4x1x1x2x8xf32>
// TILED: } else {
// TILED: arith.shrui {{.*}} : vector<1x1x1x8xi32>

// GROUPED: error: 'moe.dequantize' op is left after moe-decompose-grouped: the grouped form takes no quantized weights yet
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @expert_int4(%x: tensor<?x64xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>,
                       %qg: tensor<4x32x32xi8>, %sg: tensor<4x32x2xf32>, %zg: tensor<4x32x2xi8>,
                       %qu: tensor<4x32x32xi8>, %su: tensor<4x32x2xf32>, %zu: tensor<4x32x2xi8>,
                       %qd: tensor<4x64x16xi8>, %sd: tensor<4x64x1xf32>, %zd: tensor<4x64x1xi8>) -> tensor<?x64xf32> {
  %wg = moe.dequantize %qg, %sg zeros(%zg : tensor<4x32x2xi8>) {format = #moe.weight_format<int4>, group_size = 32 : i64} : tensor<4x32x32xi8>, tensor<4x32x2xf32> -> tensor<4x32x64xf32>
  %wu = moe.dequantize %qu, %su zeros(%zu : tensor<4x32x2xi8>) {format = #moe.weight_format<int4>, group_size = 32 : i64} : tensor<4x32x32xi8>, tensor<4x32x2xf32> -> tensor<4x32x64xf32>
  %wd = moe.dequantize %qd, %sd zeros(%zd : tensor<4x64x1xi8>) {format = #moe.weight_format<int4>, group_size = 32 : i64} : tensor<4x64x16xi8>, tensor<4x64x1xf32> -> tensor<4x64x32xf32>
  %out = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<4x32x64xf32>) up_proj(%wu : tensor<4x32x64xf32>) down_proj(%wd : tensor<4x64x32xf32>) {slots_per_token = 2 : i64} : tensor<?x64xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x64xf32>
  return %out : tensor<?x64xf32>
}
}

// -----

// 8 bits, one scale per row: the shared expert reads its integers the same
// way; a sign-extended byte times its scale.
// CHECK-LABEL: func.func @shared_int8
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "reduction", "reduction"]} ins(%{{.*}}, %{{.*}}, %{{.*}} : tensor<?x1x16xf32>, tensor<4x8x1x16xi8>, tensor<4x8x1xf32>) outs(%{{.*}} : tensor<?x4x8xf32>)
// CHECK: ^bb0(%[[X:.*]]: f32, %[[BYTE:.*]]: i8, %[[SCALE:.*]]: f32, %[[ACC:.*]]: f32):
// CHECK: %[[Q:.*]] = arith.sitofp %[[BYTE]] : i8 to f32
// CHECK: %[[W:.*]] = arith.mulf %[[Q]], %[[SCALE]]
// CHECK: arith.mulf %[[X]], %[[W]]
// CONFIG-LABEL: func.func @shared_int8
// CONFIG: lowering_config = #moe.tiling<{{.*}}registers = [2, 4, 1, 0, 0], reduction = [0, 0, 0, 1, 8]
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @shared_int8(%x: tensor<?x16xf32>, %qu: tensor<32x16xi8>, %su: tensor<32x1xf32>,
                       %qd: tensor<16x32xi8>, %sd: tensor<16x1xf32>) -> tensor<?x16xf32> {
  %wu = moe.dequantize %qu, %su {format = #moe.weight_format<int8>, group_size = 16 : i64} : tensor<32x16xi8>, tensor<32x1xf32> -> tensor<32x16xf32>
  %wd = moe.dequantize %qd, %sd {format = #moe.weight_format<int8>, group_size = 32 : i64} : tensor<16x32xi8>, tensor<16x1xf32> -> tensor<16x32xf32>
  %y = moe.shared_expert %x up_proj(%wu : tensor<32x16xf32>) down_proj(%wd : tensor<16x32xf32>) {activation = #moe.activation<gelu>} : tensor<?x16xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
}

// -----

// Small floats: an f8e4m3 byte, sign-extended and shifted left by 20, has
// its exponent and mantissa in bits 26-20 and its sign in 31 once the
// copies of the sign between are cleared; the f32 they make times 2^120
// (rebiasing the exponent) and the scale is the weight. An e2m1 nibble
// takes f16's layout, so that its subnormal is f16's and widens to an f32
// normal: shifted up to bits 15-12 of 16 and arithmetically down by 3, it
// lands in bits 11-9 and 15, and the widened f16 is taken times 2^14; its
// group's e8m0 scale is the exponent byte moved to f32's exponent bits.
// CHECK-LABEL: func.func @shared_small_floats
// CHECK-DAG: %[[TWO14:.*]] = arith.constant 1.638400e+04 : f32
// CHECK-DAG: %[[TWO120:.*]] = arith.constant 1.329228E+36 : f32
// CHECK: ins(%{{.*}}, %{{.*}}, %{{.*}} : tensor<?x1x16xf32>, tensor<4x8x1x16xi8>, tensor<4x8x1xf32>)
// CHECK: ^bb0(%{{.*}}: f32, %[[BYTE:.*]]: i8, %[[SCALE:.*]]: f32, %{{.*}}: f32):
// CHECK: %[[WORD:.*]] = arith.extsi %[[BYTE]] : i8 to i32
// CHECK: %[[SHIFTED:.*]] = arith.shli %[[WORD]], %c20_i32
// CHECK: %[[BITS:.*]] = arith.andi %[[SHIFTED]], %c-2014314496_i32
// CHECK: %[[RAW:.*]] = arith.bitcast %[[BITS]] : i32 to f32
// CHECK: %[[SCALED:.*]] = arith.mulf %[[SCALE]], %[[TWO120]] : f32
// CHECK: arith.mulf %[[RAW]], %[[SCALED]]
// CHECK: ins(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x1x2x16xf32>, tensor<4x4x1x16xi8>, tensor<4x4x1xi8>, tensor<2xi16>)
// CHECK: ^bb0(%{{.*}}: f32, %[[NIBBLES:.*]]: i8, %[[EXPONENT:.*]]: i8, %[[SHIFT:.*]]: i16, %{{.*}}: f32):
// CHECK: %[[WORD:.*]] = arith.extui %[[NIBBLES]] : i8 to i16
// CHECK: %[[TOP:.*]] = arith.shli %[[WORD]], %[[SHIFT]]
// CHECK: %[[DOWN:.*]] = arith.shrsi %[[TOP]], %c3_i16
// CHECK: %[[BITS:.*]] = arith.andi %[[DOWN]], %c-29184_i16
// CHECK: %[[E:.*]] = arith.extui %[[EXPONENT]] : i8 to i32
// CHECK: %[[E_BITS:.*]] = arith.shli %[[E]], %c23_i32
// CHECK: %[[S:.*]] = arith.bitcast %[[E_BITS]] : i32 to f32
// CHECK: %[[HALF:.*]] = arith.bitcast %[[BITS]] : i16 to f16
// CHECK: %[[RAW:.*]] = arith.extf %[[HALF]] : f16 to f32
// CHECK: %[[SCALED:.*]] = arith.mulf %[[S]], %[[TWO14]] : f32
// CHECK: arith.mulf %[[RAW]], %[[SCALED]]
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @shared_small_floats(%x: tensor<?x16xf32>, %qu: tensor<32x16xi8>, %su: tensor<32x1xf32>,
                               %qd: tensor<16x16xi8>, %sd: tensor<16x1xi8>) -> tensor<?x16xf32> {
  %wu = moe.dequantize %qu, %su {format = #moe.weight_format<f8e4m3>, group_size = 16 : i64} : tensor<32x16xi8>, tensor<32x1xf32> -> tensor<32x16xf32>
  %wd = moe.dequantize %qd, %sd {format = #moe.weight_format<f4e2m1>, group_size = 32 : i64} : tensor<16x16xi8>, tensor<16x1xi8> -> tensor<16x32xf32>
  %y = moe.shared_expert %x up_proj(%wu : tensor<32x16xf32>) down_proj(%wd : tensor<16x32xf32>) {activation = #moe.activation<gelu>} : tensor<?x16xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
}

// -----

// Columns in an order of their own (act order): each expert's slice of the
// order is read along with its weights, and each contraction reads its
// input through it, `rows[m, perm[k]]`, a gather of the rows (row-wise) or
// of the packed rows, so the weights still stream in their stored order.
// CHECK-LABEL: func.func @expert_act_order
// CHECK: %[[UP_PERM:.*]] = tensor.extract_slice %{{.*}}[%{{.*}}, 0] [1, 16] [1, 1] : tensor<4x16xi32> to tensor<16xi32>
// CHECK: %[[DOWN_PERM:.*]] = tensor.extract_slice %{{.*}}[%{{.*}}, 0] [1, 32] [1, 1] : tensor<4x32xi32> to tensor<32xi32>
// CHECK: %[[ROWS:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel"]} outs(%{{.*}} : tensor<?x16xf32>)
// CHECK: %[[ORDERED:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel"]} ins(%[[UP_PERM]] : tensor<16xi32>) outs(%{{.*}} : tensor<?x16xf32>)
// CHECK: ^bb0(%[[COLUMN:.*]]: i32, %{{.*}}: f32):
// CHECK: %[[K:.*]] = arith.index_cast %[[COLUMN]] : i32 to index
// CHECK: tensor.extract %[[ROWS]][%{{.*}}, %[[K]]] : tensor<?x16xf32>
// CHECK: tensor.expand_shape %[[ORDERED]] {{\[\[}}0], [1, 2]] output_shape [%{{.*}}, 2, 8] : tensor<?x16xf32> into tensor<?x2x8xf32>
// CHECK: linalg.generic {{.*}}ins(%[[DOWN_PERM]] : tensor<32xi32>) outs(%{{.*}} : tensor<?x32xf32>)
// CHECK: } else {
// CHECK: %[[PACKED:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel"]} outs(%{{.*}} : tensor<?x16x8xf32>)
// CHECK: linalg.generic {{.*}}ins(%[[UP_PERM]] : tensor<16xi32>) outs(%{{.*}} : tensor<?x16x8xf32>)
// CHECK: tensor.extract %[[PACKED]][%{{.*}}, %{{.*}}, %{{.*}}] : tensor<?x16x8xf32>
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @expert_act_order(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>,
                            %qu: tensor<4x32x16xi8>, %su: tensor<4x32x2xf32>, %pu: tensor<4x16xi32>,
                            %qd: tensor<4x16x32xi8>, %sd: tensor<4x16x1xf32>, %pd: tensor<4x32xi32>) -> tensor<?x16xf32> {
  %wu = moe.dequantize %qu, %su perm(%pu : tensor<4x16xi32>) {format = #moe.weight_format<int8>, group_size = 8 : i64} : tensor<4x32x16xi8>, tensor<4x32x2xf32> -> tensor<4x32x16xf32>
  %wd = moe.dequantize %qd, %sd perm(%pd : tensor<4x32xi32>) {format = #moe.weight_format<int8>, group_size = 32 : i64} : tensor<4x16x32xi8>, tensor<4x16x1xf32> -> tensor<4x16x32xf32>
  %out = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x32x16xf32>) down_proj(%wd : tensor<4x16x32xf32>) {slots_per_token = 2 : i64, activation = #moe.activation<gelu>} : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}
}

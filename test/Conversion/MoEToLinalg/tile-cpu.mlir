// The linalg stage per target: moe-configure-cpu's #moe.tiling, then
// moe-tile-cpu's tiles, for the gate, the shared expert and the routed
// experts. x86-64-v3 (AVX2) and x86-64-v4 (AVX-512, with or
// without avx512bf16: the router's tiling does not depend on it) differ in
// the lanes of the split reduction.
// RUN: moe-opt %s -split-input-file -moe-decompose-gate -moe-decompose-shared-expert -moe-decompose-experts -moe-configure-cpu | FileCheck %s --check-prefix=CONFIG
// RUN: moe-opt %s -split-input-file -moe-decompose-gate -moe-decompose-shared-expert -moe-decompose-experts -moe-configure-cpu -moe-tile-cpu | FileCheck %s
// An applied config is removed, so a second run changes nothing.
// RUN: moe-opt %s -split-input-file -moe-decompose-gate -moe-decompose-shared-expert -moe-decompose-experts -moe-configure-cpu -moe-tile-cpu -o %t.once
// RUN: moe-opt %s -split-input-file -moe-decompose-gate -moe-decompose-shared-expert -moe-decompose-experts -moe-configure-cpu -moe-tile-cpu -moe-tile-cpu | diff %t.once -
// RUN: FileCheck %s --check-prefix=APPLIED < %t.once
// APPLIED-NOT: #moe.tiling
// APPLIED-NOT: moe.register_tile
// RUN: moe-opt %s -split-input-file -moe-decompose-gate -moe-decompose-shared-expert -moe-decompose-experts -moe-configure-cpu=token-tile=0 -moe-tile-cpu | FileCheck %s --check-prefix=WHOLE
// RUN: not moe-opt %s -split-input-file -moe-configure-cpu=token-tile=-1 -o /dev/null 2>&1 | FileCheck %s --check-prefix=BAD

// CONFIG-LABEL: func.func @v3
// CONFIG: linalg.matmul {{.*}}{lowering_config = #moe.tiling<registers = [2, 4, 0], reduction = [0, 0, 8], interchange = [1, 0, 2]>}
// CONFIG: moe.select {{.*}}lowering_config = #moe.tiling<distribution = [16]>
// BAD: error: moe-configure-cpu: 'token-tile' (-1) must not be negative

// The select is tiled by 16 tokens in an scf.forall (the threads share the
// tiles) and the contraction fused into the tiles: only a tile's logits
// exist. In a tile, a tile of 4 experts is the
// outer loop (its router rows stay in L1 while the tokens pass), and full
// register tiles of 2 tokens × 4 experts keep 8 partial sums each in a
// vector<2x4x8xf32>
// carried through the reduction loop and reduced after it; a peeled last
// token takes [1, 4] tiles; bf16 is widened after the loads, and products
// and sums may contract into FMAs.
// CHECK-LABEL: func.func @v3
// CHECK-NOT: tensor<?x8xf32>{{.*}}= linalg.matmul
// CHECK: scf.forall (%{{.*}}) = (0) to (%{{.*}}) step (16) shared_outs(%{{.*}}, %{{.*}}) -> (tensor<?x2xi32>, tensor<?x2xf32>)
// CHECK: %[[TILE:.*]] = affine.min
// CHECK: tensor.empty(%[[TILE]]) : tensor<?x8xf32>
// CHECK: scf.for %{{.*}} step %c4
// CHECK: scf.for %{{.*}} step %c2
// CHECK: scf.for %{{.*}} = %c0 to %c64 step %c8 iter_args(%{{.*}} = %{{.*}}) -> (vector<2x4x8xf32>)
// CHECK: vector.transfer_read {{.*}} : tensor<2x8xbf16>, vector<2x4x8xbf16>
// CHECK: arith.extf {{.*}} : vector<2x4x8xbf16> to vector<2x4x8xf32>
// CHECK: arith.mulf {{.*}} fastmath<contract> : vector<2x4x8xf32>
// CHECK: arith.addf {{.*}} fastmath<contract> : vector<2x4x8xf32>
// CHECK: vector.multi_reduction <add>, %{{.*}}, %{{.*}} [2] : vector<2x4x8xf32> to vector<2x4xf32>
// CHECK: scf.for %{{.*}} step %c1
// CHECK: -> (vector<1x4x8xf32>)
// CHECK: vector.multi_reduction <add>, %{{.*}}, %{{.*}} [2] : vector<1x4x8xf32> to vector<1x4xf32>
// CHECK: moe.select %{{.*}} : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
// Without a tile of tokens the select reads the whole [T, E] logits.
// WHOLE-LABEL: func.func @v3
// WHOLE: vector<2x4x8xf32>
// WHOLE-NOT: scf.forall
// WHOLE: moe.select
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @v3(%x: tensor<?x64xbf16>, %wr: tensor<8x64xbf16>)
    -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<?x64xbf16>, tensor<8x64xbf16> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}
}

// -----

// AVX-512: 16 partial sums per register-tile element. Six experts take one
// full tile of 4 and a peeled tile of the other 2 per row pair.
// CONFIG-LABEL: func.func @v4
// CONFIG: linalg.matmul {{.*}}{lowering_config = #moe.tiling<registers = [2, 4, 0], reduction = [0, 0, 16], interchange = [1, 0, 2]>}
// CHECK-LABEL: func.func @v4
// CHECK: -> (vector<2x4x16xf32>)
// CHECK: -> (vector<2x2x16xf32>)
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma", "avx512f", "avx512bw", "avx512bf16"]>} {
func.func @v4(%x: tensor<?x64xf32>, %wr: tensor<6x64xf32>)
    -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<?x64xf32>, tensor<6x64xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}
}

// -----

// A hidden size that the lanes do not divide takes the largest power of two
// that does (no partial reduction step), and capacity routing compares
// tokens with each other, so its select is not tiled.
// CONFIG-LABEL: func.func @odd_hidden_capacity
// CONFIG: linalg.matmul {{.*}}{lowering_config = #moe.tiling<registers = [2, 4, 0], reduction = [0, 0, 4], interchange = [1, 0, 2]>}
// CONFIG: moe.select
// CONFIG-NOT: lowering_config
// CONFIG-SAME: capacity_factor
// CHECK-LABEL: func.func @odd_hidden_capacity
// CHECK-NOT: scf.forall
// CHECK: -> (vector<2x4x4xf32>)
// CHECK: moe.select
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @odd_hidden_capacity(%x: tensor<?x12xf32>, %wr: tensor<8x12xf32>)
    -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64, capacity_factor = 1.5}
      : tensor<?x12xf32>, tensor<8x12xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}
}

// -----

// The shared expert in bf16. Row-wise (fewer than 16 tokens), each weight
// is read as 4 streams of rows: the activation's 64 columns of each stream
// are distributed across threads in tiles of 1 with the gate and up
// contractions fused into them, the down projection's 128 in tiles of 2,
// and a contraction's tile keeps the router's 2 × 4 register tiles over 8
// partial sums, taking one row of each stream.
// Packed, each contraction is a register tile of 6 columns × 2 groups of 8
// rows, one reduction step at a time with its 6 × 2 × 8 sums carried in
// registers, in cache blocks of 32 groups (256 rows), each block widening
// its slice of the bf16 weights (8 lanes at a time) before the register
// tiles read it; the reduction is not blocked.
// CONFIG-LABEL: func.func @shared_bf16
// CONFIG: scf.if
// CONFIG: linalg.generic {{.*}}lowering_config = #moe.tiling<registers = [2, 4, 1, 0], reduction = [0, 0, 0, 8], interchange = [2, 0, 1, 3]>
// CONFIG: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [0, 0, 1]>
// CONFIG: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [0, 0, 2, 0], registers = [2, 4, 1, 0], reduction = [0, 0, 0, 8], interchange = [2, 0, 1, 3]>
// CONFIG: } else {
// CONFIG: linalg.generic {{.*}}lowering_config = #moe.tiling<registers = [1, 8]>
// CONFIG: linalg.generic {{.*}}lowering_config = #moe.tiling<cache = [0, 32, 0, 0], registers = [6, 2, 0, 8], reduction = [0, 0, 1, 0], interchange = [1, 0, 2, 3]>
// CONFIG: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel"]{{.*}}lowering_config = #moe.tiling<distribution = [0, 6, 0]>
// CONFIG: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [12, 0, 0, 0], cache = [0, 32, 0, 0], registers = [6, 2, 0, 8], reduction = [0, 0, 1, 0], interchange = [1, 0, 2, 3]>
// CHECK-LABEL: func.func @shared_bf16
// CHECK: scf.if
// CHECK: scf.forall (%{{.*}}) in (64) {{.*}} -> (tensor<?x4x64xf32>)
// CHECK: -> (vector<2x4x1x8xf32>)
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel"]
// CHECK: scf.forall.in_parallel
// CHECK: scf.forall (%{{.*}}) = (0) to (128) step (2) {{.*}} -> (tensor<?x4x128xf32>)
// CHECK: -> (vector<2x4x1x8xf32>)
// CHECK: } else {
// CHECK: tensor.pad
// CHECK: linalg.transpose {{.*}} permutation = [0, 2, 1]
// CHECK: scf.forall (%{{.*}}) = (0) to (256) step (6) {{.*}} -> (tensor<?x256x8xf32>)
// CHECK: scf.for %{{.*}} step %c32
// CHECK-NOT: step %c256
// CHECK: arith.extf %{{.*}} : vector<1x8xbf16> to vector<1x8xf32>
// CHECK: scf.for %{{.*}} step %c2
// CHECK: scf.for %{{.*}} step %c6
// CHECK: scf.for %{{.*}} = %c0 to %c512 step %c1 iter_args(%{{.*}}) -> (vector<6x2x1x8xf32>)
// CHECK: arith.mulf {{.*}} fastmath<contract> : vector<6x2x1x8xf32>
// CHECK: arith.addf {{.*}} fastmath<contract> : vector<6x2x1x8xf32>
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel"]
// CHECK: scf.forall.in_parallel
// CHECK: scf.forall (%{{.*}}) = (0) to (512) step (12) {{.*}} -> (tensor<?x512x8xf32>)
// CHECK-NOT: step %c256
// CHECK: -> (vector<6x2x1x8xf32>)
// CHECK: scf.forall.in_parallel
// CHECK: linalg.transpose {{.*}} permutation = [0, 2, 1]
// CHECK: tensor.extract_slice
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @shared_bf16(%x: tensor<?x512xbf16>, %sg: tensor<256x512xbf16>,
    %su: tensor<256x512xbf16>, %sd: tensor<512x256xbf16>) -> tensor<?x512xf32> {
  %s = moe.shared_expert %x gate_proj(%sg : tensor<256x512xbf16>)
         up_proj(%su : tensor<256x512xbf16>) down_proj(%sd : tensor<512x256xbf16>)
         : tensor<?x512xbf16> -> tensor<?x512xf32>
  return %s : tensor<?x512xf32>
}
}

// -----

// A static token count: the packed rows are transposed once, outside the
// threads' column tiles, whose cache blocks fuse only the weights'
// widening (none in f32), not the relayout.
// CHECK-LABEL: func.func @shared_static
// CHECK-NOT: scf.if
// CHECK: linalg.transpose {{.*}} permutation = [0, 2, 1]
// CHECK: scf.forall
// CHECK-NOT: linalg.transpose
// CHECK: -> (vector<6x2x1x8xf32>)
// CHECK-NOT: linalg.transpose
// CHECK: scf.forall.in_parallel
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @shared_static(%x: tensor<64x512xf32>, %sg: tensor<256x512xf32>,
    %su: tensor<256x512xf32>, %sd: tensor<512x256xf32>) -> tensor<64x512xf32> {
  %s = moe.shared_expert %x gate_proj(%sg : tensor<256x512xf32>)
         up_proj(%su : tensor<256x512xf32>) down_proj(%sd : tensor<512x256xf32>)
         : tensor<64x512xf32> -> tensor<64x512xf32>
  return %s : tensor<64x512xf32>
}
}

// -----

// Routed experts, combined: inside the loop over the experts, each
// segment's rows are gathered by the threads in column tiles; few rows take
// the streamed tiles, the activation's column tiles computing the gate and
// up contractions they read, and each row is then added into its token's
// output; more rows are gathered packed and take the packed tiles in cache
// blocks of 32 groups.
// CHECK-LABEL: func.func @routed
// CHECK: scf.for %{{.*}} = %c0 to %c4 step %c1 iter_args(%{{.*}}) -> (tensor<?x512xf32>)
// CHECK: scf.if
// CHECK: scf.if
// CHECK: scf.forall (%{{.*}}) = (0) to (512) step (8) {{.*}} -> (tensor<?x512xf32>)
// CHECK: tensor.extract
// CHECK: scf.forall.in_parallel
// CHECK: scf.forall (%{{.*}}) in (64) {{.*}} -> (tensor<?x4x64xf32>)
// CHECK: -> (vector<2x4x1x8xf32>)
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel"]
// CHECK: scf.forall.in_parallel
// CHECK: scf.forall (%{{.*}}) = (0) to (128) step (2) {{.*}} -> (tensor<?x4x128xf32>)
// CHECK: -> (vector<2x4x1x8xf32>)
// CHECK: scf.forall.in_parallel
// CHECK: scf.for
// CHECK: tensor.insert_slice %{{.*}} [1, 512] [1, 1] : tensor<512xf32> into tensor<?x512xf32>
// CHECK: } else {
// CHECK: scf.forall (%{{.*}}) = (0) to (512) step (8) {{.*}} -> (tensor<?x512x8xf32>)
// CHECK: scf.forall (%{{.*}}) = (0) to (256) step (6) {{.*}} -> (tensor<?x256x8xf32>)
// CHECK: scf.for %{{.*}} step %c32
// CHECK: scf.for %{{.*}} = %c0 to %c512 step %c1 iter_args(%{{.*}}) -> (vector<6x2x1x8xf32>)
// CHECK: scf.forall (%{{.*}}) = (0) to (512) step (12) {{.*}} -> (tensor<?x512x8xf32>)
// CHECK: -> (vector<6x2x1x8xf32>)
// CHECK: tensor.extract_slice %{{.*}} [1, 512, 1] [1, 1, 1] : tensor<?x512x8xf32> to tensor<512xf32>
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @routed(%x: tensor<?x512xf32>, %slots: tensor<?xi64>,
    %offsets: tensor<5xi64>, %wg: tensor<4x256x512xf32>,
    %wu: tensor<4x256x512xf32>, %wd: tensor<4x512x256xf32>,
    %slot_rows: tensor<?x2xi64>, %w: tensor<?x2xf32>) -> tensor<?x512xf32> {
  %rows = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<4x256x512xf32>)
      up_proj(%wu : tensor<4x256x512xf32>) down_proj(%wd : tensor<4x512x256xf32>)
      {slots_per_token = 2 : i64}
      : tensor<?x512xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x512xf32>
  %y = moe.combine %rows, %slot_rows, %w
      : tensor<?x512xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x512xf32>
  return %y : tensor<?x512xf32>
}
}

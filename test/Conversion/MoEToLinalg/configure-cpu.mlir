// moe-configure-cpu pins each CPU's lowering config on the linalg stage:
// the module's target decides the tiles, options override the lanes and
// the activation's fusion, a config already there is kept, and a module
// without a target is left alone.
// RUN: moe-opt %s -split-input-file -moe-decompose-gate -moe-decompose-experts -moe-configure-cpu | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-decompose-gate -moe-decompose-experts -moe-configure-cpu="vector-lanes=4 fuse-activation=false" | FileCheck %s --check-prefix=OVERRIDE
// RUN: not moe-opt %s -split-input-file -moe-configure-cpu=token-tile=-1 2>&1 | FileCheck %s --check-prefix=BAD-TOKENS
// RUN: not moe-opt %s -split-input-file -moe-configure-cpu=vector-lanes=0 2>&1 | FileCheck %s --check-prefix=BAD-LANES

// BAD-TOKENS: error: moe-configure-cpu: 'token-tile' (-1) must not be negative
// BAD-LANES: error: moe-configure-cpu: 'vector-lanes' (0) must be positive or -1

// x86-64-v3 (AVX2, 8 lanes). The router contraction: 2 × 4 register tiles
// over an 8-lane split reduction, fused into the select's tiles of 16
// tokens. Each expert segment's gathered rows are distributed along their
// columns on their own; row-wise contractions take one row of each of the
// 4 weight streams a tile, fused into the activation's distributed tiles;
// the down contraction is distributed itself. Packed contractions take
// 6 columns × 2 groups × 8 lanes a tile, one reduction step at a time, in
// cache blocks of 32 groups (256 rows), the groups' loop outside the
// columns'.
// CHECK-LABEL: func.func @avx2
// CHECK: linalg.matmul {{.*}}lowering_config = #moe.tiling<registers = [2, 4, 0], reduction = [0, 0, 8], interchange = [1, 0, 2]>
// CHECK: moe.select {{.*}}lowering_config = #moe.tiling<distribution = [16]>
// CHECK: scf.for
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [0, 1]>
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<registers = [2, 4, 1, 0], reduction = [0, 0, 0, 8], interchange = [2, 0, 1, 3]>
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<registers = [2, 4, 1, 0], reduction = [0, 0, 0, 8], interchange = [2, 0, 1, 3]>
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [0, 0, 1]>
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [0, 0, 1, 0], registers = [2, 4, 1, 0], reduction = [0, 0, 0, 8], interchange = [2, 0, 1, 3]>
// CHECK: } else {
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [0, 1, 0]>
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<cache = [0, 32, 0, 0], registers = [6, 2, 0, 8], reduction = [0, 0, 1, 0], interchange = [1, 0, 2, 3]>
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<cache = [0, 32, 0, 0], registers = [6, 2, 0, 8], reduction = [0, 0, 1, 0], interchange = [1, 0, 2, 3]>
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [0, 6, 0]>
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [6, 0, 0, 0], cache = [0, 32, 0, 0], registers = [6, 2, 0, 8], reduction = [0, 0, 1, 0], interchange = [1, 0, 2, 3]>
// Four lanes, and the gate and up contractions distributed on their own,
// as is the activation, which no longer computes them in its tiles.
// OVERRIDE-LABEL: func.func @avx2
// OVERRIDE: linalg.matmul {{.*}}reduction = [0, 0, 4]
// OVERRIDE: scf.for
// OVERRIDE: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [0, 0, 1, 0], registers = [2, 4, 1, 0], reduction = [0, 0, 0, 4]
// OVERRIDE: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [0, 0, 1, 0], registers = [2, 4, 1, 0], reduction = [0, 0, 0, 4]
// OVERRIDE: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [0, 0, 1]>
// OVERRIDE: } else {
// OVERRIDE: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [6, 0, 0, 0], cache = [0, 32, 0, 0], registers = [6, 2, 0, 8]
// OVERRIDE: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [6, 0, 0, 0], cache = [0, 32, 0, 0], registers = [6, 2, 0, 8]
// OVERRIDE: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [0, 6, 0]>
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @avx2(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>,
                %wg: tensor<8x32x64xf32>, %wu: tensor<8x32x64xf32>,
                %wd: tensor<8x64x32xf32>, %slots: tensor<?xi64>,
                %offsets: tensor<9xi64>) -> (tensor<?x2xi32>, tensor<?x64xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  %rows = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<8x32x64xf32>)
      up_proj(%wu : tensor<8x32x64xf32>) down_proj(%wd : tensor<8x64x32xf32>)
      {slots_per_token = 2 : i64}
      : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
  return %ids, %rows : tensor<?x2xi32>, tensor<?x64xf32>
}
}

// -----

// x86-64-v4 with avx512bf16 (16 lanes) and bf16 weights: packing starts at
// 32 rows; packed tiles of 12 columns × 2 groups × 16 lanes in cache
// blocks of 16 groups (256 rows); each weight's widening a register tile
// of one row of lanes.
// CHECK-LABEL: func.func @avx512_bf16
// CHECK: arith.cmpi ult, %{{.*}}, %c32
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<registers = [2, 4, 1, 0], reduction = [0, 0, 0, 16], interchange = [2, 0, 1, 3]>
// CHECK: } else {
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<registers = [1, 16]>
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<cache = [0, 16, 0, 0], registers = [12, 2, 0, 16], reduction = [0, 0, 1, 0], interchange = [1, 0, 2, 3]>
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [0, 12, 0]>
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<registers = [1, 16]>
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [12, 0, 0, 0], cache = [0, 16, 0, 0], registers = [12, 2, 0, 16]
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma", "avx512f", "avx512bw", "avx512bf16"]>} {
func.func @avx512_bf16(%x: tensor<?x512xbf16>, %wu: tensor<4x64x512xbf16>,
                       %wd: tensor<4x512x64xbf16>, %slots: tensor<?xi64>,
                       %offsets: tensor<5xi64>) -> tensor<?x512xf32> {
  %rows = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x64x512xbf16>)
      down_proj(%wd : tensor<4x512x64xbf16>) {slots_per_token = 2 : i64}
      : tensor<?x512xbf16>, tensor<?xi64>, tensor<5xi64> -> tensor<?x512xf32>
  return %rows : tensor<?x512xf32>
}
}

// -----

// x86-64-v4 without avx512bf16 chooses the same tiles.
// CHECK-LABEL: func.func @avx512
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<cache = [0, 16, 0, 0], registers = [12, 2, 0, 16]
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma", "avx512f", "avx512bw"]>} {
func.func @avx512(%x: tensor<?x512xf32>, %wu: tensor<4x64x512xf32>,
                  %wd: tensor<4x512x64xf32>, %slots: tensor<?xi64>,
                  %offsets: tensor<5xi64>) -> tensor<?x512xf32> {
  %rows = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x64x512xf32>)
      down_proj(%wd : tensor<4x512x64xf32>) {slots_per_token = 2 : i64}
      : tensor<?x512xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x512xf32>
  return %rows : tensor<?x512xf32>
}
}

// -----

// An inner level's router contraction (every parent's logits at once) is
// row-wise and distributed over its columns: no moe.select reads it.
// CHECK-LABEL: func.func @refine
// CHECK: linalg.matmul {{.*}}lowering_config = #moe.tiling<distribution = [0, 4, 0], registers = [2, 4, 0], reduction = [0, 0, 8], interchange = [1, 0, 2]>
// CHECK: moe.refine_select
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @refine(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                  %wr: tensor<4x8x64xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 2 : i64}
      : tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x8x64xf32>
      -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids2, %w2 : tensor<?x4xi32>, tensor<?x4xf32>
}
}

// -----

// A config already there is kept.
// CHECK-LABEL: func.func @kept
// CHECK: linalg.matmul {{.*}}lowering_config = #moe.tiling<registers = [1, 1, 0]>
// OVERRIDE-LABEL: func.func @kept
// OVERRIDE: linalg.matmul {{.*}}lowering_config = #moe.tiling<registers = [1, 1, 0]>
module attributes {moe.target = #moe.cpu_target<features = []>} {
func.func @kept(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>,
                %init: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %logits = linalg.matmul
      indexing_maps = [affine_map<(m, n, k) -> (m, k)>,
                       affine_map<(m, n, k) -> (n, k)>,
                       affine_map<(m, n, k) -> (m, n)>]
      {lowering_config = #moe.tiling<registers = [1, 1, 0]>}
      ins(%x, %wr : tensor<?x64xf32>, tensor<8x64xf32>)
      outs(%init : tensor<?x8xf32>) -> tensor<?x8xf32>
  return %logits : tensor<?x8xf32>
}
}

// -----

// Without a target nothing is attached.
// CHECK-LABEL: func.func @no_target
// CHECK-NOT: lowering_config
module {
func.func @no_target(%x: tensor<?x64xf32>, %wu: tensor<8x32x64xf32>,
                     %wd: tensor<8x64x32xf32>, %slots: tensor<?xi64>,
                     %offsets: tensor<9xi64>) -> tensor<?x64xf32> {
  %rows = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<8x32x64xf32>)
      down_proj(%wd : tensor<8x64x32xf32>) {slots_per_token = 2 : i64}
      : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
  return %rows : tensor<?x64xf32>
}
}

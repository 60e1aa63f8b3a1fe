// The gate's linalg stage per target: moe-configure-cpu's #moe.tiling, then
// moe-tile-cpu's tiles. x86-64-v3 (AVX2) and x86-64-v4 (AVX-512, with or
// without avx512bf16: the router's tiling does not depend on it) differ in
// the lanes of the split reduction.
// RUN: moe-opt %s -split-input-file -moe-decompose-gate -moe-configure-cpu | FileCheck %s --check-prefix=CONFIG
// RUN: moe-opt %s -split-input-file -moe-decompose-gate -moe-configure-cpu -moe-tile-cpu | FileCheck %s
// An applied config is removed, so a second run changes nothing.
// RUN: moe-opt %s -split-input-file -moe-decompose-gate -moe-configure-cpu -moe-tile-cpu -o %t.once
// RUN: moe-opt %s -split-input-file -moe-decompose-gate -moe-configure-cpu -moe-tile-cpu -moe-tile-cpu | diff %t.once -
// RUN: FileCheck %s --check-prefix=APPLIED < %t.once
// APPLIED-NOT: #moe.tiling
// APPLIED-NOT: moe.register_tile
// RUN: moe-opt %s -split-input-file -moe-decompose-gate -moe-configure-cpu=token-tile=0 -moe-tile-cpu | FileCheck %s --check-prefix=WHOLE
// RUN: not moe-opt %s -split-input-file -moe-configure-cpu=token-tile=-1 -o /dev/null 2>&1 | FileCheck %s --check-prefix=BAD

// CONFIG-LABEL: func.func @v3
// CONFIG: linalg.matmul {{.*}}{lowering_config = #moe.tiling<registers = [2, 4, 0], reduction = [0, 0, 8], interchange = [1, 0, 2]>}
// CONFIG: moe.select {{.*}}lowering_config = #moe.tiling<distribution = [16]>
// BAD: error: moe-configure-cpu: 'token-tile' (-1) must not be negative

// The select is tiled by 16 tokens and the contraction fused into the tile
// loop: only a tile's logits exist. In a tile, a tile of 4 experts is the
// outer loop (its router rows stay in L1 while the tokens pass), and full
// register tiles of 2 tokens × 4 experts keep 8 partial sums each in a
// vector<2x4x8xf32>
// carried through the reduction loop and reduced after it; a peeled last
// token takes [1, 4] tiles; bf16 is widened after the loads, and products
// and sums may contract into FMAs.
// CHECK-LABEL: func.func @v3
// CHECK-NOT: tensor<?x8xf32>{{.*}}= linalg.matmul
// CHECK: scf.for %{{.*}} = %c0 to %{{.*}} step %c16 iter_args(%{{.*}}, %{{.*}}) -> (tensor<?x2xi32>, tensor<?x2xf32>)
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
// WHOLE-NOT: step %c16
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
// CHECK-NOT: step %c16
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

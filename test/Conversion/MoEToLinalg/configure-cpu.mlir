// moe-configure-cpu pins each CPU's lowering config: the module's target
// decides the tiles, weights of 2 bytes take twice the reduction per pass
// and outer products from two vectors of rows, options override, a config
// already there is kept, and a module without a target is left alone.
// RUN: moe-opt %s -split-input-file -moe-configure-cpu | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-configure-cpu="vector-lanes=4 broadcast-weight-rows=0 strided-columns=false" | FileCheck %s --check-prefix=OVERRIDE
// RUN: not moe-opt %s -split-input-file -moe-configure-cpu=tile-weight-rows=3 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: moe-opt %s -split-input-file -moe-configure-cpu -moe-lower-gate -moe-lower-experts | FileCheck %s --check-prefix=LOWERED

// A gate is decomposed first; moe-configure-cpu configures its parts.
// CHECK-LABEL: func.func @avx2
// CHECK-NOT: moe.gate {{.*}}lowering_config
// CHECK: moe.expert {{.*}}lowering_config = #moe.lowering_config<vector_lanes = 8, tile_rows = 2, tile_weight_rows = 4, reduction_block = 1024, row_block = 32, broadcast_weight_rows = 6, broadcast_min_rows = 8, broadcast_reduction_block = 256>
// The shared expert is configured as linalg ops (decompose-shared-expert.mlir).
// CHECK-NOT: moe.shared_expert {{.*}}lowering_config
// OVERRIDE-LABEL: func.func @avx2
// OVERRIDE: moe.expert {{.*}}lowering_config = #moe.lowering_config<vector_lanes = 4, tile_rows = 2, tile_weight_rows = 4, reduction_block = 1024, row_block = 32, broadcast_weight_rows = 0, broadcast_min_rows = 8, broadcast_reduction_block = 256, strided_columns = false>
// BAD: error: moe-configure-cpu: tile_weight_rows must be even and at least 2
// The router and expert kernels take the config's 8 lanes, not the
// pass's default 16.
// LOWERED-LABEL: func.func @avx2
// LOWERED-NOT: vector<16xf32>
// LOWERED: vector.fma {{.*}} : vector<8xf32>
// LOWERED-NOT: vector<16xf32>
// LOWERED-LABEL: func.func @avx512
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @avx2(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>,
                %wg: tensor<8x32x64xf32>, %wu: tensor<8x32x64xf32>,
                %wd: tensor<8x64x32xf32>, %slots: tensor<?xi64>,
                %offsets: tensor<9xi64>, %su: tensor<16x64xf32>,
                %sd: tensor<64x16xf32>)
    -> (tensor<?x2xi32>, tensor<?x64xf32>, tensor<?x64xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  %rows = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<8x32x64xf32>)
      up_proj(%wu : tensor<8x32x64xf32>) down_proj(%wd : tensor<8x64x32xf32>)
      {slots_per_token = 2 : i64}
      : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
  %s = moe.shared_expert %x up_proj(%su : tensor<16x64xf32>)
      down_proj(%sd : tensor<64x16xf32>) : tensor<?x64xf32> -> tensor<?x64xf32>
  return %ids, %rows, %s : tensor<?x2xi32>, tensor<?x64xf32>, tensor<?x64xf32>
}
}

// -----

// CHECK-LABEL: func.func @avx512
// CHECK: moe.expert {{.*}}lowering_config = #moe.lowering_config<vector_lanes = 16, tile_rows = 4, tile_weight_rows = 4, reduction_block = 1024, row_block = 32, broadcast_weight_rows = 12, broadcast_min_rows = 16, broadcast_reduction_block = 128>
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma", "avx512f", "avx512bw"]>} {
func.func @avx512(%x: tensor<?x64xf32>, %wg: tensor<8x32x64xf32>,
                  %wu: tensor<8x32x64xf32>, %wd: tensor<8x64x32xf32>,
                  %slots: tensor<?xi64>, %offsets: tensor<9xi64>)
    -> tensor<?x64xf32> {
  %rows = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<8x32x64xf32>)
      up_proj(%wu : tensor<8x32x64xf32>) down_proj(%wd : tensor<8x64x32xf32>)
      {slots_per_token = 2 : i64}
      : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
  return %rows : tensor<?x64xf32>
}
}

// -----

// CHECK-LABEL: func.func @avx2_bf16
// CHECK: moe.expert {{.*}}lowering_config = #moe.lowering_config<vector_lanes = 8, tile_rows = 2, tile_weight_rows = 4, reduction_block = 2048, row_block = 32, broadcast_weight_rows = 6, broadcast_min_rows = 16, broadcast_reduction_block = 256>
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @avx2_bf16(%x: tensor<?x64xbf16>, %wu: tensor<8x32x64xbf16>,
                     %wd: tensor<8x64x32xbf16>, %slots: tensor<?xi64>,
                     %offsets: tensor<9xi64>) -> tensor<?x64xf32> {
  %rows = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<8x32x64xbf16>)
      down_proj(%wd : tensor<8x64x32xbf16>) {slots_per_token = 2 : i64}
      : tensor<?x64xbf16>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
  return %rows : tensor<?x64xf32>
}
}

// -----

// A config already there is kept.
// CHECK-LABEL: func.func @kept
// CHECK: lowering_config = #moe.lowering_config<vector_lanes = 4, tile_rows = 1,
// OVERRIDE-LABEL: func.func @kept
// OVERRIDE: lowering_config = #moe.lowering_config<vector_lanes = 4, tile_rows = 1,
module attributes {moe.target = #moe.cpu_target<features = []>} {
func.func @kept(%x: tensor<?x64xf32>, %wu: tensor<8x32x64xf32>,
                %wd: tensor<8x64x32xf32>, %slots: tensor<?xi64>,
                %offsets: tensor<9xi64>) -> tensor<?x64xf32> {
  %rows = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<8x32x64xf32>)
      down_proj(%wd : tensor<8x64x32xf32>)
      {slots_per_token = 2 : i64,
       lowering_config = #moe.lowering_config<vector_lanes = 4, tile_rows = 1,
           tile_weight_rows = 2, reduction_block = 0, row_block = 8,
           broadcast_weight_rows = 0, broadcast_min_rows = 8,
           broadcast_reduction_block = 0>}
      : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
  return %rows : tensor<?x64xf32>
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

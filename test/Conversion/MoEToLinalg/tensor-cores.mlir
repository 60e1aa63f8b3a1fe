// RUN: moe-opt %s -split-input-file -moe-decompose-grouped -moe-lower-combine=accumulate-into-shared=false -moe-configure-gpu=tensor-cores=true | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-decompose-grouped -moe-lower-combine=accumulate-into-shared=false -moe-configure-gpu=tensor-cores=true -moe-tile-gpu | FileCheck %s --check-prefix=TILED
// RUN: moe-opt %s -split-input-file -moe-decompose-grouped -moe-lower-combine=accumulate-into-shared=false -moe-configure-gpu | FileCheck %s --check-prefix=SIMT

// With tensor cores, a kernel whose projections multiply bf16 weights (the
// input bf16 for expert_up, the f32 activation for expert_down) by whole
// 8-column fragments marks them and the op that ends it moe.mma_sync: the
// projections get no lowering config (each warp's tile fuses them whole),
// the last op the SIMT blocks and a warp's 16 rows × up to 32 columns as
// its threads level.
// CHECK-LABEL: func.func @routed
// CHECK: linalg.generic {{.*}}tensor<?x64x48xf32>) attrs = {moe.mma_sync = array<i64: 16, 8, 16>}
// CHECK: linalg.generic {{.*}}tensor<?x64x48xf32>) attrs = {moe.mma_sync = array<i64: 16, 8, 16>}
// CHECK: lowering_config = #moe.tiling<distribution = [1, 64, 16], threads = [1, 16, 16]>, moe.kernel = "expert_up", moe.mma_sync = array<i64: 16, 8, 16>}
// CHECK: linalg.generic {{.*}}tensor<?x64x64xf32>) attrs = {moe.mma_sync = array<i64: 16, 8, 16>}
// CHECK: lowering_config = #moe.tiling<distribution = [1, 64, 64], threads = [1, 16, 32]>, moe.kernel = "expert_down", moe.mma_sync = array<i64: 16, 8, 16>}
// Without them, the same kernels are SIMT.
// SIMT-LABEL: func.func @routed
// SIMT-NOT: moe.mma_sync
// SIMT: moe.kernel = "expert_up"
// SIMT-NOT: moe.mma_sync
// The warps' loop fuses the projections and keeps them (and the op that
// ends the kernel) whole for moe-gpu-mma-sync; the rows' tokens and the
// tile's expert are vectorized as in threads.
// TILED-LABEL: func.func @routed
// TILED: scf.forall ({{.*}}) = (0, 0, 0) to (%{{.*}}, 64, 48) step (1, 64, 16) shared_outs
// TILED: scf.forall ({{.*}}) = (0, 0, 0) to (1, 64, 16) step (1, 16, 16) shared_outs
// TILED: linalg.generic {{.*}}ins(%{{.*}}, %{{.*}}, %{{.*}} : tensor<1x16xi64>, tensor<1xindex>, tensor<64xf32>) outs(%{{.*}} : tensor<1x16x16xf32>) attrs = {moe.mma_sync = array<i64: 16, 8, 16>}
// TILED: linalg.generic {{.*}}outs(%{{.*}} : tensor<1x16x16xf32>) attrs = {moe.mma_sync = array<i64: 16, 8, 16>}
// TILED: linalg.generic {{.*}}outs(%{{.*}} : tensor<1x16x16xf32>) attrs = {moe.mma_sync = array<i64: 16, 8, 16>}
// TILED: } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
// TILED: } {mapping = [#gpu.block<x>, #gpu.block<y>, #gpu.block<z>]}
// TILED: scf.forall ({{.*}}) = (0, 0, 0) to (1, 64, 64) step (1, 16, 32) shared_outs
// TILED: } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
func.func @routed(%x: tensor<?x64xbf16>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>,
    %wg: tensor<4x48x64xbf16>, %wu: tensor<4x48x64xbf16>, %wd: tensor<4x64x48xbf16>)
    -> tensor<?x64xf32> {
  %out = moe.expert %x, %slots, %offsets
      gate_proj(%wg : tensor<4x48x64xbf16>) up_proj(%wu : tensor<4x48x64xbf16>)
      down_proj(%wd : tensor<4x64x48xbf16>)
      {slots_per_token = 2 : i64}
      : tensor<?x64xbf16>, tensor<?xi64>, tensor<5xi64> -> tensor<?x64xf32>
  return %out : tensor<?x64xf32>
}

// -----

// f32 weights stay SIMT, and so does a kernel with a projection of columns
// other than whole fragments (F = 20 for expert_up; expert_down's H = 16
// has them).
// CHECK-LABEL: func.func @not_tensor_cores
// CHECK: lowering_config = #moe.tiling<distribution = [1, 64, 16], threads = [1, 4, 1]>, moe.kernel = "expert_up"}
// CHECK: lowering_config = #moe.tiling<distribution = [1, 64, 16], threads = [1, 4, 1]>, moe.kernel = "expert_down"}
// CHECK-LABEL: func.func @partial_fragments
// CHECK: lowering_config = #moe.tiling<distribution = [1, 64, 4], threads = [1, 4, 1]>, moe.kernel = "expert_up"}
// CHECK: lowering_config = #moe.tiling<distribution = [1, 64, 16], threads = [1, 16, 16]>, moe.kernel = "expert_down", moe.mma_sync = array<i64: 16, 8, 16>}
func.func @not_tensor_cores(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<3xi64>,
    %wu: tensor<2x16x16xf32>, %wd: tensor<2x16x16xf32>) -> tensor<?x16xf32> {
  %out = moe.expert %x, %slots, %offsets
      up_proj(%wu : tensor<2x16x16xf32>) down_proj(%wd : tensor<2x16x16xf32>)
      {slots_per_token = 1 : i64}
      : tensor<?x16xf32>, tensor<?xi64>, tensor<3xi64> -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}
func.func @partial_fragments(%x: tensor<?x16xf16>, %slots: tensor<?xi64>, %offsets: tensor<3xi64>,
    %wu: tensor<2x20x16xf16>, %wd: tensor<2x16x20xf16>) -> tensor<?x16xf32> {
  %out = moe.expert %x, %slots, %offsets
      up_proj(%wu : tensor<2x20x16xf16>) down_proj(%wd : tensor<2x16x20xf16>)
      {slots_per_token = 1 : i64}
      : tensor<?x16xf16>, tensor<?xi64>, tensor<3xi64> -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}

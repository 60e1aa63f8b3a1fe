// RUN: moe-opt %s -split-input-file -moe-decompose-grouped -moe-lower-combine=accumulate-into-shared=false -moe-configure-gpu -verify-diagnostics | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-decompose-grouped=row-tile=32 -moe-lower-combine=accumulate-into-shared=false -moe-configure-gpu=row-tile=32 -verify-diagnostics | FileCheck %s --check-prefix=ROWS32

// A kernel ends at the activation (the down projection reads whole rows of
// it along its reduction) and at the down projection's epilogue (read by
// no linalg op): a block takes a row tile and the most columns up to 64
// that divide N (16 of F = 48, 32 of H = 32), 16 threads along the rows
// and up to 16 along the columns. Every reduction (the contractions, a
// tile's expert over the offsets) steps through its reduction loops one
// element at a time. The configuration reads no target: the SIMT kernels
// are the same on sm_80 and sm_90.
// CHECK-LABEL: func.func @routed
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]{{.*}}lowering_config = #moe.tiling<reduction = [0, 1]>
// CHECK: linalg.generic {{.*}}tensor<?x64x48xf32>) attrs = {lowering_config = #moe.tiling<reduction = [0, 0, 0, 1]>}
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [1, 64, 16], threads = [1, 4, 1]>, moe.kernel = "expert_up"
// CHECK: linalg.generic {{.*}}tensor<?x64x32xf32>) attrs = {lowering_config = #moe.tiling<reduction = [0, 0, 0, 1]>}
// CHECK: linalg.generic {{.*}}lowering_config = #moe.tiling<distribution = [1, 64, 32], threads = [1, 4, 2]>, moe.kernel = "expert_down"
// ROWS32-LABEL: func.func @routed
// ROWS32: lowering_config = #moe.tiling<distribution = [1, 32, 16], threads = [1, 2, 1]>, moe.kernel = "expert_up"
// ROWS32: lowering_config = #moe.tiling<distribution = [1, 32, 32], threads = [1, 2, 2]>, moe.kernel = "expert_down"
func.func @routed(%x: tensor<?x32xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>,
    %wu: tensor<4x48x32xf32>, %wd: tensor<4x32x48xf32>) -> tensor<?x32xf32> {
  %out = moe.expert %x, %slots, %offsets
      up_proj(%wu : tensor<4x48x32xf32>) down_proj(%wd : tensor<4x32x48xf32>)
      {slots_per_token = 2 : i64}
      : tensor<?x32xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x32xf32>
  return %out : tensor<?x32xf32>
}

// -----

// H = 17 has no power of two but 1 dividing it: a block takes one column,
// 16 threads 4 rows of it each. The gate's reduction over the row's
// input steps through it.
// CHECK-LABEL: func.func @odd_columns
// CHECK: iterator_types = ["parallel", "parallel", "reduction"]{{.*}}lowering_config = #moe.tiling<reduction = [0, 0, 1]>
// CHECK: lowering_config = #moe.tiling<distribution = [1, 64, 8], threads = [1, 4, 1]>, moe.kernel = "shared_up"
// CHECK: lowering_config = #moe.tiling<distribution = [1, 64, 1], threads = [1, 4, 1]>, moe.kernel = "shared_down"
func.func @odd_columns(%x: tensor<?x17xf32>, %su: tensor<8x17xf32>, %sd: tensor<17x8xf32>,
    %g: tensor<17xf32>) -> tensor<?x17xf32> {
  %s = moe.shared_expert %x up_proj(%su : tensor<8x17xf32>) down_proj(%sd : tensor<17x8xf32>)
      expert_gate(%g : tensor<17xf32>) : tensor<?x17xf32> -> tensor<?x17xf32>
  return %s : tensor<?x17xf32>
}

// -----

// Combine's gather-reduction over (t, n, j) is a token-wise kernel: the
// most columns up to 256 that divide H (16) × 256 / 16 tokens a block, one
// element a thread, its slots one at a time; with a bf16 result the
// rounding ends the kernel and the sum is fused into it.
// CHECK-LABEL: func.func @combine
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction"]{{.*}}lowering_config = #moe.tiling<reduction = [0, 0, 1]>
// CHECK: linalg.generic {{.*}}outs(%{{.*}} : tensor<?x16xbf16>) attrs = {lowering_config = #moe.tiling<distribution = [16, 16], threads = [1, 1]>, moe.kernel = "combine"}
// CHECK: arith.truncf
// ROWS32-LABEL: func.func @combine
// ROWS32: lowering_config = #moe.tiling<distribution = [16, 16], threads = [1, 1]>, moe.kernel = "combine"
func.func @combine(%out: tensor<?x16xf32>, %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>)
    -> tensor<?x16xbf16> {
  %y = moe.combine %out, %rows, %w
      : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// A static token count tiles the same (here one block of the 5 tokens).
// CHECK-LABEL: func.func @combine_static
// CHECK: lowering_config = #moe.tiling<distribution = [16, 16], threads = [1, 1]>, moe.kernel = "combine"
func.func @combine_static(%out: tensor<?x16xf32>, %rows: tensor<5x2xi64>, %w: tensor<5x2xf32>)
    -> tensor<5x16xbf16> {
  %y = moe.combine %out, %rows, %w
      : tensor<?x16xf32>, tensor<5x2xi64>, tensor<5x2xf32> -> tensor<5x16xbf16>
  return %y : tensor<5x16xbf16>
}

// -----

// An op whose result no linalg op reads ends a kernel, so it must be a
// grouped FFN's.
func.func @not_grouped(%t: tensor<8xf32>) -> tensor<8xf32> {
  %zero = arith.constant 0.0 : f32
  // expected-error @+1 {{ends a GPU kernel but its loops are neither a grouped FFN's (t, i, n) over}}
  %f = linalg.fill ins(%zero : f32) outs(%t : tensor<8xf32>) -> tensor<8xf32>
  return %f : tensor<8xf32>
}

// -----

// RUN: not moe-opt %s -moe-configure-gpu=row-tile=24 2>&1 | FileCheck %s --check-prefix=BAD-ROWS
// BAD-ROWS: error: moe-configure-gpu: 'row-tile' (24) must be a multiple of 16
func.func @bad_rows() {
  return
}

// RUN: moe-opt %s -moe-decompose-grouped -moe-lower-combine=accumulate-into-shared=false -moe-configure-gpu -moe-tile-gpu | FileCheck %s --implicit-check-not=linalg.generic --implicit-check-not=linalg.fill

// Each kernel is an scf.forall over blocks (a row tile × 16 of F = 48
// columns; one tile of all H = 32 columns) with a nested scf.forall over
// threads (4 rows × 1 or 2 columns each), every producer fused into both:
// no linalg op is left. The loops carry GPU processors, so that none of
// one iteration folds away. A thread computes its tile's expert and its rows'
// tokens, then each projection as a loop over the reduction whose sums
// are vectors carried in registers, its input rows and its expert's
// weights read by gathers, products allowed to contract into FMAs; the
// activation and the epilogue are vector ops on the sums. The function
// records its kernels' names.
// CHECK-LABEL: func.func @routed
// CHECK-SAME: attributes {moe.kernels = ["expert_up", "expert_down"]}
// CHECK: %[[HIDDEN:.*]] = scf.forall ({{.*}}) = (0, 0, 0) to (%{{.*}}, 64, 48) step (1, 64, 16) shared_outs
// CHECK: scf.forall ({{.*}}) = (0, 0, 0) to (1, 64, 16) step (1, 4, 1) shared_outs
// CHECK: scf.for {{.*}} -> (vector<1xindex>)
// CHECK: scf.for {{.*}} -> (vector<1x4x1xf32>)
// CHECK: vector.gather %arg0
// CHECK: vector.gather %arg4
// CHECK: arith.mulf {{.*}} fastmath<contract> : vector<1x4x1x1xf32>
// CHECK: scf.for {{.*}} -> (vector<1x4x1xf32>)
// CHECK: vector.gather %arg3
// CHECK: math.exp {{.*}} : vector<1x4x1xf32>
// CHECK: vector.transfer_write
// CHECK: tensor.parallel_insert_slice
// CHECK: } {mapping = [#gpu.thread<x>, #gpu.thread<y>, #gpu.thread<z>]}
// CHECK: tensor.parallel_insert_slice
// CHECK: } {mapping = [#gpu.block<x>, #gpu.block<y>, #gpu.block<z>]}
// CHECK: scf.forall ({{.*}}) = (0, 0, 0) to (%{{.*}}, 64, 32) step (1, 64, 32) shared_outs
// CHECK: tensor.extract_slice %[[HIDDEN]]
// CHECK: scf.forall ({{.*}}) = (0, 0, 0) to (1, 64, 32) step (1, 4, 2) shared_outs
// CHECK: scf.for {{.*}} -> (vector<1x4x2xf32>)
// CHECK: vector.transfer_read
// CHECK: vector.gather %arg5
// CHECK: arith.select {{.*}} : vector<1x4x2xi1>, vector<1x4x2xf32>
// CHECK: tensor.collapse_shape
func.func @routed(%x: tensor<?x32xbf16>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>,
    %wg: tensor<4x48x32xbf16>, %wu: tensor<4x48x32xbf16>, %wd: tensor<4x32x48xbf16>)
    -> tensor<?x32xf32> {
  %out = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<4x48x32xbf16>)
      up_proj(%wu : tensor<4x48x32xbf16>) down_proj(%wd : tensor<4x32x48xbf16>)
      {slots_per_token = 2 : i64}
      : tensor<?x32xbf16>, tensor<?xi64>, tensor<5xi64> -> tensor<?x32xf32>
  return %out : tensor<?x32xf32>
}


// Combine: blocks of 16 tokens (fewer in the last) × the 16 columns, a
// thread per element; the thread's sum starts from zero in its own tile
// and steps through the slots; the gather-reduction's branch on a dropped
// slot keeps it a scalar linalg op; the shared row is added and the sum
// rounded as vector ops.
// CHECK-LABEL: func.func @combine
// CHECK-SAME: attributes {moe.kernels = ["combine"]}
// CHECK: scf.forall ({{.*}}) = (0, 0) to (%{{.*}}, 16) step (16, 16) shared_outs
// CHECK: scf.forall ({{.*}}) in (%{{.*}}, 16) shared_outs
// CHECK: %[[EMPTY:.*]] = tensor.empty() : tensor<1x1xf32>
// CHECK: %[[ZERO:.*]] = vector.transfer_write %{{.*}}, %[[EMPTY]]
// CHECK: scf.for {{.*}} iter_args(%{{.*}} = %[[ZERO]]) -> (tensor<1x1xf32>)
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction"]
// CHECK: scf.if
// CHECK: arith.addf {{.*}} : vector<1x1xf32>
// CHECK: arith.truncf {{.*}} : vector<1x1xf32> to vector<1x1xbf16>
// CHECK: tensor.parallel_insert_slice
func.func @combine(%out: tensor<?x16xf32>, %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>,
    %s: tensor<?x16xf32>) -> tensor<?x16xbf16> {
  %y = moe.combine %out, %rows, %w shared(%s : tensor<?x16xf32>)
      : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

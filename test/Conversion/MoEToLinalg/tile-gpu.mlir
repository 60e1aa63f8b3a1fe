// RUN: moe-opt %s -moe-decompose-grouped -moe-configure-gpu -moe-tile-gpu | FileCheck %s --implicit-check-not=linalg.

// Each kernel is an scf.forall over blocks (a row tile × 16 of F = 48
// columns; one tile of all H = 32 columns) with a nested scf.forall over
// threads (4 rows × 1 or 2 columns each), every producer fused into both:
// no linalg op is left. A thread computes its tile's expert and its rows'
// tokens, then each projection as a loop over the reduction whose sums
// are vectors carried in registers, its input rows and its expert's
// weights read by gathers, products allowed to contract into FMAs; the
// activation and the epilogue are vector ops on the sums. The function
// records its kernels' names.
// CHECK-LABEL: func.func @routed
// CHECK-SAME: attributes {moe.kernels = ["expert_up", "expert_down"]}
// CHECK: %[[HIDDEN:.*]] = scf.forall ({{.*}}) = (0, 0) to (%{{.*}}, 48) step (1, 16) shared_outs
// CHECK: scf.forall ({{.*}}) = (0, 0) to (64, 16) step (4, 1) shared_outs
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
// CHECK: tensor.parallel_insert_slice
// CHECK: scf.forall ({{.*}}) in (%{{.*}}) shared_outs
// CHECK: tensor.extract_slice %[[HIDDEN]]
// CHECK: scf.forall ({{.*}}) = (0, 0) to (64, 32) step (4, 2) shared_outs
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


// RUN: moe-opt %s -split-input-file -moe-gpu-mma-sync -verify-diagnostics | FileCheck %s

// A warp's tile of 16 rows × 16 columns of one projection, K = 24: the
// warps' loop becomes one over (warp, 32 lanes). Each lane carries its two
// 8-column sum fragments through a loop over K in steps of 16, reads its
// A and B fragments' elements where mma.sync wants them (the lanes' code
// is arith on the lane, no affine), zero past K = 24, and runs the op that
// ends the kernel on each sum element, stored in place. The sums' buffer
// and its fill are gone. (The loop steps twice: up to 32 by 16.)
// CHECK-LABEL: func.func @warp
// CHECK: scf.forall (%[[WARP:.*]], %[[LANE:.*]]) in (1, 32) {
// CHECK-NOT: memref.alloc
// CHECK-NOT: linalg.
// CHECK-NOT: affine.apply
// CHECK: %[[SUMS:.*]]:2 = scf.for %{{.*}} = %c0{{.*}} to %c32 step %c16{{.*}} iter_args({{.*}}) -> (vector<2x2xf32>, vector<2x2xf32>) {
// CHECK: arith.minui
// CHECK: memref.load %arg0
// CHECK: arith.select {{.*}} : bf16
// CHECK: vector.from_elements {{.*}} : vector<4x2xbf16>
// CHECK: memref.load %arg1
// CHECK: vector.from_elements {{.*}} : vector<2x2xbf16>
// CHECK: vector.from_elements {{.*}} : vector<2x2xbf16>
// CHECK: nvgpu.mma.sync({{.*}}) {mmaShape = [16, 8, 16]} : (vector<4x2xbf16>, vector<2x2xbf16>, vector<2x2xf32>) -> vector<2x2xf32>
// CHECK: nvgpu.mma.sync
// CHECK: scf.yield
// CHECK: vector.extract %[[SUMS]]#0[0, 0] : f32 from vector<2x2xf32>
// CHECK: math.tanh
// CHECK: memref.store {{.*}}, %arg2[
// CHECK-NOT: linalg.
// CHECK: } {mapping = [#gpu.thread<y>, #gpu.thread<x>], moe.warp_lanes}
func.func @warp(%x: memref<1x16x24xbf16>, %w: memref<1x16x24xbf16>, %out: memref<1x16x16xf32>) {
  %zero = arith.constant 0.0 : f32
  scf.forall (%t, %i, %n) = (0, 0, 0) to (1, 16, 16) step (1, 16, 16) {
    %sums = memref.alloc() : memref<1x16x16xf32>
    linalg.fill ins(%zero : f32) outs(%sums : memref<1x16x16xf32>)
    linalg.generic {indexing_maps = [affine_map<(t, i, n, k) -> (t, i, k)>,
                                     affine_map<(t, i, n, k) -> (t, n, k)>,
                                     affine_map<(t, i, n, k) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
        ins(%x, %w : memref<1x16x24xbf16>, memref<1x16x24xbf16>)
        outs(%sums : memref<1x16x16xf32>) attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%a: bf16, %b: bf16, %s: f32):
      %aw = arith.extf %a : bf16 to f32
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %aw, %bw : f32
      %r = arith.addf %s, %p : f32
      linalg.yield %r : f32
    }
    linalg.generic {indexing_maps = [affine_map<(t, i, n) -> (t, i, n)>,
                                     affine_map<(t, i, n) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel"]}
        ins(%sums : memref<1x16x16xf32>) outs(%out : memref<1x16x16xf32>)
        attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%s: f32, %o: f32):
      %t2 = math.tanh %s : f32
      linalg.yield %t2 : f32
    }
  } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
  return
}

// -----

// An f32 multiplicand (the activation into the down projection) is rounded
// to the weights' f16.
// CHECK-LABEL: func.func @rounded
// CHECK: arith.truncf {{.*}} : f32 to f16
// CHECK: vector.from_elements {{.*}} : vector<4x2xf16>
// CHECK: nvgpu.mma.sync({{.*}}) {mmaShape = [16, 8, 16]} : (vector<4x2xf16>, vector<2x2xf16>, vector<2x2xf32>) -> vector<2x2xf32>
func.func @rounded(%x: memref<1x16x16xf32>, %w: memref<1x8x16xf16>, %out: memref<1x16x8xf32>) {
  %zero = arith.constant 0.0 : f32
  scf.forall (%t, %i, %n) = (0, 0, 0) to (1, 16, 8) step (1, 16, 8) {
    %sums = memref.alloc() : memref<1x16x8xf32>
    linalg.fill ins(%zero : f32) outs(%sums : memref<1x16x8xf32>)
    linalg.generic {indexing_maps = [affine_map<(t, i, n, k) -> (t, i, k)>,
                                     affine_map<(t, i, n, k) -> (t, n, k)>,
                                     affine_map<(t, i, n, k) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
        ins(%x, %w : memref<1x16x16xf32>, memref<1x8x16xf16>)
        outs(%sums : memref<1x16x8xf32>) attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%a: f32, %b: f16, %s: f32):
      %bw = arith.extf %b : f16 to f32
      %p = arith.mulf %a, %bw : f32
      %r = arith.addf %s, %p : f32
      linalg.yield %r : f32
    }
    linalg.generic {indexing_maps = [affine_map<(t, i, n) -> (t, i, n)>,
                                     affine_map<(t, i, n) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel"]}
        ins(%sums : memref<1x16x8xf32>) outs(%out : memref<1x16x8xf32>)
        attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%s: f32, %o: f32):
      linalg.yield %s : f32
    }
  } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
  return
}

// -----

// The sums must start from a fill.
func.func @unfilled(%x: memref<1x16x16xbf16>, %w: memref<1x8x16xbf16>, %sums: memref<1x16x8xf32>,
    %out: memref<1x16x8xf32>) {
  scf.forall (%t, %i, %n) = (0, 0, 0) to (1, 16, 8) step (1, 16, 8) {
    // expected-error @+1 {{sums into a buffer that is not filled once, before it, and written by nothing else}}
    linalg.generic {indexing_maps = [affine_map<(t, i, n, k) -> (t, i, k)>,
                                     affine_map<(t, i, n, k) -> (t, n, k)>,
                                     affine_map<(t, i, n, k) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
        ins(%x, %w : memref<1x16x16xbf16>, memref<1x8x16xbf16>)
        outs(%sums : memref<1x16x8xf32>) attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%a: bf16, %b: bf16, %s: f32):
      %aw = arith.extf %a : bf16 to f32
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %aw, %bw : f32
      %r = arith.addf %s, %p : f32
      linalg.yield %r : f32
    }
    linalg.generic {indexing_maps = [affine_map<(t, i, n) -> (t, i, n)>,
                                     affine_map<(t, i, n) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel"]}
        ins(%sums : memref<1x16x8xf32>) outs(%out : memref<1x16x8xf32>)
        attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%s: f32, %o: f32):
      linalg.yield %s : f32
    }
  } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
  return
}

// -----

// A fill after the projection does not start its sums, and a buffer
// written twice before it holds what the later write left.
func.func @filled_late(%x: memref<1x16x16xbf16>, %w: memref<1x8x16xbf16>,
    %other: memref<1x16x8xf32>, %out: memref<1x16x8xf32>) {
  %zero = arith.constant 0.0 : f32
  scf.forall (%t, %i, %n) = (0, 0, 0) to (1, 16, 8) step (1, 16, 8) {
    %late = memref.alloc() : memref<1x16x8xf32>
    // expected-error @+1 {{sums into a buffer that is not filled once, before it, and written by nothing else}}
    linalg.generic {indexing_maps = [affine_map<(t, i, n, k) -> (t, i, k)>,
                                     affine_map<(t, i, n, k) -> (t, n, k)>,
                                     affine_map<(t, i, n, k) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
        ins(%x, %w : memref<1x16x16xbf16>, memref<1x8x16xbf16>)
        outs(%late : memref<1x16x8xf32>) attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%a: bf16, %b: bf16, %s: f32):
      %aw = arith.extf %a : bf16 to f32
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %aw, %bw : f32
      %r = arith.addf %s, %p : f32
      linalg.yield %r : f32
    }
    linalg.fill ins(%zero : f32) outs(%late : memref<1x16x8xf32>)
    linalg.generic {indexing_maps = [affine_map<(t, i, n) -> (t, i, n)>,
                                     affine_map<(t, i, n) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel"]}
        ins(%late : memref<1x16x8xf32>) outs(%out : memref<1x16x8xf32>)
        attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%s: f32, %o: f32):
      linalg.yield %s : f32
    }
  } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
  return
}

// -----

func.func @filled_twice(%x: memref<1x16x16xbf16>, %w: memref<1x8x16xbf16>,
    %other: memref<1x16x8xf32>, %out: memref<1x16x8xf32>) {
  %zero = arith.constant 0.0 : f32
  scf.forall (%t, %i, %n) = (0, 0, 0) to (1, 16, 8) step (1, 16, 8) {
    %twice = memref.alloc() : memref<1x16x8xf32>
    linalg.fill ins(%zero : f32) outs(%twice : memref<1x16x8xf32>)
    memref.copy %other, %twice : memref<1x16x8xf32> to memref<1x16x8xf32>
    // expected-error @+1 {{sums into a buffer that is not filled once, before it, and written by nothing else}}
    linalg.generic {indexing_maps = [affine_map<(t, i, n, k) -> (t, i, k)>,
                                     affine_map<(t, i, n, k) -> (t, n, k)>,
                                     affine_map<(t, i, n, k) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
        ins(%x, %w : memref<1x16x16xbf16>, memref<1x8x16xbf16>)
        outs(%twice : memref<1x16x8xf32>) attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%a: bf16, %b: bf16, %s: f32):
      %aw = arith.extf %a : bf16 to f32
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %aw, %bw : f32
      %r = arith.addf %s, %p : f32
      linalg.yield %r : f32
    }
    linalg.generic {indexing_maps = [affine_map<(t, i, n) -> (t, i, n)>,
                                     affine_map<(t, i, n) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel"]}
        ins(%twice : memref<1x16x8xf32>) outs(%out : memref<1x16x8xf32>)
        attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%s: f32, %o: f32):
      linalg.yield %s : f32
    }
  } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
  return
}

// -----

// A warps' loop needs its projections and the op that ends them.
func.func @no_projection(%out: memref<1x16x8xf32>) {
  %zero = arith.constant 0.0 : f32
  // expected-error @+1 {{is a warps' loop without tensor-core projections and the op that ends them}}
  scf.forall (%t, %i, %n) = (0, 0, 0) to (1, 16, 8) step (1, 16, 8) {
    linalg.fill ins(%zero : f32) outs(%out : memref<1x16x8xf32>)
  } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
  return
}

// -----

// Rows gathered through the plan: a row's token is the same at every step
// of K, so its load (and the index arithmetic before it) moves before the
// loop, which reads only x and the weights.
// CHECK-LABEL: func.func @gathered
// CHECK: scf.forall
// CHECK: memref.load %arg1[
// CHECK: scf.for
// CHECK-NOT: memref.load %arg1
// CHECK: memref.load %arg0[
// CHECK: nvgpu.mma.sync
// CHECK: scf.yield
func.func @gathered(%x: memref<64x32xbf16>, %rows: memref<16xindex>, %w: memref<1x8x32xbf16>,
                    %out: memref<1x16x8xf32>) {
  %zero = arith.constant 0.0 : f32
  scf.forall (%t, %i, %n) = (0, 0, 0) to (1, 16, 8) step (1, 16, 8) {
    %sums = memref.alloc() : memref<1x16x8xf32>
    linalg.fill ins(%zero : f32) outs(%sums : memref<1x16x8xf32>)
    linalg.generic {indexing_maps = [affine_map<(t, i, n, k) -> (t, n, k)>,
                                     affine_map<(t, i, n, k) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
        ins(%w : memref<1x8x32xbf16>)
        outs(%sums : memref<1x16x8xf32>) attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%b: bf16, %s: f32):
      %row = linalg.index 1 : index
      %k = linalg.index 3 : index
      %token = memref.load %rows[%row] : memref<16xindex>
      %a = memref.load %x[%token, %k] : memref<64x32xbf16>
      %aw = arith.extf %a : bf16 to f32
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %aw, %bw : f32
      %r = arith.addf %s, %p : f32
      linalg.yield %r : f32
    }
    linalg.generic {indexing_maps = [affine_map<(t, i, n) -> (t, i, n)>,
                                     affine_map<(t, i, n) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel"]}
        ins(%sums : memref<1x16x8xf32>) outs(%out : memref<1x16x8xf32>)
        attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%s: f32, %o: f32):
      linalg.yield %s : f32
    }
  } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
  return
}

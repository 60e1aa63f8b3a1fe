// RUN: moe-opt %s -split-input-file -moe-emulate-warps -verify-diagnostics | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-gpu-mma-sync -moe-emulate-warps -canonicalize -cse -verify-diagnostics | FileCheck %s --check-prefix=KERNEL

// A warp's lanes run at once: the loop is over warps, the lanes' values are
// vectors of 32 lanes (bf16 held in f32), a lane-dependent load a loop over
// the lanes, and mma.sync a call, through stack buffers in a scope of their
// own, of one function that reads A, B and C from the lanes' registers by
// the PTX ISA's fragment tables (constant globals), multiplies in f32 and
// writes D's registers.
// CHECK-DAG: memref.global "private" constant @moe_mma_fragment_a : memref<16x16xi32> = dense<
// CHECK-DAG: memref.global "private" constant @moe_mma_fragment_b : memref<16x8xi32> = dense<
// CHECK-DAG: memref.global "private" constant @moe_mma_fragment_c : memref<16x8xi32> = dense<
// CHECK-LABEL: func.func @mma
// CHECK: scf.forall (%{{.*}}) in (2) {
// CHECK: arith.constant dense<[0, 1, 2, {{.*}}, 31]> : vector<32xindex>
// CHECK: scf.for {{.*}} -> (vector<32xf32>)
// CHECK: memref.load %arg0
// CHECK: arith.extf {{.*}} : bf16 to f32
// CHECK: vector.insert {{.*}} : vector<32xf32> into vector<4x2x32xf32>
// CHECK: memref.alloca_scope  -> (vector<128xf32>)
// CHECK: func.call @moe_emulated_mma_m16n8k16({{.*}}) : (memref<4x2x32xf32>, memref<2x2x32xf32>, memref<2x2x32xf32>, memref<2x2x32xf32>) -> ()
// CHECK: vector.shape_cast {{.*}} : vector<128xf32> to vector<2x2x32xf32>
// CHECK: scf.for
// CHECK: memref.store
// CHECK-NOT: nvgpu.mma.sync
// CHECK-LABEL: func.func private @moe_emulated_mma_m16n8k16
// CHECK-SAME: passthrough = ["noinline"]
// CHECK: memref.get_global @moe_mma_fragment_a
// CHECK: scf.for
// CHECK: scf.for
// CHECK: scf.for
// CHECK: arith.mulf
// CHECK: arith.addf
func.func @mma(%x: memref<32xbf16>, %out: memref<2x32xf32>) {
  scf.forall (%w, %l) in (2, 32) {
    %v = memref.load %x[%l] : memref<32xbf16>
    %a = vector.from_elements %v, %v, %v, %v, %v, %v, %v, %v : vector<4x2xbf16>
    %b = vector.from_elements %v, %v, %v, %v : vector<2x2xbf16>
    %c = arith.constant dense<0.0> : vector<2x2xf32>
    %d = nvgpu.mma.sync(%a, %b, %c) {mmaShape = [16, 8, 16]} : (vector<4x2xbf16>, vector<2x2xbf16>, vector<2x2xf32>) -> vector<2x2xf32>
    %e = vector.extract %d[1, 0] : f32 from vector<2x2xf32>
    memref.store %e, %out[%w, %l] : memref<2x32xf32>
  } {mapping = [#gpu.thread<y>, #gpu.thread<x>], moe.warp_lanes}
  return
}

// -----

// Only what the lane code needs can be emulated: a branch on the lane
// cannot.
func.func @branch(%out: memref<32xf32>) {
  %c16 = arith.constant 16 : index
  %one = arith.constant 1.0 : f32
  scf.forall (%w, %l) in (1, 32) {
    %low = arith.cmpi ult, %l, %c16 : index
    // expected-error @+1 {{depends on the lane and cannot be emulated}}
    scf.if %low {
      memref.store %one, %out[%l] : memref<32xf32>
    }
  } {mapping = [#gpu.thread<y>, #gpu.thread<x>], moe.warp_lanes}
  return
}

// -----

// A buffer allocated in the lanes' loop is each lane's own on a GPU but
// made once a warp when emulated: a store to it that depends on the lane
// would mix the lanes' values, and is refused.
func.func @lane_buffer(%out: memref<32xindex>) {
  %c0 = arith.constant 0 : index
  scf.forall (%w, %l) in (1, 32) {
    %own = memref.alloca() : memref<1xindex>
    // expected-error @+1 {{depends on the lane, to a buffer each lane allocates: emulated, the lanes share it}}
    memref.store %l, %own[%c0] : memref<1xindex>
    %v = memref.load %own[%c0] : memref<1xindex>
    memref.store %v, %out[%l] : memref<32xindex>
  } {mapping = [#gpu.thread<y>, #gpu.thread<x>], moe.warp_lanes}
  return
}

// -----

// The lane code of moe-gpu-mma-sync emulated: one loop over the warp, no
// mma.sync left.
// KERNEL-LABEL: func.func @warp_tile
// KERNEL: scf.forall (%{{.*}}) in (1) {
// KERNEL: func.call @moe_emulated_mma_m16n8k16
// KERNEL-NOT: nvgpu
func.func @warp_tile(%x: memref<1x16x16xbf16>, %w: memref<1x8x16xbf16>, %out: memref<1x16x8xf32>) {
  %zero = arith.constant 0.0 : f32
  scf.forall (%t, %i, %n) = (0, 0, 0) to (1, 16, 8) step (1, 16, 8) {
    %sums = memref.alloc() : memref<1x16x8xf32>
    linalg.fill ins(%zero : f32) outs(%sums : memref<1x16x8xf32>)
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

// RUN: moe-opt %s -split-input-file -moe-gpu-mma-sync -verify-diagnostics -mlir-print-ir-after-failure 2>&1 \
// RUN:   | FileCheck %s --implicit-check-not=nvgpu.mma.sync --implicit-check-not=moe.warp_lanes

// Contractions moe-gpu-mma-sync must refuse. It checks every warps' loop
// of a function before it rewrites any, so a refused function is left as
// it was: no lane code, no mma.sync, the warps' loops still there.

// The op that ends the kernel reads the sums transposed, which the lane
// code (each lane's sum at its own (t, i, n)) cannot do. The loop before
// it, which could be rewritten, is left as it was too.
// CHECK-LABEL: IR Dump After MoEGPUMMASync Failed
// CHECK: func.func @transposed
// CHECK: } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
// CHECK: affine_map<(d0, d1, d2) -> (d0, d2, d1)>
// CHECK: } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
func.func @transposed(%x: memref<1x16x16xbf16>, %w: memref<1x16x16xbf16>, %out: memref<1x16x16xf32>) {
  %zero = arith.constant 0.0 : f32
  scf.forall (%t, %i, %n) = (0, 0, 0) to (1, 16, 16) step (1, 16, 16) {
    %sums = memref.alloc() : memref<1x16x16xf32>
    linalg.fill ins(%zero : f32) outs(%sums : memref<1x16x16xf32>)
    linalg.generic {indexing_maps = [affine_map<(t, i, n, k) -> (t, i, k)>,
                                     affine_map<(t, i, n, k) -> (t, n, k)>,
                                     affine_map<(t, i, n, k) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
        ins(%x, %w : memref<1x16x16xbf16>, memref<1x16x16xbf16>)
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
      linalg.yield %s : f32
    }
  } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
  scf.forall (%t, %i, %n) = (0, 0, 0) to (1, 16, 16) step (1, 16, 16) {
    %sums = memref.alloc() : memref<1x16x16xf32>
    linalg.fill ins(%zero : f32) outs(%sums : memref<1x16x16xf32>)
    linalg.generic {indexing_maps = [affine_map<(t, i, n, k) -> (t, i, k)>,
                                     affine_map<(t, i, n, k) -> (t, n, k)>,
                                     affine_map<(t, i, n, k) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
        ins(%x, %w : memref<1x16x16xbf16>, memref<1x16x16xbf16>)
        outs(%sums : memref<1x16x16xf32>) attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%a: bf16, %b: bf16, %s: f32):
      %aw = arith.extf %a : bf16 to f32
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %aw, %bw : f32
      %r = arith.addf %s, %p : f32
      linalg.yield %r : f32
    }
    // expected-error @+1 {{reads the sums of a tensor-core projection through an indexing map other than the identity}}
    linalg.generic {indexing_maps = [affine_map<(t, i, n) -> (t, n, i)>,
                                     affine_map<(t, i, n) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel"]}
        ins(%sums : memref<1x16x16xf32>) outs(%out : memref<1x16x16xf32>)
        attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%s: f32, %o: f32):
      linalg.yield %s : f32
    }
  } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
  return
}

// -----

// The op that ends the kernel runs over half the projection's columns.
// CHECK-LABEL: IR Dump After MoEGPUMMASync Failed
// CHECK: func.func @other_tile
// CHECK: } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
func.func @other_tile(%x: memref<1x16x16xbf16>, %w: memref<1x16x16xbf16>, %out: memref<1x16x8xf32>) {
  %zero = arith.constant 0.0 : f32
  scf.forall (%t, %i, %n) = (0, 0, 0) to (1, 16, 16) step (1, 16, 16) {
    %sums = memref.alloc() : memref<1x16x16xf32>
    linalg.fill ins(%zero : f32) outs(%sums : memref<1x16x16xf32>)
    linalg.generic {indexing_maps = [affine_map<(t, i, n, k) -> (t, i, k)>,
                                     affine_map<(t, i, n, k) -> (t, n, k)>,
                                     affine_map<(t, i, n, k) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
        ins(%x, %w : memref<1x16x16xbf16>, memref<1x16x16xbf16>)
        outs(%sums : memref<1x16x16xf32>) attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%a: bf16, %b: bf16, %s: f32):
      %aw = arith.extf %a : bf16 to f32
      %bw = arith.extf %b : bf16 to f32
      %p = arith.mulf %aw, %bw : f32
      %r = arith.addf %s, %p : f32
      linalg.yield %r : f32
    }
    %half = memref.subview %sums[0, 0, 0] [1, 16, 8] [1, 1, 1] : memref<1x16x16xf32> to memref<1x16x8xf32, strided<[256, 16, 1]>>
    // expected-error @+1 {{does not run over the tile of its tensor-core projections}}
    linalg.generic {indexing_maps = [affine_map<(t, i, n) -> (t, i, n)>,
                                     affine_map<(t, i, n) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel"]}
        ins(%half : memref<1x16x8xf32, strided<[256, 16, 1]>>) outs(%out : memref<1x16x8xf32>)
        attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%s: f32, %o: f32):
      linalg.yield %s : f32
    }
  } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
  return
}

// -----

// Another op reads the sums, whose buffer the lane code replaces.
// CHECK-LABEL: IR Dump After MoEGPUMMASync Failed
// CHECK: func.func @read_elsewhere
// CHECK: } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
func.func @read_elsewhere(%x: memref<1x16x16xbf16>, %w: memref<1x16x16xbf16>, %out: memref<1x16x16xf32>) {
  %zero = arith.constant 0.0 : f32
  scf.forall (%t, %i, %n) = (0, 0, 0) to (1, 16, 16) step (1, 16, 16) {
    %sums = memref.alloc() : memref<1x16x16xf32>
    linalg.fill ins(%zero : f32) outs(%sums : memref<1x16x16xf32>)
    linalg.generic {indexing_maps = [affine_map<(t, i, n, k) -> (t, i, k)>,
                                     affine_map<(t, i, n, k) -> (t, n, k)>,
                                     affine_map<(t, i, n, k) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
        ins(%x, %w : memref<1x16x16xbf16>, memref<1x16x16xbf16>)
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
      linalg.yield %s : f32
    }
    // expected-error @+1 {{uses the sums of a tensor-core projection, which only the op that ends them may read}}
    memref.copy %sums, %out : memref<1x16x16xf32> to memref<1x16x16xf32>
  } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
  return
}

// -----

// Two ops end the same projections.
// CHECK-LABEL: IR Dump After MoEGPUMMASync Failed
// CHECK: func.func @two_ends
// CHECK: } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
func.func @two_ends(%x: memref<1x16x16xbf16>, %w: memref<1x16x16xbf16>, %out: memref<1x16x16xf32>) {
  %zero = arith.constant 0.0 : f32
  scf.forall (%t, %i, %n) = (0, 0, 0) to (1, 16, 16) step (1, 16, 16) {
    %sums = memref.alloc() : memref<1x16x16xf32>
    linalg.fill ins(%zero : f32) outs(%sums : memref<1x16x16xf32>)
    linalg.generic {indexing_maps = [affine_map<(t, i, n, k) -> (t, i, k)>,
                                     affine_map<(t, i, n, k) -> (t, n, k)>,
                                     affine_map<(t, i, n, k) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
        ins(%x, %w : memref<1x16x16xbf16>, memref<1x16x16xbf16>)
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
      linalg.yield %s : f32
    }
    // expected-error @+1 {{ends tensor-core projections that another op already ends}}
    linalg.generic {indexing_maps = [affine_map<(t, i, n) -> (t, i, n)>,
                                     affine_map<(t, i, n) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel"]}
        ins(%sums : memref<1x16x16xf32>) outs(%out : memref<1x16x16xf32>)
        attrs = {moe.mma_sync = array<i64: 16, 8, 16>} {
    ^bb0(%s: f32, %o: f32):
      linalg.yield %s : f32
    }
  } {mapping = [#gpu.warp<x>, #gpu.warp<y>, #gpu.warp<z>]}
  return
}

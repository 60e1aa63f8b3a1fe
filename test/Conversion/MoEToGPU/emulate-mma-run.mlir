// REQUIRES: mlir-runner
// RUN: moe-opt %s -moe-gpu-mma-sync -moe-emulate-warps -canonicalize -scf-forall-to-parallel -convert-linalg-to-loops -convert-vector-to-scf=full-unroll -expand-strided-metadata -lower-affine -convert-scf-to-cf -arith-expand=include-bf16 -convert-vector-to-llvm -finalize-memref-to-llvm -convert-math-to-llvm -convert-arith-to-llvm -convert-index-to-llvm -convert-cf-to-llvm -convert-func-to-llvm -convert-ub-to-llvm -reconcile-unrealized-casts \
// RUN:   | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_c_runner_utils | FileCheck %s
// RUN: moe-opt %s -moe-gpu-mma-sync=permute-fragments -moe-emulate-warps -canonicalize -scf-forall-to-parallel -convert-linalg-to-loops -convert-vector-to-scf=full-unroll -expand-strided-metadata -lower-affine -convert-scf-to-cf -arith-expand=include-bf16 -convert-vector-to-llvm -finalize-memref-to-llvm -convert-math-to-llvm -convert-arith-to-llvm -convert-index-to-llvm -convert-cf-to-llvm -convert-func-to-llvm -convert-ub-to-llvm -reconcile-unrealized-casts \
// RUN:   | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_c_runner_utils | FileCheck %s --check-prefix=PERMUTED

// The warps' code of moe-gpu-mma-sync, run by moe-emulate-warps: a 16 × 24
// bf16 matrix X times the transpose of an 8 × 24 one W (small integers,
// exact in bf16 and f32), in two k steps of 16 (the second half zeros).
// The fragments' layouts are upstream's nvgpu utilities', the emulated
// mma.sync's the PTX ISA's table: they agree, and the product is X·Wᵀ.
// With A's registers 1 and 2 swapped the rows are wrong.
// CHECK-LABEL: X * W^T
// CHECK-NEXT: ( 12, 0, 3, -4, -1, 12, 0, 3 )
// CHECK-NEXT: ( -6, 13, 2, 16, 5, -6, 13, 2 )
// CHECK-NEXT: ( 4, -16, -6, -6, 4, 4, -16, -6 )
// CHECK-NEXT: ( 0, 11, 7, -7, -11, 0, 11, 7 )
// CHECK-NEXT: ( -4, -4, 6, 6, 16, -4, -4, 6 )
// CHECK-NEXT: ( 6, -5, -16, -2, -13, 6, -5, -16 )
// CHECK-NEXT: ( -12, 1, 4, -3, 0, -12, 1, 4 )
// CHECK-NEXT: ( 12, 0, 3, -4, -1, 12, 0, 3 )
// CHECK-NEXT: ( -6, 13, 2, 16, 5, -6, 13, 2 )
// CHECK-NEXT: ( 4, -16, -6, -6, 4, 4, -16, -6 )
// CHECK-NEXT: ( 0, 11, 7, -7, -11, 0, 11, 7 )
// CHECK-NEXT: ( -4, -4, 6, 6, 16, -4, -4, 6 )
// CHECK-NEXT: ( 6, -5, -16, -2, -13, 6, -5, -16 )
// CHECK-NEXT: ( -12, 1, 4, -3, 0, -12, 1, 4 )
// CHECK-NEXT: ( 12, 0, 3, -4, -1, 12, 0, 3 )
// CHECK-NEXT: ( -6, 13, 2, 16, 5, -6, 13, 2 )
// PERMUTED-LABEL: X * W^T
// PERMUTED-NOT: ( 12, 0, 3, -4, -1, 12, 0, 3 )
// PERMUTED: (
func.func @product(%x: memref<1x16x24xbf16>, %w: memref<1x8x24xbf16>, %out: memref<1x16x8xf32>) {
  %zero = arith.constant 0.0 : f32
  scf.forall (%t, %i, %n) = (0, 0, 0) to (1, 16, 8) step (1, 16, 8) {
    %sums = memref.alloc() : memref<1x16x8xf32>
    linalg.fill ins(%zero : f32) outs(%sums : memref<1x16x8xf32>)
    linalg.generic {indexing_maps = [affine_map<(t, i, n, k) -> (t, i, k)>,
                                     affine_map<(t, i, n, k) -> (t, n, k)>,
                                     affine_map<(t, i, n, k) -> (t, i, n)>],
                    iterator_types = ["parallel", "parallel", "parallel", "reduction"]}
        ins(%x, %w : memref<1x16x24xbf16>, memref<1x8x24xbf16>)
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

// X[i][k] = (3i + k) mod 7 - 3, W[n][k] = (nk + n) mod 5 - 2.
func.func @main() {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %c5 = arith.constant 5 : index
  %c7 = arith.constant 7 : index
  %c8 = arith.constant 8 : index
  %c16 = arith.constant 16 : index
  %c24 = arith.constant 24 : index
  %x = memref.alloc() : memref<1x16x24xbf16>
  %w = memref.alloc() : memref<1x8x24xbf16>
  %out = memref.alloc() : memref<1x16x8xf32>
  scf.for %k = %c0 to %c24 step %c1 {
    scf.for %i = %c0 to %c16 step %c1 {
      %a = arith.muli %i, %c3 : index
      %b = arith.addi %a, %k : index
      %m = arith.remui %b, %c7 : index
      %v = arith.subi %m, %c3 : index
      %vi = arith.index_cast %v : index to i32
      %vf = arith.sitofp %vi : i32 to bf16
      memref.store %vf, %x[%c0, %i, %k] : memref<1x16x24xbf16>
    }
    scf.for %n = %c0 to %c8 step %c1 {
      %a = arith.muli %n, %k : index
      %b = arith.addi %a, %n : index
      %m = arith.remui %b, %c5 : index
      %v = arith.subi %m, %c2 : index
      %vi = arith.index_cast %v : index to i32
      %vf = arith.sitofp %vi : i32 to bf16
      memref.store %vf, %w[%c0, %n, %k] : memref<1x8x24xbf16>
    }
  }
  func.call @product(%x, %w, %out) : (memref<1x16x24xbf16>, memref<1x8x24xbf16>, memref<1x16x8xf32>) -> ()
  vector.print str "X * W^T\n"
  %pad = arith.constant 0.0 : f32
  scf.for %i = %c0 to %c16 step %c1 {
    %row = vector.transfer_read %out[%c0, %i, %c0], %pad : memref<1x16x8xf32>, vector<8xf32>
    vector.print %row : vector<8xf32>
  }
  return
}

// RUN: moe-opt %s -moe-cpu-pipeline | FileCheck %s \
// RUN:   --implicit-check-not=memrefCopy --implicit-check-not=bufferization.

// The whole layer, tiled for its AVX2 target, reaches the LLVM dialect:
// nothing of moe, linalg, scf, tensor or bufferization is left, no copy
// needs the runtime's memrefCopy, the threads' tiles run as OpenMP
// work-sharing loops over contractible products of 8 lanes, and the kernel
// keeps a C interface.
// CHECK: module attributes {moe.target = #moe.cpu_target
// CHECK-NOT: moe.
// CHECK-NOT: linalg.
// CHECK-NOT: tensor.
// CHECK-NOT: scf.
// CHECK-LABEL: llvm.func @layer(
// CHECK: llvm.call @malloc
// CHECK: omp.parallel
// CHECK: omp.wsloop
// CHECK: llvm.fadd {{.*}}fastmath<contract>{{.*}} : vector<8xf32>
// CHECK: llvm.call @free
// CHECK-LABEL: llvm.func @_mlir_ciface_layer(
module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @layer(%xm: memref<?x16xf32>, %wrm: memref<4x16xf32>,
    %wgm: memref<4x8x16xf32>, %wum: memref<4x8x16xf32>,
    %wdm: memref<4x16x8xf32>, %ym: memref<?x16xf32>)
    attributes {llvm.emit_c_interface} {
  %x = bufferization.to_tensor %xm restrict : memref<?x16xf32> to tensor<?x16xf32>
  %wr = bufferization.to_tensor %wrm restrict : memref<4x16xf32> to tensor<4x16xf32>
  %wg = bufferization.to_tensor %wgm restrict : memref<4x8x16xf32> to tensor<4x8x16xf32>
  %wu = bufferization.to_tensor %wum restrict : memref<4x8x16xf32> to tensor<4x8x16xf32>
  %wd = bufferization.to_tensor %wdm restrict : memref<4x16x8xf32> to tensor<4x16x8xf32>
  %y = moe.layer %x router(%wr : tensor<4x16xf32>)
         gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64, n_group = 2 : i64, capacity_factor = 1.0 : f64,
          activation = #moe.activation<gelu>}
         : tensor<?x16xf32> -> tensor<?x16xf32>
  bufferization.materialize_in_destination %y in restrict writable %ym
      : (tensor<?x16xf32>, memref<?x16xf32>) -> ()
  return
}
}

// RUN: moe-opt %s -moe-gpu-pipeline=binary=nvvm | FileCheck %s \
// RUN:   --implicit-check-not=mgpuStreamCreate --implicit-check-not=mgpuStreamSynchronize
// RUN: moe-opt %s -moe-gpu-pipeline=emulate=true | FileCheck %s --check-prefix=EMULATED

// Host code: the layer's buffers come from mgpuMemAlloc and go back with
// mgpuMemFree, and every kernel launches, on the stream argument the
// function is given (no stream of its own, no wait): the caller orders and
// waits. The output is written in place.
// CHECK-LABEL: llvm.func @layer(
// CHECK-SAME: %[[STREAM:[^:]*]]: !llvm.ptr {moe.name = "stream"}
// CHECK: llvm.call @mgpuMemAlloc(%{{.*}}, %[[STREAM]], %{{.*}}) : (i64, !llvm.ptr, i8) -> !llvm.ptr
// CHECK: gpu.launch_func <%[[STREAM]] : !llvm.ptr> @moe_kernels::@layer_gate_logits
// CHECK: gpu.launch_func <%[[STREAM]] : !llvm.ptr> @moe_kernels::@layer_gate_select
// CHECK: gpu.launch_func <%[[STREAM]] : !llvm.ptr> @moe_kernels::@layer_gate_capacity
// CHECK: gpu.launch_func <%[[STREAM]] : !llvm.ptr> @moe_kernels::@layer_plan_fill
// CHECK: gpu.launch_func <%[[STREAM]] : !llvm.ptr> @moe_kernels::@layer_plan_count
// CHECK: gpu.launch_func <%[[STREAM]] : !llvm.ptr> @moe_kernels::@layer_plan_offsets
// CHECK: gpu.launch_func <%[[STREAM]] : !llvm.ptr> @moe_kernels::@layer_plan_place
// CHECK: gpu.launch_func <%[[STREAM]] : !llvm.ptr> @moe_kernels::@layer_expert_up
// CHECK: gpu.launch_func <%[[STREAM]] : !llvm.ptr> @moe_kernels::@layer_expert_down
// CHECK: gpu.launch_func <%[[STREAM]] : !llvm.ptr> @moe_kernels::@layer_combine
// CHECK: llvm.call @mgpuMemFree(%{{.*}}, %[[STREAM]])
// CHECK: llvm.return

// Kernels: one gpu.module with a target per chip, in NVVM: thread ids,
// shared memory (address space 3), barriers, libdevice's erf for gelu in
// the experts' kernels from the linalg stage.
// CHECK: gpu.module @moe_kernels [#nvvm.target<O = 3, chip = "sm_80">, #nvvm.target<O = 3, chip = "sm_90">]
// CHECK: llvm.func @layer_gate_logits({{.*}}) attributes {gpu.kernel, gpu.known_block_size = array<i32: 256, 1, 1>, nvvm.kernel
// CHECK: nvvm.read.ptx.sreg.ctaid.x
// CHECK: nvvm.read.ptx.sreg.tid.x range <i32, 0, 256>
// CHECK: llvm.mlir.global internal @__wg_layer_gate_capacity_0() {addr_space = 3 : i32} : !llvm.array<257 x i64>
// CHECK: nvvm.barrier0
// CHECK: llvm.func @__nv_erff(f32) -> f32
// CHECK: llvm.func @layer_expert_up(
// CHECK: llvm.call @__nv_erff

// Emulated: no GPU op is left; the blocks run as loops on the host.
// EMULATED-NOT: gpu.
// EMULATED-LABEL: llvm.func @layer(
// EMULATED-NOT: omp.barrier
// EMULATED-LABEL: llvm.func @_mlir_ciface_layer(
func.func @layer(%stream: !llvm.ptr {moe.name = "stream"}, %xm: memref<?x16xf32>,
    %wrm: memref<4x16xf32>, %wgm: memref<4x8x16xf32>, %wum: memref<4x8x16xf32>,
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

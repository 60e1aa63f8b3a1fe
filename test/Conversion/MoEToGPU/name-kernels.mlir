// RUN: moe-opt %s -moe-name-kernels | FileCheck %s

// The launches convert-parallel-loops-to-gpu made take the names the tile
// pass recorded, in order, after the function (less `_kernel`), in the
// moe_kernels module; past the names, `grouped_<n>`. A named launch stays
// as it is, and the record goes.
// CHECK-LABEL: func.func @layer_kernel
// CHECK-NOT: moe.kernels
// CHECK: gpu.launch {{.*}} module(@moe_kernels) function(@layer_combine)
// CHECK: gpu.launch {{.*}} module(@moe_kernels) function(@layer_expert_up)
// CHECK: gpu.launch {{.*}} module(@moe_kernels) function(@layer_grouped_1)
func.func @layer_kernel() attributes {moe.kernels = ["expert_up"]} {
  %c1 = arith.constant 1 : index
  gpu.launch blocks(%bx, %by, %bz) in (%x = %c1, %y = %c1, %z = %c1)
             threads(%tx, %ty, %tz) in (%a = %c1, %b = %c1, %c = %c1)
             module(@moe_kernels) function(@layer_combine) {
    gpu.terminator
  }
  gpu.launch blocks(%bx, %by, %bz) in (%x = %c1, %y = %c1, %z = %c1)
             threads(%tx, %ty, %tz) in (%a = %c1, %b = %c1, %c = %c1) {
    gpu.terminator
  }
  gpu.launch blocks(%bx, %by, %bz) in (%x = %c1, %y = %c1, %z = %c1)
             threads(%tx, %ty, %tz) in (%a = %c1, %b = %c1, %c = %c1) {
    gpu.terminator
  }
  return
}

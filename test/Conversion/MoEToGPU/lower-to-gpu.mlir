// RUN: moe-opt %s -split-input-file -moe-lower-to-gpu -verify-diagnostics | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-lower-to-gpu=emulate -verify-diagnostics | FileCheck %s --check-prefix=EMULATED --implicit-check-not=omp. --implicit-check-not=gpu.barrier --implicit-check-not=memref.alloca_scope

// Every stage becomes kernels of 256 threads in the moe_kernels module,
// named after the function, over device buffers the host allocates
// (moe.workspace, freed by moe-free-workspace): router logits, selection
// with per-thread scratch, capacity and the plan as per-expert block scans
// in shared memory. The plan (counts, offsets, slots, slot rows) is
// 64-bit. (The experts and combine are kernels of the linalg stage:
// test/Conversion/MoEToLinalg/tile-gpu.mlir.)
// CHECK-LABEL: func.func @layer
// CHECK-NOT: moe.
// CHECK: gpu.alloc (%{{.*}}) {moe.workspace} : memref<?x2xi32>
// CHECK: gpu.alloc (%{{.*}}) {moe.workspace} : memref<?x2xf32>
// CHECK: %[[SCORES:.*]] = gpu.alloc (%{{.*}}) {moe.workspace} : memref<?x8xf32>
// CHECK: gpu.launch blocks({{.*}}) threads({{.*}}) in (%{{.*}} = %c256{{.*}}) module(@moe_kernels) function(@layer_gate_logits)
// CHECK: memref.store %{{.*}}, %[[SCORES]]
// CHECK: gpu.launch {{.*}} function(@layer_gate_select)
// CHECK: math.exp
// CHECK: memref.alloca() : memref<8xi1>
// CHECK: gpu.launch {{.*}} function(@layer_gate_capacity) workgroup(%{{.*}} : memref<257xindex, #gpu.address_space<workgroup>>)
// CHECK: gpu.barrier
// CHECK: gpu.barrier
// CHECK: gpu.alloc () {moe.workspace} : memref<8xi64>
// CHECK: gpu.alloc () {moe.workspace} : memref<9xi64>
// CHECK: gpu.alloc (%{{.*}}) {moe.workspace} : memref<?xi64>
// CHECK: gpu.alloc (%{{.*}}) {moe.workspace} : memref<?x2xi64>
// CHECK: gpu.launch {{.*}} function(@layer_plan_fill)
// CHECK: memref.store %c-1_i64
// CHECK: gpu.launch {{.*}} function(@layer_plan_count) workgroup(
// CHECK: gpu.launch {{.*}} function(@layer_plan_offsets)
// CHECK: gpu.launch {{.*}} function(@layer_plan_place) workgroup(
// CHECK: %[[ROWS:.*]] = bufferization.to_tensor {{.*}} : memref<?x2xi64> to tensor<?x2xi64>
// CHECK: return %{{.*}}, %{{.*}}, %[[ROWS]]

// Emulated: the same kernels as loops. The blocks run one after the other;
// a block runs one loop over its 256 threads per stretch between two
// barriers, the last thread first, with what a stretch uses of an earlier
// one recomputed. The shared buffers are on the stack, and so is a thread's
// scratch, hoisted before the blocks: the threads take turns with it.
// EMULATED-LABEL: func.func @layer
// EMULATED-NOT: gpu.
// EMULATED: memref.alloc(%{{.*}}) {moe.workspace} : memref<?x2xi32>
// EMULATED: scf.for
// EMULATED-NEXT: scf.for %[[T:.*]] = %c0 to %c256 step %c1 {
// EMULATED-NEXT: arith.subi %c255, %[[T]]
// EMULATED: %[[SCRATCH:.*]] = memref.alloca() : memref<8xi1>
// EMULATED-NEXT: scf.for
// EMULATED-NEXT: scf.for %[[T0:.*]] = %c0 to %c256 step %c1 {
// EMULATED-NEXT: arith.subi %c255, %[[T0]]
// EMULATED: memref.store %true, %[[SCRATCH]]
// The capacity's scan: three stretches.
// EMULATED: %[[SHARED:.*]] = memref.alloca() : memref<257xindex>
// EMULATED-NEXT: scf.for %{{.*}} = %c0 to %c8 step %c1 {
// EMULATED-NEXT: scf.for %{{.*}} = %c0 to %c256 step %c1 {
// EMULATED: memref.store %{{.*}}, %[[SHARED]]
// EMULATED: scf.for %[[T1:.*]] = %c0 to %c256 step %c1 {
// EMULATED-NEXT: arith.subi %c255, %[[T1]]
// EMULATED: scf.for %[[T2:.*]] = %c0 to %c256 step %c1 {
// EMULATED-NEXT: arith.subi %c255, %[[T2]]
// EMULATED: memref.load %[[SHARED]]
func.func @layer(%x: tensor<?x16xbf16>, %wr: tensor<8x16xbf16>)
    -> (tensor<?x2xf32>, tensor<?xi64>, tensor<?x2xi64>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64, capacity_factor = 1.0 : f64}
      : tensor<?x16xbf16>, tensor<8x16xbf16> -> tensor<?x2xi32>, tensor<?x2xf32>
  %counts, %offsets, %slots, %rows = moe.dispatch %ids {num_experts = 8 : i64, row_tile = 64 : i64}
      : tensor<?x2xi32> -> tensor<8xi64>, tensor<9xi64>, tensor<?xi64>, tensor<?x2xi64>
  return %w, %slots, %rows : tensor<?x2xf32>, tensor<?xi64>, tensor<?x2xi64>
}

// -----

// The experts and combine come off the linalg stage.
func.func @combine(%out: tensor<?x16xf32>, %rows: tensor<?x2xi64>) -> tensor<?x16xf32> {
  // expected-error @+1 {{'moe.combine' op is lowered on the linalg stage: run moe-decompose-grouped, moe-lower-combine, moe-configure-gpu and moe-tile-gpu first}}
  %y = moe.combine %out, %rows : tensor<?x16xf32>, tensor<?x2xi64> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

func.func @expert(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>,
    %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{'moe.expert' op is lowered on the linalg stage: run moe-decompose-grouped, moe-lower-combine, moe-configure-gpu and moe-tile-gpu first}}
  %out = moe.expert %x, %slots, %offsets
      up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
      {slots_per_token = 2 : i64}
      : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}

// -----

func.func @unexpanded(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>,
    %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{'moe.layer' op has no GPU kernels: run moe-expand first}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>) {top_k = 2 : i64}
         : tensor<?x16xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// A dense gate (unordered, top_k = E) writes expert j into slot j: no
// availability scratch, no argmax. moe.refine is one kernel, a thread per
// (token, parent slot): the parent's router block scores the token into
// the thread's row of a [T·P, E] buffer, then the selection of the
// parent's experts (the parent's selection bias row, a rank-reduced
// subview) fills the slot's block of top_k columns, composed with the
// parent (ids offset by parent · E, weights scaled by the parent's).
// CHECK-LABEL: func.func @hierarchy
// CHECK: gpu.launch {{.*}} function(@hierarchy_gate_select)
// CHECK-NOT: memref.alloca
// CHECK: gpu.alloc (%{{.*}}) {moe.workspace} : memref<?x4xi32>
// CHECK: gpu.alloc (%{{.*}}) {moe.workspace} : memref<?x4xf32>
// CHECK: %[[SCORES:.*]] = gpu.alloc (%{{.*}}) {moe.workspace} : memref<?x4xf32>
// CHECK: gpu.launch {{.*}} function(@hierarchy_refine_select)
// CHECK: memref.alloca() : memref<4xi1>
// CHECK: %[[PARENT:.*]] = memref.load %{{.*}} : memref<?x2xi32>
// CHECK: arith.cmpi sge, %[[PARENT]], %c0_i32
// CHECK: memref.store %{{.*}}, %[[SCORES]]
// CHECK: arith.negf
// CHECK: memref.subview %{{.*}} : memref<2x4xf32> to memref<4xf32, strided<[1], offset: ?>>
// CHECK: arith.muli %[[PARENT]], %c4_i32 : i32
// CHECK: memref.store %c-1_i32
// CHECK-NOT: gpu.launch
// CHECK: return
func.func @hierarchy(%x: tensor<?x16xf32>, %wr: tensor<2x16xf32>,
    %wr2: tensor<2x4x16xf32>, %sb2: tensor<2x4xf32>)
    -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64, unordered}
      : tensor<?x16xf32>, tensor<2x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr2 selection_bias(%sb2 : tensor<2x4xf32>)
      {top_k = 2 : i64, scoring = #moe.scoring<sigmoid>}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<2x4x16xf32>
      -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids2, %w2 : tensor<?x4xi32>, tensor<?x4xf32>
}

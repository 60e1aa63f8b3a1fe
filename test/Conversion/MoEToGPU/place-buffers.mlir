// RUN: moe-opt %s -split-input-file -moe-place-buffers -verify-diagnostics | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-place-buffers=emulate -verify-diagnostics | FileCheck %s --check-prefix=EMULATED

// After bufferization: a buffer host code allocates becomes a device
// buffer that moe-free-workspace frees; one a thread's tile allocates
// becomes the thread's own, on its stack (emulated, on the heap, freed at
// the end of its block).
// CHECK-LABEL: func.func @buffers
// CHECK: %[[HOST:.*]] = gpu.alloc (%{{.*}}) {moe.workspace} : memref<?x8xf32>
// CHECK: scf.forall
// CHECK: memref.alloca() {alignment = 64 : i64} : memref<4xf32>
// CHECK-NOT: memref.dealloc
// CHECK: return
// EMULATED-LABEL: func.func @buffers
// EMULATED: memref.alloc(%{{.*}}) {moe.workspace} : memref<?x8xf32>
// EMULATED: %[[TILE:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4xf32>
// EMULATED: memref.dealloc %[[TILE]]
// EMULATED-NEXT: }
func.func @buffers(%n: index) -> memref<?x8xf32> {
  %zero = arith.constant 0.0 : f32
  %c0 = arith.constant 0 : index
  %host = memref.alloc(%n) : memref<?x8xf32>
  scf.forall (%b) in (%n) {
    scf.forall (%i) in (8) {
      %tile = memref.alloc() {alignment = 64 : i64} : memref<4xf32>
      memref.store %zero, %tile[%c0] : memref<4xf32>
      %v = memref.load %tile[%c0] : memref<4xf32>
      memref.store %v, %host[%b, %i] : memref<?x8xf32>
      memref.dealloc %tile : memref<4xf32>
    }
  }
  return %host : memref<?x8xf32>
}

// -----

// A buffer of a block's tile outside its threads' would be theirs to share.
func.func @block_buffer(%n: index) {
  %zero = arith.constant 0.0 : f32
  %c0 = arith.constant 0 : index
  scf.forall (%b) in (%n) {
    // expected-error @+1 {{in a block's tile but outside its threads': the block's threads would share it}}
    %shared = memref.alloc() : memref<4xf32>
    scf.forall (%i) in (4) {
      memref.store %zero, %shared[%i] : memref<4xf32>
    }
  }
  return
}

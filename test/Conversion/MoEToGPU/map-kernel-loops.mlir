// RUN: moe-opt %s -moe-map-kernel-loops | FileCheck %s

// A tile nest's outer loop is the blocks (its dimensions x, y in order),
// the loop in it the threads (its last dimension x), a deeper one
// sequential.
// CHECK-LABEL: func.func @nest
// CHECK: scf.parallel
// CHECK: scf.parallel
// CHECK: scf.parallel
// CHECK: } {mapping = [#gpu.loop_dim_map<processor = sequential, map = (d0) -> (d0), bound = (d0) -> (d0)>]}
// CHECK: } {mapping = [#gpu.loop_dim_map<processor = thread_y, map = (d0) -> (d0), bound = (d0) -> (d0)>, #gpu.loop_dim_map<processor = thread_x, map = (d0) -> (d0), bound = (d0) -> (d0)>]}
// CHECK: } {mapping = [#gpu.loop_dim_map<processor = block_x, map = (d0) -> (d0), bound = (d0) -> (d0)>, #gpu.loop_dim_map<processor = block_y, map = (d0) -> (d0), bound = (d0) -> (d0)>]}
func.func @nest(%m: memref<?x64x48xf32>, %tiles: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c16 = arith.constant 16 : index
  %c48 = arith.constant 48 : index
  %c64 = arith.constant 64 : index
  %zero = arith.constant 0.0 : f32
  scf.parallel (%t, %n) = (%c0, %c0) to (%tiles, %c48) step (%c1, %c16) {
    scf.parallel (%i, %j) = (%c0, %c0) to (%c64, %c16) step (%c4, %c1) {
      scf.parallel (%r) = (%c0) to (%c4) step (%c1) {
        %row = arith.addi %i, %r : index
        %col = arith.addi %n, %j : index
        memref.store %zero, %m[%t, %row, %col] : memref<?x64x48xf32>
        scf.reduce
      }
      scf.reduce
    }
    scf.reduce
  }
  return
}

// REQUIRES: mlir-runner
// RUN: moe-opt %s -moe-emulate-warps -canonicalize -scf-forall-to-parallel -convert-vector-to-scf=full-unroll -lower-affine -convert-scf-to-cf -convert-vector-to-llvm -finalize-memref-to-llvm -convert-arith-to-llvm -convert-index-to-llvm -convert-cf-to-llvm -convert-func-to-llvm -convert-ub-to-llvm -reconcile-unrealized-casts \
// RUN:   | mlir-runner -e main -entry-point-result=void -shared-libs=%mlir_c_runner_utils | FileCheck %s

// gpu.shuffle between emulated lanes, lane l holding 10·l, as shfl.sync
// with upstream's clamps: xor 1, down 2, up 1 and idx 3 over 32 lanes,
// then down 2 over 16 (lanes from 14 on read their own value, invalid).
// shfl.sync reads only the offset's low 5 bits: xor 33, down 34, up 33 and
// idx 35 are xor 1, down 2, up 1 and idx 3.
// CHECK: xor
// CHECK-NEXT: ( 10, 0, 30, 20, 50, 40, 70, 60, 90, 80, 110, 100, 130, 120, 150, 140, 170, 160, 190, 180, 210, 200, 230, 220, 250, 240, 270, 260, 290, 280, 310, 300 )
// CHECK-NEXT: ( 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 )
// CHECK-NEXT: down
// CHECK-NEXT: ( 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200, 210, 220, 230, 240, 250, 260, 270, 280, 290, 300, 310, 300, 310 )
// CHECK-NEXT: ( 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 )
// CHECK-NEXT: up
// CHECK-NEXT: ( 0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200, 210, 220, 230, 240, 250, 260, 270, 280, 290, 300 )
// CHECK-NEXT: ( 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 )
// CHECK-NEXT: idx
// CHECK-NEXT: ( 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30 )
// CHECK-NEXT: ( 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 )
// CHECK-NEXT: down16
// CHECK-NEXT: ( 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 140, 150, 160, 170, 180, 190, 200, 210, 220, 230, 240, 250, 260, 270, 280, 290, 300, 310 )
// CHECK-NEXT: ( 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 )
// CHECK-NEXT: xor33
// CHECK-NEXT: ( 10, 0, 30, 20, 50, 40, 70, 60, 90, 80, 110, 100, 130, 120, 150, 140, 170, 160, 190, 180, 210, 200, 230, 220, 250, 240, 270, 260, 290, 280, 310, 300 )
// CHECK-NEXT: ( 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 )
// CHECK-NEXT: down34
// CHECK-NEXT: ( 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200, 210, 220, 230, 240, 250, 260, 270, 280, 290, 300, 310, 300, 310 )
// CHECK-NEXT: ( 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 )
// CHECK-NEXT: up33
// CHECK-NEXT: ( 0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200, 210, 220, 230, 240, 250, 260, 270, 280, 290, 300 )
// CHECK-NEXT: ( 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 )
// CHECK-NEXT: idx35
// CHECK-NEXT: ( 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30 )
// CHECK-NEXT: ( 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 )
func.func @shuffles(%values: memref<9x32xi32>, %valid: memref<9x32xi32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %c4 = arith.constant 4 : index
  %c5 = arith.constant 5 : index
  %c6 = arith.constant 6 : index
  %c7 = arith.constant 7 : index
  %c8 = arith.constant 8 : index
  %one = arith.constant 1 : i32
  %two = arith.constant 2 : i32
  %three = arith.constant 3 : i32
  %ten = arith.constant 10 : i32
  %o33 = arith.constant 33 : i32
  %o34 = arith.constant 34 : i32
  %o35 = arith.constant 35 : i32
  %w16 = arith.constant 16 : i32
  %w32 = arith.constant 32 : i32
  scf.forall (%w, %l) in (1, 32) {
    %li = arith.index_cast %l : index to i32
    %v = arith.muli %li, %ten : i32
    %x, %xv = gpu.shuffle xor %v, %one, %w32 : i32
    %d, %dv = gpu.shuffle down %v, %two, %w32 : i32
    %u, %uv = gpu.shuffle up %v, %one, %w32 : i32
    %i, %iv = gpu.shuffle idx %v, %three, %w32 : i32
    %h, %hv = gpu.shuffle down %v, %two, %w16 : i32
    %x2, %xv2 = gpu.shuffle xor %v, %o33, %w32 : i32
    %d2, %dv2 = gpu.shuffle down %v, %o34, %w32 : i32
    %u2, %uv2 = gpu.shuffle up %v, %o33, %w32 : i32
    %i2, %iv2 = gpu.shuffle idx %v, %o35, %w32 : i32
    memref.store %x, %values[%c0, %l] : memref<9x32xi32>
    memref.store %d, %values[%c1, %l] : memref<9x32xi32>
    memref.store %u, %values[%c2, %l] : memref<9x32xi32>
    memref.store %i, %values[%c3, %l] : memref<9x32xi32>
    memref.store %h, %values[%c4, %l] : memref<9x32xi32>
    memref.store %x2, %values[%c5, %l] : memref<9x32xi32>
    memref.store %d2, %values[%c6, %l] : memref<9x32xi32>
    memref.store %u2, %values[%c7, %l] : memref<9x32xi32>
    memref.store %i2, %values[%c8, %l] : memref<9x32xi32>
    %xe = arith.extui %xv : i1 to i32
    %de = arith.extui %dv : i1 to i32
    %ue = arith.extui %uv : i1 to i32
    %ie = arith.extui %iv : i1 to i32
    %he = arith.extui %hv : i1 to i32
    %xv2e = arith.extui %xv2 : i1 to i32
    %dv2e = arith.extui %dv2 : i1 to i32
    %uv2e = arith.extui %uv2 : i1 to i32
    %iv2e = arith.extui %iv2 : i1 to i32
    memref.store %xe, %valid[%c0, %l] : memref<9x32xi32>
    memref.store %de, %valid[%c1, %l] : memref<9x32xi32>
    memref.store %ue, %valid[%c2, %l] : memref<9x32xi32>
    memref.store %ie, %valid[%c3, %l] : memref<9x32xi32>
    memref.store %he, %valid[%c4, %l] : memref<9x32xi32>
    memref.store %xv2e, %valid[%c5, %l] : memref<9x32xi32>
    memref.store %dv2e, %valid[%c6, %l] : memref<9x32xi32>
    memref.store %uv2e, %valid[%c7, %l] : memref<9x32xi32>
    memref.store %iv2e, %valid[%c8, %l] : memref<9x32xi32>
  } {mapping = [#gpu.thread<y>, #gpu.thread<x>], moe.warp_lanes}
  return
}

func.func @print(%values: memref<9x32xi32>, %valid: memref<9x32xi32>, %row: index) {
  %c0 = arith.constant 0 : index
  %pad = arith.constant 0 : i32
  %v = vector.transfer_read %values[%row, %c0], %pad : memref<9x32xi32>, vector<32xi32>
  %f = vector.transfer_read %valid[%row, %c0], %pad : memref<9x32xi32>, vector<32xi32>
  vector.print %v : vector<32xi32>
  vector.print %f : vector<32xi32>
  return
}

func.func @main() {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %c4 = arith.constant 4 : index
  %c5 = arith.constant 5 : index
  %c6 = arith.constant 6 : index
  %c7 = arith.constant 7 : index
  %c8 = arith.constant 8 : index
  %values = memref.alloc() : memref<9x32xi32>
  %valid = memref.alloc() : memref<9x32xi32>
  func.call @shuffles(%values, %valid) : (memref<9x32xi32>, memref<9x32xi32>) -> ()
  vector.print str "xor\n"
  func.call @print(%values, %valid, %c0) : (memref<9x32xi32>, memref<9x32xi32>, index) -> ()
  vector.print str "down\n"
  func.call @print(%values, %valid, %c1) : (memref<9x32xi32>, memref<9x32xi32>, index) -> ()
  vector.print str "up\n"
  func.call @print(%values, %valid, %c2) : (memref<9x32xi32>, memref<9x32xi32>, index) -> ()
  vector.print str "idx\n"
  func.call @print(%values, %valid, %c3) : (memref<9x32xi32>, memref<9x32xi32>, index) -> ()
  vector.print str "down16\n"
  func.call @print(%values, %valid, %c4) : (memref<9x32xi32>, memref<9x32xi32>, index) -> ()
  vector.print str "xor33\n"
  func.call @print(%values, %valid, %c5) : (memref<9x32xi32>, memref<9x32xi32>, index) -> ()
  vector.print str "down34\n"
  func.call @print(%values, %valid, %c6) : (memref<9x32xi32>, memref<9x32xi32>, index) -> ()
  vector.print str "up33\n"
  func.call @print(%values, %valid, %c7) : (memref<9x32xi32>, memref<9x32xi32>, index) -> ()
  vector.print str "idx35\n"
  func.call @print(%values, %valid, %c8) : (memref<9x32xi32>, memref<9x32xi32>, index) -> ()
  return
}

// RUN: moe-opt %s -split-input-file -moe-lower-dispatch | FileCheck %s

// A histogram, padded prefix offsets, then a stable counting sort that
// writes both the plan rows and their inverse. Only indices move.
// CHECK-LABEL: func.func @dispatch_tiled
// CHECK-SAME: (%[[IDS:.*]]: tensor<?x2xi32>)
// CHECK-DAG: %[[SEVEN:.*]] = arith.constant 7 : i64
// CHECK-DAG: %[[EIGHT:.*]] = arith.constant 8 : i64
// CHECK-NOT: moe.dispatch
// CHECK: %[[IDS_BUF:.*]] = bufferization.to_buffer %[[IDS]] read_only
// CHECK: %[[T:.*]] = memref.dim %[[IDS_BUF]], %c0
// CHECK: %[[COUNTS:.*]] = memref.alloc() : memref<4xi64>
// The histogram skips dropped slots (-1).
// CHECK: scf.for %[[TOKEN:.*]] = %c0 to %[[T]]
// CHECK: %[[E:.*]] = memref.load %[[IDS_BUF]]
// CHECK: arith.cmpi sge, %[[E]]
// CHECK: scf.if
// CHECK: arith.addi
// CHECK: memref.store %{{.*}}, %[[COUNTS]]
// Offsets: each count rounded up to the row tile of 8.
// CHECK: %[[OFFSETS:.*]] = memref.alloc() : memref<5xi64>
// CHECK: arith.addi %{{.*}}, %[[SEVEN]]
// CHECK: arith.divui %{{.*}}, %[[EIGHT]]
// CHECK: arith.muli %{{.*}}, %[[EIGHT]]
// CHECK: %[[ROWS_I64:.*]] = memref.load %[[OFFSETS]][%c4]
// CHECK: %[[ROWS:.*]] = arith.index_cast %[[ROWS_I64]]
// CHECK: %[[SLOTS:.*]] = memref.alloc(%[[ROWS]]) : memref<?xi64>
// CHECK: memref.store %c-1_i64, %[[SLOTS]]
// CHECK: %[[CURSOR:.*]] = memref.alloca() : memref<4xi64>
// CHECK: %[[SLOT_ROWS:.*]] = memref.alloc(%[[T]]) : memref<?x2xi64>
// CHECK: scf.for %[[TOKEN2:.*]] = %c0 to %[[T]]
// CHECK: scf.for %[[J:.*]] = %c0 to %c2
// CHECK: %[[ROW:.*]] = memref.load %[[CURSOR]]
// CHECK: memref.store %{{.*}}, %[[CURSOR]]
// CHECK: arith.muli %[[TOKEN2]], %c2
// CHECK: memref.store %{{.*}}, %[[SLOTS]]
// CHECK: memref.store %[[ROW]], %[[SLOT_ROWS]][%[[TOKEN2]], %[[J]]]
// CHECK: } else {
// CHECK: memref.store %c-1_i64, %[[SLOT_ROWS]][%[[TOKEN2]], %[[J]]]
// CHECK: %[[C:.*]] = bufferization.to_tensor %[[COUNTS]] restrict writable
// CHECK: %[[O:.*]] = bufferization.to_tensor %[[OFFSETS]] restrict writable
// CHECK: %[[S:.*]] = bufferization.to_tensor %[[SLOTS]] restrict writable
// CHECK: %[[R:.*]] = bufferization.to_tensor %[[SLOT_ROWS]] restrict writable
// CHECK: return %[[C]], %[[O]], %[[S]], %[[R]]
func.func @dispatch_tiled(%ids: tensor<?x2xi32>)
    -> (tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<?x2xi64>) {
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64, row_tile = 8 : i64}
      : tensor<?x2xi32> -> tensor<4xi64>, tensor<5xi64>, tensor<?xi64>,
                           tensor<?x2xi64>
  return %c, %o, %s, %r
      : tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<?x2xi64>
}

// -----

// A static token count gives a static inverse map.
// CHECK-LABEL: func.func @dispatch_static
// CHECK: memref.alloc() : memref<3x4xi64>
func.func @dispatch_static(%ids: tensor<3x4xi32>)
    -> (tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<3x4xi64>) {
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64}
      : tensor<3x4xi32> -> tensor<4xi64>, tensor<5xi64>, tensor<?xi64>,
                           tensor<3x4xi64>
  return %c, %o, %s, %r
      : tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<3x4xi64>
}

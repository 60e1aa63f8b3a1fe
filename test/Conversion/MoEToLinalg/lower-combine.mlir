// RUN: moe-opt %s -split-input-file -moe-lower-combine | FileCheck %s

// A gather-reduction: every (token, column) sums its slots' expert rows,
// read through slot_rows, on top of the shared expert's output; a dropped
// slot (-1) adds nothing. One writer per output element: no scatter.
// CHECK-LABEL: func.func @shared_bf16
// CHECK-SAME: (%[[OUT:.*]]: tensor<?x16xf32>, %[[ROWS:.*]]: tensor<?x2xi64>, %[[W:.*]]: tensor<?x2xf32>, %[[SHARED:.*]]: tensor<?x16xf32>)
// CHECK-NOT: moe.combine
// CHECK: %[[SUM:.*]] = linalg.generic {indexing_maps = [#[[SLOT_MAP:.*]], #[[SLOT_MAP]], #[[OUT_MAP:.*]]], iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[ROWS]], %[[W]] : tensor<?x2xi64>, tensor<?x2xf32>) outs(%[[SHARED]] : tensor<?x16xf32>)
// CHECK-NEXT: ^bb0(%[[ROW:.*]]: i64, %[[WEIGHT:.*]]: f32, %[[ACC:.*]]: f32):
// CHECK: %[[COLUMN:.*]] = linalg.index 1
// CHECK: %[[KEPT:.*]] = arith.cmpi sge, %[[ROW]], %c0_i64
// CHECK: scf.if %[[KEPT]] -> (f32)
// CHECK: %[[V:.*]] = tensor.extract %[[OUT]][%{{.*}}, %[[COLUMN]]]
// CHECK: %[[P:.*]] = arith.mulf %[[WEIGHT]], %[[V]]
// CHECK: arith.addf %[[ACC]], %[[P]]
// CHECK: } else {
// CHECK: scf.yield %[[ACC]]
// CHECK: linalg.generic {{.*}} ins(%[[SUM]] : tensor<?x16xf32>) outs(%{{.*}} : tensor<?x16xbf16>)
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK-NOT: tensor.insert
// CHECK-NOT: scatter
func.func @shared_bf16(%out: tensor<?x16xf32>, %rows: tensor<?x2xi64>,
    %w: tensor<?x2xf32>, %s: tensor<?x16xf32>) -> tensor<?x16xbf16> {
  %y = moe.combine %out, %rows, %w shared(%s : tensor<?x16xf32>)
         : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// Without a shared expert the sum starts from zero; f32 needs no rounding.
// CHECK-LABEL: func.func @plain_f32
// CHECK: %[[ZERO:.*]] = linalg.fill
// CHECK: %[[SUM:.*]] = linalg.generic {{.*}} outs(%[[ZERO]] : tensor<?x16xf32>)
// CHECK-NOT: arith.truncf
// CHECK: return %[[SUM]]
func.func @plain_f32(%out: tensor<?x16xf32>, %rows: tensor<?x2xi64>,
    %w: tensor<?x2xf32>) -> tensor<?x16xf32> {
  %y = moe.combine %out, %rows, %w
         : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// RUN: moe-opt %s -split-input-file -moe-lower-combine | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-lower-combine=accumulate-into-shared=false | FileCheck %s --check-prefix=AFTER

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

// -----

// Without weights (the experts weighted their input, docs/FAMILY-RULES.md)
// the reduction reads slot_rows alone and adds each kept row as it is.
// CHECK-LABEL: func.func @no_weights
// CHECK-SAME: (%[[OUT:.*]]: tensor<?x16xf32>, %[[ROWS:.*]]: tensor<?x2xi64>)
// CHECK: %[[ZERO:.*]] = linalg.fill
// CHECK: %[[SUM:.*]] = linalg.generic {indexing_maps = [#{{.*}}, #{{.*}}], iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[ROWS]] : tensor<?x2xi64>) outs(%[[ZERO]] : tensor<?x16xf32>)
// CHECK-NEXT: ^bb0(%[[ROW:.*]]: i64, %[[ACC:.*]]: f32):
// CHECK: scf.if %{{.*}} -> (f32)
// CHECK: %[[V:.*]] = tensor.extract %[[OUT]]
// CHECK-NOT: arith.mulf
// CHECK: %[[NEW:.*]] = arith.addf %[[ACC]], %[[V]]
// CHECK: scf.yield %[[NEW]]
// CHECK: } else {
// CHECK: scf.yield %[[ACC]]
// CHECK-NOT: arith.mulf
// CHECK: return %[[SUM]]
func.func @no_weights(%out: tensor<?x16xf32>, %rows: tensor<?x2xi64>)
    -> tensor<?x16xf32> {
  %y = moe.combine %out, %rows
         : tensor<?x16xf32>, tensor<?x2xi64> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// An output bias (JetMoE) in the layer's type is widened and added to every
// token's f32 sum, after the shared expert and the weighted rows and before
// the one rounding.
// CHECK-LABEL: func.func @bias_bf16
// CHECK-SAME: (%[[OUT:[^:]*]]: {{.*}}, %[[ROWS:[^:]*]]: {{.*}}, %[[W:[^:]*]]: {{.*}}, %[[SHARED:[^:]*]]: {{.*}}, %[[B:[^:]*]]: tensor<16xbf16>)
// CHECK: %[[SUM:.*]] = linalg.generic {{.*}} ins(%[[ROWS]], %[[W]] : tensor<?x2xi64>, tensor<?x2xf32>) outs(%[[SHARED]] : tensor<?x16xf32>)
// CHECK: arith.mulf
// CHECK: %[[BIASED:.*]] = linalg.generic {indexing_maps = [#{{.*}}, #{{.*}}], iterator_types = ["parallel", "parallel"]} ins(%[[B]] : tensor<16xbf16>) outs(%[[SUM]] : tensor<?x16xf32>)
// CHECK-NEXT: ^bb0(%[[BIAS:.*]]: bf16, %[[ACC:.*]]: f32):
// CHECK-NEXT: %[[WIDE:.*]] = arith.extf %[[BIAS]] : bf16 to f32
// CHECK-NEXT: %[[NEW:.*]] = arith.addf %[[ACC]], %[[WIDE]]
// CHECK-NEXT: linalg.yield %[[NEW]]
// CHECK: linalg.generic {{.*}} ins(%[[BIASED]] : tensor<?x16xf32>) outs(%{{.*}} : tensor<?x16xbf16>)
// CHECK: arith.truncf %{{.*}} : f32 to bf16
func.func @bias_bf16(%out: tensor<?x16xf32>, %rows: tensor<?x2xi64>,
    %w: tensor<?x2xf32>, %s: tensor<?x16xf32>, %b: tensor<16xbf16>)
    -> tensor<?x16xbf16> {
  %y = moe.combine %out, %rows, %w shared(%s : tensor<?x16xf32>)
         bias(%b : tensor<16xbf16>)
         : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// Neither weights nor a shared expert, an f32 bias: the bias is the last
// step, with no rounding after it.
// CHECK-LABEL: func.func @no_weights_bias_f32
// CHECK-SAME: %[[B:[^:]*]]: tensor<16xf32>)
// CHECK: %[[SUM:.*]] = linalg.generic {{.*}} ins(%{{.*}} : tensor<?x2xi64>)
// CHECK-NOT: arith.mulf
// CHECK: %[[BIASED:.*]] = linalg.generic {{.*}} ins(%[[B]] : tensor<16xf32>) outs(%[[SUM]] : tensor<?x16xf32>)
// CHECK: arith.addf
// CHECK-NOT: arith.truncf
// CHECK: return %[[BIASED]]
func.func @no_weights_bias_f32(%out: tensor<?x16xf32>, %rows: tensor<?x2xi64>,
    %b: tensor<16xf32>) -> tensor<?x16xf32> {
  %y = moe.combine %out, %rows bias(%b : tensor<16xf32>)
         : tensor<?x16xf32>, tensor<?x2xi64> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// The op that makes the result is the GPU's `combine` kernel. Without
// accumulate-into-shared the sum starts from zero and one elementwise
// generic adds the shared row, then the bias, before the rounding: the
// shared output is read, not written.
// CHECK-LABEL: func.func @kernel_name
// CHECK: outs(%{{.*}} : tensor<?x16xbf16>) attrs = {moe.kernel = "combine"}
// CHECK: arith.truncf
// AFTER-LABEL: func.func @kernel_name
// AFTER-SAME: (%[[OUT:[^:]*]]: {{.*}}, %[[ROWS:[^:]*]]: {{.*}}, %[[W:[^:]*]]: {{.*}}, %[[SHARED:[^:]*]]: {{.*}}, %[[B:[^:]*]]: tensor<16xbf16>)
// AFTER: %[[ZERO:.*]] = linalg.fill
// AFTER: %[[SUM:.*]] = linalg.generic {{.*}} ins(%[[ROWS]], %[[W]] : tensor<?x2xi64>, tensor<?x2xf32>) outs(%[[ZERO]] : tensor<?x16xf32>)
// AFTER: %[[TOTAL:.*]] = linalg.generic {{.*}} ins(%[[SHARED]], %[[B]] : tensor<?x16xf32>, tensor<16xbf16>) outs(%[[SUM]] : tensor<?x16xf32>)
// AFTER-NEXT: ^bb0(%[[S:.*]]: f32, %[[BIAS:.*]]: bf16, %[[ACC:.*]]: f32):
// AFTER-NEXT: %[[PLUS:.*]] = arith.addf %[[ACC]], %[[S]]
// AFTER-NEXT: %[[BF:.*]] = arith.extf %[[BIAS]]
// AFTER-NEXT: arith.addf %[[PLUS]], %[[BF]]
// AFTER: linalg.generic {{.*}} ins(%[[TOTAL]] : tensor<?x16xf32>) outs(%{{.*}} : tensor<?x16xbf16>) attrs = {moe.kernel = "combine"}
// AFTER: arith.truncf
func.func @kernel_name(%out: tensor<?x16xf32>, %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>,
    %s: tensor<?x16xf32>, %b: tensor<16xbf16>) -> tensor<?x16xbf16> {
  %y = moe.combine %out, %rows, %w shared(%s : tensor<?x16xf32>) bias(%b : tensor<16xbf16>)
         : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

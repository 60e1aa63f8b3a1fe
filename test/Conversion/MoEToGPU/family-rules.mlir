// RUN: moe-opt %s -split-input-file -moe-lower-to-gpu | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-lower-to-gpu=emulate | FileCheck %s --check-prefix=EMULATED

// docs/FAMILY-RULES.md in the combine kernel (the experts' rules are the
// linalg stage's: test/Conversion/MoEToLinalg/decompose-grouped.mlir).
// Without weights it adds the kept rows as they are, then the output
// bias, before rounding.
// CHECK-LABEL: func.func @rules
// CHECK: gpu.launch {{.*}} function(@rules_combine)
// CHECK: %[[SUM:.*]] = scf.for {{.*}} -> (f32) {
// CHECK: %[[ROW:.*]] = memref.load %{{.*}} : memref<?x16xf32>
// CHECK-NEXT: %[[ADDED:.*]] = arith.addf %{{.*}}, %[[ROW]] : f32
// CHECK-NEXT: arith.select %{{.*}}, %[[ADDED]], %{{.*}} : f32
// CHECK: %[[BO:.*]] = memref.load %{{.*}} : memref<16xbf16>
// CHECK: %[[BOF:.*]] = arith.extf %[[BO]] : bf16 to f32
// CHECK: %[[BIASED:.*]] = arith.addf %[[SUM]], %[[BOF]] : f32
// CHECK: arith.truncf %[[BIASED]] : f32 to bf16

// EMULATED-LABEL: func.func @rules
// EMULATED-NOT: gpu.
// EMULATED: omp.parallel
// EMULATED: arith.truncf
// EMULATED: omp.barrier
func.func @rules(%out: tensor<?x16xf32>, %rows: tensor<?x2xi64>, %s: tensor<?x16xf32>,
    %bo: tensor<16xbf16>) -> tensor<?x16xbf16> {
  %y = moe.combine %out, %rows shared(%s : tensor<?x16xf32>) bias(%bo : tensor<16xbf16>)
      : tensor<?x16xf32>, tensor<?x2xi64> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// With weights and a bias in f32 it weights the rows, adds the bias and
// does not round.
// CHECK-LABEL: func.func @weighted
// CHECK: %[[WEIGHTS:.*]] = bufferization.to_buffer %arg2 {{.*}} : tensor<?x2xf32> to memref<?x2xf32>
// CHECK: gpu.launch {{.*}} function(@weighted_combine)
// CHECK: scf.for
// CHECK: %[[ROW:.*]] = memref.load %{{.*}} : memref<?x8xf32>
// CHECK-NEXT: %[[W:.*]] = memref.load %[[WEIGHTS]]
// CHECK-NEXT: %[[WEIGHTED:.*]] = arith.mulf %[[W]], %[[ROW]] : f32
// CHECK-NEXT: arith.addf %{{.*}}, %[[WEIGHTED]] : f32
// CHECK: memref.load %{{.*}} : memref<8xf32>
// CHECK-NEXT: arith.addf
// CHECK-NOT: arith.truncf
// CHECK: memref.store
func.func @weighted(%out: tensor<?x8xf32>, %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>,
    %bo: tensor<8xf32>) -> tensor<?x8xf32> {
  %y = moe.combine %out, %rows, %w bias(%bo : tensor<8xf32>)
      : tensor<?x8xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

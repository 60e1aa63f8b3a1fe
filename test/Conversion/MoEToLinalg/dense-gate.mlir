// RUN: moe-opt %s -split-input-file -moe-expand -moe-lower-gate | FileCheck %s

// A dense mixture (top_k = E): moe-expand marks the forward's gate
// 'unordered' and the lowering then writes expert j into slot j. No group
// mask, no availability scratch, no argmax loop: only the scores, their sum
// and the normalization remain.
// CHECK-LABEL: func.func @dense_forward
// CHECK-NOT: moe.gate
// CHECK-NOT: memref<4xi1>
// CHECK-NOT: -> (f32, f32)
// CHECK-NOT: -> (index, f32)
// CHECK-NOT: arith.cmpf
// CHECK: math.exp
// CHECK: %[[SUM:.*]] = scf.for %[[E:.*]] = %c0 to %c4 step %c1 iter_args(%{{.*}}) -> (f32)
// CHECK: %[[ID:.*]] = arith.index_cast %[[E]] : index to i32
// CHECK: memref.store %[[ID]], %{{.*}}[%{{.*}}, %[[E]]] : memref<?x4xi32>
// CHECK: arith.divf %{{.*}}, %[[SUM]] : f32
// CHECK-NOT: arith.cmpf
// CHECK: moe.dispatch
func.func @dense_forward(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>,
    %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  %y = moe.layer %x router(%wr : tensor<4x16xf32>)
         up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 4 : i64, n_group = 2 : i64, topk_group = 2 : i64}
         : tensor<?x16xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// route() must report ids in descending choice order: its gate is not
// 'unordered', so even a dense gate selects.
// CHECK-LABEL: func.func @dense_route
// CHECK: memref.alloc() : memref<4xi1>
// CHECK: scf.for {{.*}} -> (index, f32)
// CHECK: arith.cmpf ogt
func.func @dense_route(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>)
    -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 4 : i64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

// -----

// With a capacity factor the order decides which slots are granted, so a
// dense gate keeps its selection.
// CHECK-LABEL: func.func @dense_capacity
// CHECK: scf.for {{.*}} -> (index, f32)
// CHECK: math.ceil
func.func @dense_capacity(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>,
    %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  %y = moe.layer %x router(%wr : tensor<4x16xf32>)
         up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 4 : i64, capacity_factor = 1.0 : f64}
         : tensor<?x16xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

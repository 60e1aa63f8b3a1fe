// RUN: moe-opt %s -split-input-file -moe-decompose-gate | FileCheck %s

// The router logits become a linalg.matmul on tensors: x against the
// router in its nn.Linear layout ([E, H], so the maps read it as (n, k)),
// accumulated in f32 from zero; moe.select takes every routing attribute.
// CHECK-LABEL: func.func @softmax_bf16
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xbf16>, %[[WR:.*]]: tensor<4x16xbf16>)
// CHECK-NOT: moe.gate
// CHECK: %[[T:.*]] = tensor.dim %[[X]], %c0
// CHECK: %[[EMPTY:.*]] = tensor.empty(%[[T]]) : tensor<?x4xf32>
// CHECK: %[[ZERO:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%[[EMPTY]]
// CHECK: %[[LOGITS:.*]] = linalg.matmul indexing_maps = [#[[MX:.*]], #[[MW:.*]], #[[MO:.*]]] ins(%[[X]], %[[WR]] : tensor<?x16xbf16>, tensor<4x16xbf16>) outs(%[[ZERO]] : tensor<?x4xf32>)
// CHECK: %[[IDS0:.*]] = tensor.empty(%[[T]]) : tensor<?x2xi32>
// CHECK: %[[W0:.*]] = tensor.empty(%[[T]]) : tensor<?x2xf32>
// CHECK: moe.select %[[LOGITS]] outs(%[[IDS0]], %[[W0]] : tensor<?x2xi32>, tensor<?x2xf32>)
// CHECK-SAME: routed_scaling_factor = 2.500000e+00 : f32
// CHECK-SAME: top_k = 2 : i64
// CHECK-SAME: unordered
func.func @softmax_bf16(%x: tensor<?x16xbf16>, %wr: tensor<4x16xbf16>)
    -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64, routed_scaling_factor = 2.5 : f32, unordered}
      : tensor<?x16xbf16>, tensor<4x16xbf16> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

// -----

// A router bias is widened into the logits' initial value; the selection
// bias stays the select's, and expert choice keeps its [T, E] results.
// CHECK-LABEL: func.func @biases_expert_choice
// CHECK-SAME: %[[RB:[^:]*]]: tensor<8xbf16>
// CHECK: %[[BIASED:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel"]} ins(%[[RB]] : tensor<8xbf16>) outs(%{{.*}} : tensor<?x8xf32>)
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: %[[LOGITS:.*]] = linalg.matmul {{.*}} outs(%[[BIASED]] : tensor<?x8xf32>)
// CHECK: moe.select %[[LOGITS]] outs(%{{.*}}, %{{.*}} : tensor<?x8xi32>, tensor<?x8xf32>)
// CHECK-SAME: capacity_factor = 2.000000e+00
// CHECK-SAME: routing = #moe.routing<expert_choice>
func.func @biases_expert_choice(%x: tensor<?x16xbf16>, %wr: tensor<8x16xbf16>,
    %rb: tensor<8xbf16>) -> (tensor<?x8xi32>, tensor<?x8xf32>) {
  %ids, %w = moe.gate %x, %wr router_bias(%rb : tensor<8xbf16>)
      {top_k = 1 : i64, routing = #moe.routing<expert_choice>, capacity_factor = 2.0}
      : tensor<?x16xbf16>, tensor<8x16xbf16> -> tensor<?x8xi32>, tensor<?x8xf32>
  return %ids, %w : tensor<?x8xi32>, tensor<?x8xf32>
}

// -----

// A static input may route into dynamic results: their sizes come from
// the input's token count.
// CHECK-LABEL: func.func @static_input
// CHECK: tensor.empty() : tensor<4x4xf32>
// CHECK: tensor.empty(%c4) : tensor<?x2xi32>
// CHECK: tensor.empty(%c4) : tensor<?x2xf32>
// CHECK: moe.select %{{.*}} : tensor<4x4xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
func.func @static_input(%x: tensor<4x16xf32>, %wr: tensor<4x16xf32>)
    -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<4x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

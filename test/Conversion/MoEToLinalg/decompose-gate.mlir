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

// -----

// moe.refine: the stacked routers viewed as [P · E, H] give every parent's
// logits in one contraction, viewed as [T, P, E] by the selection, which
// takes the selection bias and every routing attribute.
// CHECK-LABEL: func.func @refine
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x64xf32>, %[[IDS:[^:]*]]: tensor<?x2xi32>, %[[W:[^:]*]]: tensor<?x2xf32>, %[[WR:[^:]*]]: tensor<4x8x64xf32>, %[[SB:[^:]*]]: tensor<4x8xf32>)
// CHECK-NOT: moe.refine %
// CHECK: %[[ROUTERS:.*]] = tensor.collapse_shape %[[WR]] {{\[\[}}0, 1], [2]] : tensor<4x8x64xf32> into tensor<32x64xf32>
// CHECK: %[[ZEROS:.*]] = linalg.fill {{.*}} -> tensor<?x32xf32>
// CHECK: %[[LOGITS:.*]] = linalg.matmul {{.*}} ins(%[[X]], %[[ROUTERS]] : tensor<?x64xf32>, tensor<32x64xf32>) outs(%[[ZEROS]] : tensor<?x32xf32>)
// CHECK: %[[PER_PARENT:.*]] = tensor.expand_shape %[[LOGITS]] {{\[\[}}0], [1, 2]] {{.*}} : tensor<?x32xf32> into tensor<?x4x8xf32>
// CHECK: moe.refine_select %[[PER_PARENT]], %[[IDS]], %[[W]] selection_bias(%[[SB]] : tensor<4x8xf32>) {scoring = #moe.scoring<sigmoid>, top_k = 2 : i64} : tensor<?x4x8xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
func.func @refine(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
    %wr: tensor<4x8x64xf32>, %sb: tensor<4x8xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr selection_bias(%sb : tensor<4x8xf32>)
      {top_k = 2 : i64, scoring = #moe.scoring<sigmoid>}
      : tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x8x64xf32>
      -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids2, %w2 : tensor<?x4xi32>, tensor<?x4xf32>
}

// RUN: moe-opt %s -split-input-file -allow-unregistered-dialect | FileCheck %s
// Round trip: the printed form parses back to the same printed form.
// RUN: moe-opt %s -split-input-file -allow-unregistered-dialect | moe-opt -split-input-file -allow-unregistered-dialect | FileCheck %s

// CHECK-LABEL: func.func @layer_defaults
// CHECK: %[[Y:.*]] = moe.layer %{{.*}} router(%{{.*}} : tensor<8x64xf32>) gate_proj(%{{.*}} : tensor<8x128x64xf32>) up_proj(%{{.*}} : tensor<8x128x64xf32>) down_proj(%{{.*}} : tensor<8x64x128xf32>) {top_k = 2 : i64} : tensor<?x64xf32> -> tensor<?x64xf32>
func.func @layer_defaults(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>,
    %wg: tensor<8x128x64xf32>, %wu: tensor<8x128x64xf32>,
    %wd: tensor<8x64x128xf32>) -> tensor<?x64xf32> {
  %y = moe.layer %x router(%wr : tensor<8x64xf32>)
         gate_proj(%wg : tensor<8x128x64xf32>) up_proj(%wu : tensor<8x128x64xf32>)
         down_proj(%wd : tensor<8x64x128xf32>)
         {top_k = 2 : i64} : tensor<?x64xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Every optional operand and every non-default attribute (DeepSeek-V3-like
// routing, Qwen2-MoE-like shared expert).
// CHECK-LABEL: func.func @layer_everything
// CHECK: moe.layer %{{.*}} router(%{{.*}} : tensor<16x32xbf16>) router_bias(%{{.*}} : tensor<16xbf16>) selection_bias(%{{.*}} : tensor<16xbf16>)
// CHECK-SAME: up_proj(%{{.*}} : tensor<16x48x32xbf16>) down_proj(%{{.*}} : tensor<16x32x48xbf16>)
// CHECK-SAME: shared_up_proj(%{{.*}} : tensor<96x32xbf16>) shared_down_proj(%{{.*}} : tensor<32x96xbf16>) shared_expert_gate(%{{.*}} : tensor<32xbf16>)
// CHECK-SAME: activation = #moe.activation<gelu_tanh>
// CHECK-SAME: capacity_factor = 1.250000e+00 : f64
// CHECK-SAME: group_score = #moe.group_score<max>
// CHECK-SAME: n_group = 4 : i64
// CHECK-SAME: normalize_top_k = false
// CHECK-SAME: routed_scaling_factor = 2.500000e+00 : f32
// CHECK-SAME: scoring = #moe.scoring<sigmoid>
// CHECK-SAME: top_k = 4 : i64
// CHECK-SAME: topk_group = 2 : i64
// CHECK-SAME: : tensor<?x32xbf16> -> tensor<?x32xbf16>
func.func @layer_everything(%x: tensor<?x32xbf16>, %wr: tensor<16x32xbf16>,
    %rb: tensor<16xbf16>, %sb: tensor<16xbf16>, %wu: tensor<16x48x32xbf16>,
    %wd: tensor<16x32x48xbf16>, %su: tensor<96x32xbf16>,
    %sd: tensor<32x96xbf16>, %sg: tensor<32xbf16>) -> tensor<?x32xbf16> {
  %y = moe.layer %x router(%wr : tensor<16x32xbf16>)
         router_bias(%rb : tensor<16xbf16>) selection_bias(%sb : tensor<16xbf16>)
         up_proj(%wu : tensor<16x48x32xbf16>)
         down_proj(%wd : tensor<16x32x48xbf16>)
         shared_up_proj(%su : tensor<96x32xbf16>) shared_down_proj(%sd : tensor<32x96xbf16>)
         shared_expert_gate(%sg : tensor<32xbf16>)
         {top_k = 4 : i64, scoring = #moe.scoring<sigmoid>,
          normalize_top_k = false, routed_scaling_factor = 2.5 : f32,
          n_group = 4 : i64, topk_group = 2 : i64,
          group_score = #moe.group_score<max>, capacity_factor = 1.25 : f64,
          activation = #moe.activation<gelu_tanh>}
         : tensor<?x32xbf16> -> tensor<?x32xbf16>
  return %y : tensor<?x32xbf16>
}

// -----

// CHECK-LABEL: func.func @layer_gated_shared_expert_choice
// CHECK: shared_gate_proj(%{{.*}} : tensor<24x16xf16>) shared_up_proj(%{{.*}} : tensor<24x16xf16>) shared_down_proj(%{{.*}} : tensor<16x24xf16>)
// CHECK-SAME: activation = #moe.activation<relu>
// CHECK-SAME: routing = #moe.routing<expert_choice>
func.func @layer_gated_shared_expert_choice(%x: tensor<5x16xf16>,
    %wr: tensor<4x16xf16>, %wg: tensor<4x8x16xf16>, %wu: tensor<4x8x16xf16>,
    %wd: tensor<4x16x8xf16>, %sg: tensor<24x16xf16>, %su: tensor<24x16xf16>,
    %sd: tensor<16x24xf16>) -> tensor<5x16xf16> {
  %y = moe.layer %x router(%wr : tensor<4x16xf16>)
         gate_proj(%wg : tensor<4x8x16xf16>) up_proj(%wu : tensor<4x8x16xf16>)
         down_proj(%wd : tensor<4x16x8xf16>)
         shared_gate_proj(%sg : tensor<24x16xf16>) shared_up_proj(%su : tensor<24x16xf16>)
         shared_down_proj(%sd : tensor<16x24xf16>)
         {top_k = 1 : i64, routing = #moe.routing<expert_choice>,
          capacity_factor = 2.0 : f64, activation = #moe.activation<relu>}
         : tensor<5x16xf16> -> tensor<5x16xf16>
  return %y : tensor<5x16xf16>
}

// -----

// Hierarchical: level routers, per-level biases and every #moe.level
// parameter (defaults elided when printed).
// CHECK-LABEL: func.func @layer_hierarchical
// CHECK: moe.layer %{{.*}} router(%{{.*}} : tensor<4x16xbf16>) level_routers(%{{.*}}, %{{.*}} : tensor<4x8x16xbf16>, tensor<32x2x16xbf16>) level_router_biases(%{{.*}} : tensor<4x8xbf16>) level_selection_biases(%{{.*}}, %{{.*}} : tensor<4x8xbf16>, tensor<32x2xbf16>) up_proj(%{{.*}} : tensor<64x12x16xbf16>) down_proj(%{{.*}} : tensor<64x16x12xbf16>)
// CHECK-SAME: levels = [#moe.level<top_k = 4, scoring = sigmoid, normalize_top_k = false, routed_scaling_factor = 2.500000e+00, n_group = 4, topk_group = 2, group_score = max, router_bias = true, selection_bias = true>, #moe.level<top_k = 2, selection_bias = true>]
// CHECK-SAME: top_k = 2 : i64
func.func @layer_hierarchical(%x: tensor<?x16xbf16>, %wr: tensor<4x16xbf16>,
    %wr2: tensor<4x8x16xbf16>, %wr3: tensor<32x2x16xbf16>,
    %rb2: tensor<4x8xbf16>, %sb2: tensor<4x8xbf16>, %sb3: tensor<32x2xbf16>,
    %wu: tensor<64x12x16xbf16>, %wd: tensor<64x16x12xbf16>)
    -> tensor<?x16xbf16> {
  %y = moe.layer %x router(%wr : tensor<4x16xbf16>)
         level_routers(%wr2, %wr3 : tensor<4x8x16xbf16>, tensor<32x2x16xbf16>)
         level_router_biases(%rb2 : tensor<4x8xbf16>)
         level_selection_biases(%sb2, %sb3 : tensor<4x8xbf16>, tensor<32x2xbf16>)
         up_proj(%wu : tensor<64x12x16xbf16>) down_proj(%wd : tensor<64x16x12xbf16>)
         {top_k = 2 : i64, levels = [
            #moe.level<top_k = 4, scoring = sigmoid, normalize_top_k = false,
                       routed_scaling_factor = 2.5, n_group = 4, topk_group = 2,
                       group_score = max, router_bias = true,
                       selection_bias = true>,
            #moe.level<top_k = 2, scoring = softmax, normalize_top_k = true,
                       router_bias = false, selection_bias = true>]}
         : tensor<?x16xbf16> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// CHECK-LABEL: func.func @gate
// CHECK: %[[IDS:.*]], %[[W:.*]] = moe.gate %{{.*}}, %{{.*}} router_bias(%{{.*}} : tensor<64xf32>) selection_bias(%{{.*}} : tensor<64xf32>) {n_group = 8 : i64, scoring = #moe.scoring<sigmoid>, top_k = 6 : i64, topk_group = 3 : i64} : tensor<?x128xf32>, tensor<64x128xf32> -> tensor<?x6xi32>, tensor<?x6xf32>
func.func @gate(%x: tensor<?x128xf32>, %wr: tensor<64x128xf32>,
    %rb: tensor<64xf32>, %sb: tensor<64xf32>)
    -> (tensor<?x6xi32>, tensor<?x6xf32>) {
  %ids, %w = moe.gate %x, %wr router_bias(%rb : tensor<64xf32>)
               selection_bias(%sb : tensor<64xf32>)
               {top_k = 6 : i64, scoring = #moe.scoring<sigmoid>,
                n_group = 8 : i64, topk_group = 3 : i64}
               : tensor<?x128xf32>, tensor<64x128xf32>
               -> tensor<?x6xi32>, tensor<?x6xf32>
  return %ids, %w : tensor<?x6xi32>, tensor<?x6xf32>
}

// -----

// CHECK-LABEL: func.func @gate_expert_choice
// CHECK: moe.gate {{.*}} {capacity_factor = 1.000000e+00 : f64, routing = #moe.routing<expert_choice>, top_k = 1 : i64} : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
func.func @gate_expert_choice(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>)
    -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.gate %x, %wr
               {top_k = 1 : i64, routing = #moe.routing<expert_choice>,
                capacity_factor = 1.0 : f64}
               : tensor<?x16xf32>, tensor<4x16xf32>
               -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

// -----

// A dense mixture's gate for a consumer that takes the slots in any order.
// CHECK-LABEL: func.func @gate_unordered
// CHECK: moe.gate {{.*}} {top_k = 4 : i64, unordered} : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
func.func @gate_unordered(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>)
    -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 4 : i64, unordered}
               : tensor<?x16xf32>, tensor<4x16xf32>
               -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

// -----

// CHECK-LABEL: func.func @refine
// CHECK: %[[IDS:.*]], %[[W:.*]] = moe.refine %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} router_bias(%{{.*}} : tensor<4x8xf32>) selection_bias(%{{.*}} : tensor<4x8xf32>) {n_group = 4 : i64, scoring = #moe.scoring<sigmoid>, top_k = 2 : i64, topk_group = 2 : i64} : tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x8x64xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
// CHECK: moe.refine %{{.*}}, %[[IDS]], %[[W]], %{{.*}} {top_k = 3 : i64, unordered} : tensor<?x64xf32>, tensor<?x4xi32>, tensor<?x4xf32>, tensor<32x3x64xf32> -> tensor<?x12xi32>, tensor<?x12xf32>
func.func @refine(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>,
    %w: tensor<?x2xf32>, %wr2: tensor<4x8x64xf32>, %rb2: tensor<4x8xf32>,
    %sb2: tensor<4x8xf32>, %wr3: tensor<32x3x64xf32>)
    -> (tensor<?x12xi32>, tensor<?x12xf32>) {
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr2 router_bias(%rb2 : tensor<4x8xf32>)
                 selection_bias(%sb2 : tensor<4x8xf32>)
                 {top_k = 2 : i64, scoring = #moe.scoring<sigmoid>,
                  n_group = 4 : i64, topk_group = 2 : i64}
                 : tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>,
                   tensor<4x8x64xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  %ids3, %w3 = moe.refine %x, %ids2, %w2, %wr3 {top_k = 3 : i64, unordered}
                 : tensor<?x64xf32>, tensor<?x4xi32>, tensor<?x4xf32>,
                   tensor<32x3x64xf32> -> tensor<?x12xi32>, tensor<?x12xf32>
  return %ids3, %w3 : tensor<?x12xi32>, tensor<?x12xf32>
}

// -----

// CHECK-LABEL: func.func @dispatch
// CHECK: %[[C:.*]], %[[O:.*]], %[[S:.*]], %[[R:.*]] = moe.dispatch %{{.*}} {num_experts = 8 : i64, row_tile = 16 : i64} : tensor<?x2xi32> -> tensor<8xi64>, tensor<9xi64>, tensor<?xi64>, tensor<?x2xi64>
// CHECK: moe.dispatch %{{.*}} {num_experts = 8 : i64} : tensor<3x2xi32>
func.func @dispatch(%ids: tensor<?x2xi32>, %ids3: tensor<3x2xi32>)
    -> (tensor<8xi64>, tensor<9xi64>, tensor<?xi64>, tensor<?x2xi64>) {
  %counts, %offsets, %slots, %rows = moe.dispatch %ids
      {num_experts = 8 : i64, row_tile = 16 : i64}
      : tensor<?x2xi32> -> tensor<8xi64>, tensor<9xi64>, tensor<?xi64>,
                           tensor<?x2xi64>
  %c, %o, %s, %r = moe.dispatch %ids3 {num_experts = 8 : i64, row_tile = 1 : i64}
      : tensor<3x2xi32> -> tensor<8xi64>, tensor<9xi64>, tensor<?xi64>,
                           tensor<3x2xi64>
  return %counts, %offsets, %slots, %rows
      : tensor<8xi64>, tensor<9xi64>, tensor<?xi64>, tensor<?x2xi64>
}

// -----

// CHECK-LABEL: func.func @expert
// CHECK: moe.expert %{{.*}}, %{{.*}}, %{{.*}} gate_proj(%{{.*}} : tensor<8x128x64xf32>) up_proj(%{{.*}} : tensor<8x128x64xf32>) down_proj(%{{.*}} : tensor<8x64x128xf32>) {activation = #moe.activation<gelu>, slots_per_token = 2 : i64} : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
// CHECK: moe.expert %{{.*}}, %{{.*}}, %{{.*}} up_proj(%{{.*}} : tensor<8x128x64xf32>) down_proj(%{{.*}} : tensor<8x64x128xf32>) {slots_per_token = 2 : i64}
func.func @expert(%x: tensor<?x64xf32>, %slots: tensor<?xi64>,
    %offsets: tensor<9xi64>, %wg: tensor<8x128x64xf32>,
    %wu: tensor<8x128x64xf32>, %wd: tensor<8x64x128xf32>)
    -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %a = moe.expert %x, %slots, %offsets
         gate_proj(%wg : tensor<8x128x64xf32>) up_proj(%wu : tensor<8x128x64xf32>)
         down_proj(%wd : tensor<8x64x128xf32>)
         {slots_per_token = 2 : i64, activation = #moe.activation<gelu>}
         : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
  %b = moe.expert %x, %slots, %offsets
         up_proj(%wu : tensor<8x128x64xf32>)
         down_proj(%wd : tensor<8x64x128xf32>)
         {slots_per_token = 2 : i64, activation = #moe.activation<silu>}
         : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
  return %a, %b : tensor<?x64xf32>, tensor<?x64xf32>
}

// -----

// CHECK-LABEL: func.func @shared_expert
// CHECK: moe.shared_expert %{{.*}} gate_proj(%{{.*}} : tensor<256x64xf32>) up_proj(%{{.*}} : tensor<256x64xf32>) down_proj(%{{.*}} : tensor<64x256xf32>) expert_gate(%{{.*}} : tensor<64xf32>) : tensor<?x64xf32> -> tensor<?x64xf32>
// CHECK: moe.shared_expert %{{.*}} up_proj(%{{.*}} : tensor<256x64xf32>) down_proj(%{{.*}} : tensor<64x256xf32>) : tensor<?x64xf32> -> tensor<?x64xf32>
func.func @shared_expert(%x: tensor<?x64xf32>, %sg: tensor<256x64xf32>,
    %su: tensor<256x64xf32>, %sd: tensor<64x256xf32>, %g: tensor<64xf32>)
    -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %a = moe.shared_expert %x
         gate_proj(%sg : tensor<256x64xf32>) up_proj(%su : tensor<256x64xf32>)
         down_proj(%sd : tensor<64x256xf32>)
         expert_gate(%g : tensor<64xf32>)
         : tensor<?x64xf32> -> tensor<?x64xf32>
  %b = moe.shared_expert %x
         up_proj(%su : tensor<256x64xf32>)
         down_proj(%sd : tensor<64x256xf32>)
         : tensor<?x64xf32> -> tensor<?x64xf32>
  return %a, %b : tensor<?x64xf32>, tensor<?x64xf32>
}

// -----

// CHECK-LABEL: func.func @combine
// CHECK: moe.combine %{{.*}}, %{{.*}}, %{{.*}} shared(%{{.*}} : tensor<?x64xf32>) : tensor<?x64xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x64xbf16>
// CHECK: moe.combine %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x64xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x64xf32>
func.func @combine(%out: tensor<?x64xf32>, %rows: tensor<?x2xi64>,
    %w: tensor<?x2xf32>, %s: tensor<?x64xf32>)
    -> (tensor<?x64xbf16>, tensor<?x64xf32>) {
  %a = moe.combine %out, %rows, %w shared(%s : tensor<?x64xf32>)
         : tensor<?x64xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x64xbf16>
  %b = moe.combine %out, %rows, %w
         : tensor<?x64xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x64xf32>
  return %a, %b : tensor<?x64xbf16>, tensor<?x64xf32>
}

// -----

// A shard's experts, gated and not: the rows arrive routed, one id and one
// weight each; the weights are the shard's experts only.
// CHECK-LABEL: func.func @local_experts
// CHECK: moe.local_experts %{{.*}}, %{{.*}}, %{{.*}} gate_proj(%{{.*}} : tensor<2x128x64xbf16>) up_proj(%{{.*}} : tensor<2x128x64xbf16>) down_proj(%{{.*}} : tensor<2x64x128xbf16>) : tensor<?x64xbf16>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x64xf32>
// CHECK: moe.local_experts %{{.*}}, %{{.*}}, %{{.*}} up_proj(%{{.*}} : tensor<3x8x64xbf16>) down_proj(%{{.*}} : tensor<3x64x8xbf16>) {activation = #moe.activation<gelu>} : tensor<?x64xbf16>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x64xf32>
func.func @local_experts(%rows: tensor<?x64xbf16>, %ids: tensor<?x1xi32>,
    %w: tensor<?x1xf32>, %wg: tensor<2x128x64xbf16>,
    %wu: tensor<2x128x64xbf16>, %wd: tensor<2x64x128xbf16>,
    %wu3: tensor<3x8x64xbf16>, %wd3: tensor<3x64x8xbf16>)
    -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %a = moe.local_experts %rows, %ids, %w
         gate_proj(%wg : tensor<2x128x64xbf16>)
         up_proj(%wu : tensor<2x128x64xbf16>)
         down_proj(%wd : tensor<2x64x128xbf16>)
         : tensor<?x64xbf16>, tensor<?x1xi32>, tensor<?x1xf32>
         -> tensor<?x64xf32>
  %b = moe.local_experts %rows, %ids, %w
         up_proj(%wu3 : tensor<3x8x64xbf16>)
         down_proj(%wd3 : tensor<3x64x8xbf16>)
         {activation = #moe.activation<gelu>}
         : tensor<?x64xbf16>, tensor<?x1xi32>, tensor<?x1xf32>
         -> tensor<?x64xf32>
  return %a, %b : tensor<?x64xf32>, tensor<?x64xf32>
}

// -----

// docs/FAMILY-RULES.md on moe.layer: the routed experts' biases (GPT-OSS),
// the output bias (JetMoE), sparsemixer routing (PhiMoE), the p-norm
// (DBRX), clamped SwiGLU (GPT-OSS) and the routing weight on the input
// (Llama 4).
// CHECK-LABEL: func.func @layer_family_rules
// CHECK: moe.layer %{{.*}} router(%{{.*}} : tensor<4x16xbf16>) gate_proj(%{{.*}} : tensor<4x8x16xbf16>) up_proj(%{{.*}} : tensor<4x8x16xbf16>) down_proj(%{{.*}} : tensor<4x16x8xbf16>) gate_bias(%{{.*}} : tensor<4x8xbf16>) up_bias(%{{.*}} : tensor<4x8xbf16>) down_bias(%{{.*}} : tensor<4x16xbf16>)
// CHECK-SAME: shared_gate_proj(%{{.*}} : tensor<12x16xbf16>) shared_up_proj(%{{.*}} : tensor<12x16xbf16>) shared_down_proj(%{{.*}} : tensor<16x12xbf16>) output_bias(%{{.*}} : tensor<16xbf16>)
// CHECK-SAME: activation = #moe.activation<clamped_swiglu>
// CHECK-SAME: normalize_p = 2.000000e+00 : f32
// CHECK-SAME: router_weight_on_input
// CHECK-SAME: scoring = #moe.scoring<sparsemixer>
// CHECK-SAME: sparsemixer_eps = 5.000000e-01 : f32
// CHECK-SAME: swiglu_alpha = 1.500000e+00 : f32
// CHECK-SAME: swiglu_limit = 3.000000e+00 : f32
// CHECK-SAME: top_k = 2 : i64
// CHECK-SAME: : tensor<?x16xbf16> -> tensor<?x16xbf16>
func.func @layer_family_rules(%x: tensor<?x16xbf16>, %wr: tensor<4x16xbf16>,
    %wg: tensor<4x8x16xbf16>, %wu: tensor<4x8x16xbf16>,
    %wd: tensor<4x16x8xbf16>, %bg: tensor<4x8xbf16>, %bu: tensor<4x8xbf16>,
    %bd: tensor<4x16xbf16>, %sg: tensor<12x16xbf16>, %su: tensor<12x16xbf16>,
    %sd: tensor<16x12xbf16>, %ob: tensor<16xbf16>) -> tensor<?x16xbf16> {
  %y = moe.layer %x router(%wr : tensor<4x16xbf16>)
         gate_proj(%wg : tensor<4x8x16xbf16>) up_proj(%wu : tensor<4x8x16xbf16>)
         down_proj(%wd : tensor<4x16x8xbf16>)
         gate_bias(%bg : tensor<4x8xbf16>) up_bias(%bu : tensor<4x8xbf16>)
         down_bias(%bd : tensor<4x16xbf16>)
         shared_gate_proj(%sg : tensor<12x16xbf16>)
         shared_up_proj(%su : tensor<12x16xbf16>)
         shared_down_proj(%sd : tensor<16x12xbf16>)
         output_bias(%ob : tensor<16xbf16>)
         {top_k = 2 : i64, scoring = #moe.scoring<sparsemixer>,
          sparsemixer_eps = 0.5 : f32, normalize_p = 2.0 : f32,
          activation = #moe.activation<clamped_swiglu>,
          swiglu_alpha = 1.5 : f32, swiglu_limit = 3.0 : f32,
          router_weight_on_input}
         : tensor<?x16xbf16> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// The new attributes at their defaults are elided like the others; an
// up_bias alone (not gated) and a down_bias alone are fine.
// CHECK-LABEL: func.func @layer_family_defaults
// CHECK: moe.layer %{{.*}} router(%{{.*}} : tensor<4x16xf32>) up_proj(%{{.*}} : tensor<4x8x16xf32>) down_proj(%{{.*}} : tensor<4x16x8xf32>) up_bias(%{{.*}} : tensor<4x8xf32>) {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
// CHECK: moe.layer %{{.*}} router(%{{.*}} : tensor<4x16xf32>) up_proj(%{{.*}} : tensor<4x8x16xf32>) down_proj(%{{.*}} : tensor<4x16x8xf32>) down_bias(%{{.*}} : tensor<4x16xf32>) {activation = #moe.activation<gelu>, top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
func.func @layer_family_defaults(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>,
    %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %bu: tensor<4x8xf32>,
    %bd: tensor<4x16xf32>) -> (tensor<?x16xf32>, tensor<?x16xf32>) {
  %a = moe.layer %x router(%wr : tensor<4x16xf32>)
         up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         up_bias(%bu : tensor<4x8xf32>)
         {top_k = 2 : i64, scoring = #moe.scoring<softmax>,
          normalize_p = 1.0 : f32, sparsemixer_eps = 0.01 : f32,
          activation = #moe.activation<silu>, swiglu_alpha = 1.702 : f32,
          swiglu_limit = 7.0 : f32}
         : tensor<?x16xf32> -> tensor<?x16xf32>
  %b = moe.layer %x router(%wr : tensor<4x16xf32>)
         up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         down_bias(%bd : tensor<4x16xf32>)
         {top_k = 2 : i64, activation = #moe.activation<gelu>}
         : tensor<?x16xf32> -> tensor<?x16xf32>
  return %a, %b : tensor<?x16xf32>, tensor<?x16xf32>
}

// -----

// An inner level with sparsemixer routing and a p-norm; the defaults of the
// new #moe.level parameters are elided.
// CHECK-LABEL: func.func @layer_level_family_rules
// CHECK: levels = [#moe.level<top_k = 2, scoring = sparsemixer, normalize_p = 3.000000e+00, sparsemixer_eps = 2.500000e-01>, #moe.level<top_k = 1>]
func.func @layer_level_family_rules(%x: tensor<?x16xf32>,
    %wr: tensor<2x16xf32>, %wr2: tensor<2x4x16xf32>, %wr3: tensor<8x2x16xf32>,
    %wu: tensor<16x8x16xf32>, %wd: tensor<16x16x8xf32>) -> tensor<?x16xf32> {
  %y = moe.layer %x router(%wr : tensor<2x16xf32>)
         level_routers(%wr2, %wr3 : tensor<2x4x16xf32>, tensor<8x2x16xf32>)
         up_proj(%wu : tensor<16x8x16xf32>) down_proj(%wd : tensor<16x16x8xf32>)
         {top_k = 1 : i64, levels = [
            #moe.level<top_k = 2, scoring = sparsemixer, normalize_p = 3.0,
                       sparsemixer_eps = 0.25>,
            #moe.level<top_k = 1, normalize_p = 1.0, sparsemixer_eps = 0.01>]}
         : tensor<?x16xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// CHECK-LABEL: func.func @gate_sparsemixer
// CHECK: moe.gate %{{.*}}, %{{.*}} router_bias(%{{.*}} : tensor<8xf32>) {normalize_p = 2.000000e+00 : f32, scoring = #moe.scoring<sparsemixer>, sparsemixer_eps = 1.000000e-01 : f32, top_k = 2 : i64} : tensor<?x16xf32>, tensor<8x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
func.func @gate_sparsemixer(%x: tensor<?x16xf32>, %wr: tensor<8x16xf32>,
    %rb: tensor<8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr router_bias(%rb : tensor<8xf32>)
               {top_k = 2 : i64, scoring = #moe.scoring<sparsemixer>,
                sparsemixer_eps = 0.1 : f32, normalize_p = 2.0 : f32}
               : tensor<?x16xf32>, tensor<8x16xf32>
               -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

// -----

// CHECK-LABEL: func.func @refine_sparsemixer
// CHECK: moe.refine %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} router_bias(%{{.*}} : tensor<4x8xf32>) {normalize_p = 5.000000e-01 : f32, scoring = #moe.scoring<sparsemixer>, sparsemixer_eps = 0.000000e+00 : f32, top_k = 2 : i64} : tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x8x64xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
func.func @refine_sparsemixer(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>,
    %w: tensor<?x2xf32>, %wr2: tensor<4x8x64xf32>, %rb2: tensor<4x8xf32>)
    -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr2 router_bias(%rb2 : tensor<4x8xf32>)
                 {top_k = 2 : i64, scoring = #moe.scoring<sparsemixer>,
                  sparsemixer_eps = 0.0 : f32, normalize_p = 0.5 : f32}
                 : tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>,
                   tensor<4x8x64xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids2, %w2 : tensor<?x4xi32>, tensor<?x4xf32>
}

// -----

// moe.expert with every bias, the routing weights on its input and clamped
// SwiGLU; and plain, with an up bias only.
// CHECK-LABEL: func.func @expert_family_rules
// CHECK: moe.expert %{{.*}}, %{{.*}}, %{{.*}} gate_proj(%{{.*}} : tensor<8x128x64xf32>) up_proj(%{{.*}} : tensor<8x128x64xf32>) down_proj(%{{.*}} : tensor<8x64x128xf32>) gate_bias(%{{.*}} : tensor<8x128xf32>) up_bias(%{{.*}} : tensor<8x128xf32>) down_bias(%{{.*}} : tensor<8x64xf32>) input_weights(%{{.*}} : tensor<?x2xf32>) {activation = #moe.activation<clamped_swiglu>, slots_per_token = 2 : i64, swiglu_alpha = 2.000000e+00 : f32, swiglu_limit = 1.000000e+01 : f32} : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
// CHECK: moe.expert %{{.*}}, %{{.*}}, %{{.*}} up_proj(%{{.*}} : tensor<8x128x64xf32>) down_proj(%{{.*}} : tensor<8x64x128xf32>) up_bias(%{{.*}} : tensor<8x128xf32>) {slots_per_token = 2 : i64} : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
func.func @expert_family_rules(%x: tensor<?x64xf32>, %slots: tensor<?xi64>,
    %offsets: tensor<9xi64>, %wg: tensor<8x128x64xf32>,
    %wu: tensor<8x128x64xf32>, %wd: tensor<8x64x128xf32>,
    %bg: tensor<8x128xf32>, %bu: tensor<8x128xf32>, %bd: tensor<8x64xf32>,
    %w: tensor<?x2xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %a = moe.expert %x, %slots, %offsets
         gate_proj(%wg : tensor<8x128x64xf32>) up_proj(%wu : tensor<8x128x64xf32>)
         down_proj(%wd : tensor<8x64x128xf32>)
         gate_bias(%bg : tensor<8x128xf32>) up_bias(%bu : tensor<8x128xf32>)
         down_bias(%bd : tensor<8x64xf32>) input_weights(%w : tensor<?x2xf32>)
         {slots_per_token = 2 : i64,
          activation = #moe.activation<clamped_swiglu>,
          swiglu_alpha = 2.0 : f32, swiglu_limit = 10.0 : f32}
         : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
  %b = moe.expert %x, %slots, %offsets
         up_proj(%wu : tensor<8x128x64xf32>)
         down_proj(%wd : tensor<8x64x128xf32>) up_bias(%bu : tensor<8x128xf32>)
         {slots_per_token = 2 : i64}
         : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
  return %a, %b : tensor<?x64xf32>, tensor<?x64xf32>
}

// -----

// CHECK-LABEL: func.func @shared_expert_clamped_swiglu
// CHECK: moe.shared_expert %{{.*}} gate_proj(%{{.*}} : tensor<256x64xf32>) up_proj(%{{.*}} : tensor<256x64xf32>) down_proj(%{{.*}} : tensor<64x256xf32>) {activation = #moe.activation<clamped_swiglu>, swiglu_alpha = -1.000000e+00 : f32, swiglu_limit = 5.000000e-01 : f32} : tensor<?x64xf32> -> tensor<?x64xf32>
func.func @shared_expert_clamped_swiglu(%x: tensor<?x64xf32>,
    %sg: tensor<256x64xf32>, %su: tensor<256x64xf32>, %sd: tensor<64x256xf32>)
    -> tensor<?x64xf32> {
  %s = moe.shared_expert %x
         gate_proj(%sg : tensor<256x64xf32>) up_proj(%su : tensor<256x64xf32>)
         down_proj(%sd : tensor<64x256xf32>)
         {activation = #moe.activation<clamped_swiglu>,
          swiglu_alpha = -1.0 : f32, swiglu_limit = 0.5 : f32}
         : tensor<?x64xf32> -> tensor<?x64xf32>
  return %s : tensor<?x64xf32>
}

// -----

// moe.combine without weights (the experts weighted their input), with an
// output bias in the result's type; and with weights, a shared expert and a
// bias.
// CHECK-LABEL: func.func @combine_family_rules
// CHECK: moe.combine %{{.*}}, %{{.*}} bias(%{{.*}} : tensor<64xbf16>) : tensor<?x64xf32>, tensor<?x2xi64> -> tensor<?x64xbf16>
// CHECK: moe.combine %{{.*}}, %{{.*}}, %{{.*}} shared(%{{.*}} : tensor<?x64xf32>) bias(%{{.*}} : tensor<64xf32>) : tensor<?x64xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x64xf32>
// CHECK: moe.combine %{{.*}}, %{{.*}} : tensor<?x64xf32>, tensor<?x2xi64> -> tensor<?x64xf32>
func.func @combine_family_rules(%out: tensor<?x64xf32>, %rows: tensor<?x2xi64>,
    %w: tensor<?x2xf32>, %s: tensor<?x64xf32>, %b16: tensor<64xbf16>,
    %b32: tensor<64xf32>)
    -> (tensor<?x64xbf16>, tensor<?x64xf32>, tensor<?x64xf32>) {
  %a = moe.combine %out, %rows bias(%b16 : tensor<64xbf16>)
         : tensor<?x64xf32>, tensor<?x2xi64> -> tensor<?x64xbf16>
  %b = moe.combine %out, %rows, %w shared(%s : tensor<?x64xf32>)
         bias(%b32 : tensor<64xf32>)
         : tensor<?x64xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x64xf32>
  %c = moe.combine %out, %rows
         : tensor<?x64xf32>, tensor<?x2xi64> -> tensor<?x64xf32>
  return %a, %b, %c : tensor<?x64xbf16>, tensor<?x64xf32>, tensor<?x64xf32>
}

// -----

// A shard's experts with biases, clamped SwiGLU and the routing weight on
// the input.
// CHECK-LABEL: func.func @local_experts_family_rules
// CHECK: moe.local_experts %{{.*}}, %{{.*}}, %{{.*}} gate_proj(%{{.*}} : tensor<2x128x64xbf16>) up_proj(%{{.*}} : tensor<2x128x64xbf16>) down_proj(%{{.*}} : tensor<2x64x128xbf16>) gate_bias(%{{.*}} : tensor<2x128xbf16>) up_bias(%{{.*}} : tensor<2x128xbf16>) down_bias(%{{.*}} : tensor<2x64xbf16>) {activation = #moe.activation<clamped_swiglu>, router_weight_on_input, swiglu_limit = 4.000000e+00 : f32} : tensor<?x64xbf16>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x64xf32>
func.func @local_experts_family_rules(%rows: tensor<?x64xbf16>,
    %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %wg: tensor<2x128x64xbf16>,
    %wu: tensor<2x128x64xbf16>, %wd: tensor<2x64x128xbf16>,
    %bg: tensor<2x128xbf16>, %bu: tensor<2x128xbf16>, %bd: tensor<2x64xbf16>)
    -> tensor<?x64xf32> {
  %r = moe.local_experts %rows, %ids, %w
         gate_proj(%wg : tensor<2x128x64xbf16>)
         up_proj(%wu : tensor<2x128x64xbf16>)
         down_proj(%wd : tensor<2x64x128xbf16>)
         gate_bias(%bg : tensor<2x128xbf16>) up_bias(%bu : tensor<2x128xbf16>)
         down_bias(%bd : tensor<2x64xbf16>)
         {activation = #moe.activation<clamped_swiglu>, swiglu_limit = 4.0 : f32,
          router_weight_on_input}
         : tensor<?x64xbf16>, tensor<?x1xi32>, tensor<?x1xf32>
         -> tensor<?x64xf32>
  return %r : tensor<?x64xf32>
}

// -----

// CHECK-LABEL: func.func @select_tiled
// CHECK: moe.select %{{.*}} selection_bias(%{{.*}} : tensor<8xbf16>) outs(%{{.*}}, %{{.*}} : tensor<?x2xi32>, tensor<?x2xf32>) {lowering_config = #moe.tiling<distribution = [16]>, top_k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
// CHECK: "test.config"() {c = #moe.tiling<registers = [2, 4, 0], reduction = [0, 0, 8]>}
// CHECK: "test.config"() {c = #moe.tiling<distribution = [1, 64, 16], threads = [1, 4, 1]>}
// CHECK: "test.config"() {c = #moe.tiling<reduction = [0, 0, 0, 1]>}
// CHECK: "test.config"() {c = #moe.tiling<distribution = [0, 6, 0, 0], cache = [0, 32, 256, 0], registers = [6, 2, 0, 8], reduction = [0, 0, 1, 0], interchange = [1, 0, 2, 3]>}
func.func @select_tiled(%l: tensor<?x8xf32>, %sb: tensor<8xbf16>,
    %i: tensor<?x2xi32>, %w: tensor<?x2xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %wt = moe.select %l selection_bias(%sb : tensor<8xbf16>)
      outs(%i, %w : tensor<?x2xi32>, tensor<?x2xf32>)
      {top_k = 2 : i64, lowering_config = #moe.tiling<distribution = [16]>}
      : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  "test.config"() {c = #moe.tiling<registers = [2, 4, 0], reduction = [0, 0, 8]>} : () -> ()
  "test.config"() {c = #moe.tiling<distribution = [1, 64, 16], threads = [1, 4, 1]>} : () -> ()
  "test.config"() {c = #moe.tiling<reduction = [0, 0, 0, 1]>} : () -> ()
  "test.config"() {c = #moe.tiling<cache = [0, 32, 256, 0], distribution = [0, 6, 0, 0], registers = [6, 2, 0, 8], reduction = [0, 0, 1, 0], interchange = [1, 0, 2, 3]>} : () -> ()
  return %ids, %wt : tensor<?x2xi32>, tensor<?x2xf32>
}

// -----

// CHECK-LABEL: func.func @refine_select
// CHECK: moe.refine_select %{{.*}}, %{{.*}}, %{{.*}} selection_bias(%{{.*}} : tensor<4x8xf32>) {scoring = #moe.scoring<sigmoid>, top_k = 2 : i64} : tensor<?x4x8xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
func.func @refine_select(%l: tensor<?x4x8xf32>, %ids: tensor<?x2xi32>,
    %w: tensor<?x2xf32>, %sb: tensor<4x8xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids2, %w2 = moe.refine_select %l, %ids, %w selection_bias(%sb : tensor<4x8xf32>)
      {top_k = 2 : i64, scoring = #moe.scoring<sigmoid>}
      : tensor<?x4x8xf32>, tensor<?x2xi32>, tensor<?x2xf32>
      -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids2, %w2 : tensor<?x4xi32>, tensor<?x4xf32>
}

// -----

// Quantized projections: moe.dequantize names the f32 weights that 4-bit
// integers with zero points and 8-bit ones in an order of their own stand
// for; expert ops take f32 projections whatever the input's type.
// CHECK-LABEL: func.func @dequantized_experts
// CHECK: %[[WU:.*]] = moe.dequantize %{{.*}}, %{{.*}} zeros(%{{.*}} : tensor<4x8x1xi8>) {format = #moe.weight_format<int4>, group_size = 16 : i64} : tensor<4x8x8xi8>, tensor<4x8x1xf32> -> tensor<4x8x16xf32>
// CHECK: %[[WD:.*]] = moe.dequantize %{{.*}}, %{{.*}} perm(%{{.*}} : tensor<4x8xi32>) {format = #moe.weight_format<int8>, group_size = 4 : i64} : tensor<4x16x8xi8>, tensor<4x16x2xf32> -> tensor<4x16x8xf32>
// CHECK: moe.expert %{{.*}}, %{{.*}}, %{{.*}} up_proj(%[[WU]] : tensor<4x8x16xf32>) down_proj(%[[WD]] : tensor<4x16x8xf32>)
// CHECK-SAME: : tensor<?x16xbf16>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
func.func @dequantized_experts(%x: tensor<?x16xbf16>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>,
    %qu: tensor<4x8x8xi8>, %su: tensor<4x8x1xf32>, %zu: tensor<4x8x1xi8>,
    %qd: tensor<4x16x8xi8>, %sd: tensor<4x16x2xf32>, %pd: tensor<4x8xi32>) -> tensor<?x16xf32> {
  %wu = moe.dequantize %qu, %su zeros(%zu : tensor<4x8x1xi8>) {format = #moe.weight_format<int4>, group_size = 16 : i64}
          : tensor<4x8x8xi8>, tensor<4x8x1xf32> -> tensor<4x8x16xf32>
  %wd = moe.dequantize %qd, %sd perm(%pd : tensor<4x8xi32>) {format = #moe.weight_format<int8>, group_size = 4 : i64}
          : tensor<4x16x8xi8>, tensor<4x16x2xf32> -> tensor<4x16x8xf32>
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         {slots_per_token = 2 : i64} : tensor<?x16xbf16>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return %r : tensor<?x16xf32>
}

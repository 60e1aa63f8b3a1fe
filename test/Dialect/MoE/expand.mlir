// RUN: moe-opt %s -split-input-file -moe-expand | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-expand=row-tile=16 | FileCheck %s --check-prefix=TILE

// Combine sums over a token's slots, so the gate may give them in any
// order ('unordered') when no capacity grants them in order.
// CHECK-LABEL: func.func @gated_top2
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xf32>, %[[WR:.*]]: tensor<8x64xf32>, %[[WG:.*]]: tensor<8x128x64xf32>, %[[WU:.*]]: tensor<8x128x64xf32>, %[[WD:.*]]: tensor<8x64x128xf32>)
// CHECK: %[[IDS:.*]], %[[W:.*]] = moe.gate %[[X]], %[[WR]] {top_k = 2 : i64, unordered} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
// CHECK: %[[COUNTS:.*]], %[[OFFSETS:.*]], %[[SLOTS:.*]], %[[ROWS:.*]] = moe.dispatch %[[IDS]] {num_experts = 8 : i64} : tensor<?x2xi32> -> tensor<8xi64>, tensor<9xi64>, tensor<?xi64>, tensor<?x2xi64>
// CHECK: %[[OUT:.*]] = moe.expert %[[X]], %[[SLOTS]], %[[OFFSETS]] gate_proj(%[[WG]] : tensor<8x128x64xf32>) up_proj(%[[WU]] : tensor<8x128x64xf32>) down_proj(%[[WD]] : tensor<8x64x128xf32>) {slots_per_token = 2 : i64} : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
// CHECK-NOT: moe.shared_expert
// CHECK: %[[Y:.*]] = moe.combine %[[OUT]], %[[ROWS]], %[[W]] : tensor<?x64xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x64xf32>
// CHECK: return %[[Y]]
// CHECK-NOT: moe.layer
// TILE-LABEL: func.func @gated_top2
// TILE: moe.dispatch %{{.*}} {num_experts = 8 : i64, row_tile = 16 : i64}
func.func @gated_top2(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>,
    %wg: tensor<8x128x64xf32>, %wu: tensor<8x128x64xf32>,
    %wd: tensor<8x64x128xf32>) -> tensor<?x64xf32> {
  %y = moe.layer %x router(%wr : tensor<8x64xf32>)
         gate_proj(%wg : tensor<8x128x64xf32>) up_proj(%wu : tensor<8x128x64xf32>)
         down_proj(%wd : tensor<8x64x128xf32>)
         {top_k = 2 : i64} : tensor<?x64xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Routing attributes and biases go to moe.gate, the activation to both
// expert ops, and the shared expert's output to moe.combine.
// CHECK-LABEL: func.func @deepseek_like
// CHECK-SAME: (%[[X:.*]]: tensor<?x32xbf16>, %[[WR:[^:]*]]: {{.*}}, %[[RB:[^:]*]]: {{.*}}, %[[SB:[^:]*]]: {{.*}}, %[[WU:[^:]*]]: {{.*}}, %[[WD:[^:]*]]: {{.*}}, %[[SU:[^:]*]]: {{.*}}, %[[SD:[^:]*]]: {{.*}}, %[[SG:[^:]*]]: {{.*}})
// CHECK: %[[IDS:.*]], %[[W:.*]] = moe.gate %[[X]], %[[WR]] router_bias(%[[RB]] : tensor<16xbf16>) selection_bias(%[[SB]] : tensor<16xbf16>) {capacity_factor = 1.250000e+00 : f64, group_score = #moe.group_score<max>, n_group = 4 : i64, normalize_top_k = false, routed_scaling_factor = 2.500000e+00 : f32, scoring = #moe.scoring<sigmoid>, top_k = 4 : i64, topk_group = 2 : i64} : tensor<?x32xbf16>, tensor<16x32xbf16> -> tensor<?x4xi32>, tensor<?x4xf32>
// CHECK: %{{.*}}, %[[OFFSETS:.*]], %[[SLOTS:.*]], %[[ROWS:.*]] = moe.dispatch %[[IDS]] {num_experts = 16 : i64}
// CHECK: %[[OUT:.*]] = moe.expert %[[X]], %[[SLOTS]], %[[OFFSETS]] up_proj(%[[WU]] : tensor<16x48x32xbf16>) down_proj(%[[WD]] : tensor<16x32x48xbf16>) {activation = #moe.activation<gelu_tanh>, slots_per_token = 4 : i64} : tensor<?x32xbf16>, tensor<?xi64>, tensor<17xi64> -> tensor<?x32xf32>
// CHECK: %[[SHARED:.*]] = moe.shared_expert %[[X]] up_proj(%[[SU]] : tensor<96x32xbf16>) down_proj(%[[SD]] : tensor<32x96xbf16>) expert_gate(%[[SG]] : tensor<32xbf16>) {activation = #moe.activation<gelu_tanh>} : tensor<?x32xbf16> -> tensor<?x32xf32>
// CHECK: moe.combine %[[OUT]], %[[ROWS]], %[[W]] shared(%[[SHARED]] : tensor<?x32xf32>) : tensor<?x32xf32>, tensor<?x4xi64>, tensor<?x4xf32> -> tensor<?x32xbf16>
func.func @deepseek_like(%x: tensor<?x32xbf16>, %wr: tensor<16x32xbf16>,
    %rb: tensor<16xbf16>, %sb: tensor<16xbf16>, %wu: tensor<16x48x32xbf16>,
    %wd: tensor<16x32x48xbf16>, %su: tensor<96x32xbf16>,
    %sd: tensor<32x96xbf16>, %sg: tensor<32xbf16>) -> tensor<?x32xbf16> {
  %y = moe.layer %x router(%wr : tensor<16x32xbf16>)
         router_bias(%rb : tensor<16xbf16>) selection_bias(%sb : tensor<16xbf16>)
         up_proj(%wu : tensor<16x48x32xbf16>) down_proj(%wd : tensor<16x32x48xbf16>)
         shared_up_proj(%su : tensor<96x32xbf16>)
         shared_down_proj(%sd : tensor<32x96xbf16>)
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

// Expert choice: every expert is a slot of every token.
// CHECK-LABEL: func.func @expert_choice
// CHECK: moe.gate {{.*}} -> tensor<5x4xi32>, tensor<5x4xf32>
// CHECK: moe.dispatch %{{.*}} {num_experts = 4 : i64} : tensor<5x4xi32> -> tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<5x4xi64>
// CHECK: moe.expert {{.*}} {slots_per_token = 4 : i64}
// CHECK: moe.shared_expert %{{.*}} gate_proj(
// CHECK: moe.combine {{.*}} -> tensor<5x16xf16>
func.func @expert_choice(%x: tensor<5x16xf16>,
    %wr: tensor<4x16xf16>, %wg: tensor<4x8x16xf16>, %wu: tensor<4x8x16xf16>,
    %wd: tensor<4x16x8xf16>, %sg: tensor<24x16xf16>, %su: tensor<24x16xf16>,
    %sd: tensor<16x24xf16>) -> tensor<5x16xf16> {
  %y = moe.layer %x router(%wr : tensor<4x16xf16>)
         gate_proj(%wg : tensor<4x8x16xf16>) up_proj(%wu : tensor<4x8x16xf16>)
         down_proj(%wd : tensor<4x16x8xf16>)
         shared_gate_proj(%sg : tensor<24x16xf16>)
         shared_up_proj(%su : tensor<24x16xf16>)
         shared_down_proj(%sd : tensor<16x24xf16>)
         {top_k = 1 : i64, routing = #moe.routing<expert_choice>,
          capacity_factor = 2.0 : f64}
         : tensor<5x16xf16> -> tensor<5x16xf16>
  return %y : tensor<5x16xf16>
}

// -----

// Hierarchical, three levels (4 -> 2 -> 3 experts, top 2 -> 1 -> 3): the gate
// routes among level 1's experts, one moe.refine per inner level routes one
// level down (biases by level, routing attributes from #moe.level, always
// unordered: inner levels are dropless), and dispatch, experts and combine
// run over the 24 leaves with 2·1·3 = 6 slots per token.
// CHECK-LABEL: func.func @three_levels
// CHECK-SAME: (%[[X:[^:]*]]: {{.*}}, %[[WR:[^:]*]]: {{.*}}, %[[WR2:[^:]*]]: {{.*}}, %[[WR3:[^:]*]]: {{.*}}, %[[RB2:[^:]*]]: {{.*}}, %[[SB3:[^:]*]]: {{.*}}, %[[WU:[^:]*]]: {{.*}}, %[[WD:[^:]*]]: {{.*}})
// CHECK: %[[IDS1:.*]], %[[W1:.*]] = moe.gate %[[X]], %[[WR]] {top_k = 2 : i64, unordered} : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
// CHECK: %[[IDS2:.*]], %[[W2:.*]] = moe.refine %[[X]], %[[IDS1]], %[[W1]], %[[WR2]] router_bias(%[[RB2]] : tensor<4x2xf32>) {scoring = #moe.scoring<sigmoid>, top_k = 1 : i64, unordered} : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x2x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
// CHECK: %[[IDS3:.*]], %[[W3:.*]] = moe.refine %[[X]], %[[IDS2]], %[[W2]], %[[WR3]] selection_bias(%[[SB3]] : tensor<8x3xf32>) {normalize_top_k = false, routed_scaling_factor = 2.000000e+00 : f32, top_k = 3 : i64, unordered} : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<8x3x16xf32> -> tensor<?x6xi32>, tensor<?x6xf32>
// CHECK: %{{.*}}, %[[OFFSETS:.*]], %[[SLOTS:.*]], %[[ROWS:.*]] = moe.dispatch %[[IDS3]] {num_experts = 24 : i64} : tensor<?x6xi32> -> tensor<24xi64>, tensor<25xi64>, tensor<?xi64>, tensor<?x6xi64>
// CHECK: %[[OUT:.*]] = moe.expert %[[X]], %[[SLOTS]], %[[OFFSETS]] up_proj(%[[WU]] : tensor<24x8x16xf32>) down_proj(%[[WD]] : tensor<24x16x8xf32>) {slots_per_token = 6 : i64}
// CHECK: moe.combine %[[OUT]], %[[ROWS]], %[[W3]] : tensor<?x16xf32>, tensor<?x6xi64>, tensor<?x6xf32> -> tensor<?x16xf32>
func.func @three_levels(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>,
    %wr2: tensor<4x2x16xf32>, %wr3: tensor<8x3x16xf32>, %rb2: tensor<4x2xf32>,
    %sb3: tensor<8x3xf32>, %wu: tensor<24x8x16xf32>,
    %wd: tensor<24x16x8xf32>) -> tensor<?x16xf32> {
  %y = moe.layer %x router(%wr : tensor<4x16xf32>)
         level_routers(%wr2, %wr3 : tensor<4x2x16xf32>, tensor<8x3x16xf32>)
         level_router_biases(%rb2 : tensor<4x2xf32>)
         level_selection_biases(%sb3 : tensor<8x3xf32>)
         up_proj(%wu : tensor<24x8x16xf32>) down_proj(%wd : tensor<24x16x8xf32>)
         {top_k = 2 : i64, levels = [
            #moe.level<top_k = 1, scoring = sigmoid, router_bias = true>,
            #moe.level<top_k = 3, normalize_top_k = false,
                       routed_scaling_factor = 2.0, selection_bias = true>]}
         : tensor<?x16xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Outer expert choice and a shared expert stay with level 1: the gate is
// ordered (expert choice has a capacity), the inner level is not.
// CHECK-LABEL: func.func @expert_choice_over_levels
// CHECK: moe.gate {{.*}} {capacity_factor = 1.000000e+00 : f64, routing = #moe.routing<expert_choice>, top_k = 1 : i64} : {{.*}} -> tensor<?x4xi32>, tensor<?x4xf32>
// CHECK: moe.refine {{.*}} {top_k = 2 : i64, unordered} : {{.*}} -> tensor<?x8xi32>, tensor<?x8xf32>
// CHECK: moe.dispatch %{{.*}} {num_experts = 16 : i64} : tensor<?x8xi32>
// CHECK: moe.expert {{.*}} {slots_per_token = 8 : i64}
// CHECK: %[[SHARED:.*]] = moe.shared_expert
// CHECK: moe.combine {{.*}} shared(%[[SHARED]] : tensor<?x16xf32>)
func.func @expert_choice_over_levels(%x: tensor<?x16xf32>,
    %wr: tensor<4x16xf32>, %wr2: tensor<4x4x16xf32>,
    %wg: tensor<16x8x16xf32>, %wu: tensor<16x8x16xf32>,
    %wd: tensor<16x16x8xf32>, %sg: tensor<12x16xf32>, %su: tensor<12x16xf32>,
    %sd: tensor<16x12xf32>) -> tensor<?x16xf32> {
  %y = moe.layer %x router(%wr : tensor<4x16xf32>)
         level_routers(%wr2 : tensor<4x4x16xf32>)
         gate_proj(%wg : tensor<16x8x16xf32>) up_proj(%wu : tensor<16x8x16xf32>)
         down_proj(%wd : tensor<16x16x8xf32>)
         shared_gate_proj(%sg : tensor<12x16xf32>)
         shared_up_proj(%su : tensor<12x16xf32>)
         shared_down_proj(%sd : tensor<16x12xf32>)
         {top_k = 1 : i64, routing = #moe.routing<expert_choice>,
          capacity_factor = 1.0 : f64, levels = [#moe.level<top_k = 2>]}
         : tensor<?x16xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// A shard's experts: the rows are routed already, so there is no gate; the
// plan comes from their ids over the shard's 2 experts, one slot per row,
// and combine scales each row by its weight (no shared expert).
// CHECK-LABEL: func.func @local_experts
// CHECK-SAME: (%[[X:.*]]: tensor<?x64xbf16>, %[[IDS:.*]]: tensor<?x1xi32>, %[[W:.*]]: tensor<?x1xf32>, %[[WG:.*]]: tensor<2x128x64xbf16>, %[[WU:.*]]: tensor<2x128x64xbf16>, %[[WD:.*]]: tensor<2x64x128xbf16>)
// CHECK-NOT: moe.gate
// CHECK: %{{.*}}, %[[OFFSETS:.*]], %[[SLOTS:.*]], %[[ROWS:.*]] = moe.dispatch %[[IDS]] {num_experts = 2 : i64} : tensor<?x1xi32> -> tensor<2xi64>, tensor<3xi64>, tensor<?xi64>, tensor<?x1xi64>
// CHECK: %[[OUT:.*]] = moe.expert %[[X]], %[[SLOTS]], %[[OFFSETS]] gate_proj(%[[WG]] : tensor<2x128x64xbf16>) up_proj(%[[WU]] : tensor<2x128x64xbf16>) down_proj(%[[WD]] : tensor<2x64x128xbf16>) {slots_per_token = 1 : i64} : tensor<?x64xbf16>, tensor<?xi64>, tensor<3xi64> -> tensor<?x64xf32>
// CHECK-NOT: moe.shared_expert
// CHECK: %[[Y:.*]] = moe.combine %[[OUT]], %[[ROWS]], %[[W]] : tensor<?x64xf32>, tensor<?x1xi64>, tensor<?x1xf32> -> tensor<?x64xf32>
// CHECK: return %[[Y]]
// CHECK-NOT: moe.local_experts
// TILE-LABEL: func.func @local_experts
// TILE: moe.dispatch %{{.*}} {num_experts = 2 : i64, row_tile = 16 : i64}
// TILE: moe.expert {{.*}} {slots_per_token = 1 : i64}
func.func @local_experts(%x: tensor<?x64xbf16>, %ids: tensor<?x1xi32>,
    %w: tensor<?x1xf32>, %wg: tensor<2x128x64xbf16>,
    %wu: tensor<2x128x64xbf16>, %wd: tensor<2x64x128xbf16>)
    -> tensor<?x64xf32> {
  %y = moe.local_experts %x, %ids, %w
         gate_proj(%wg : tensor<2x128x64xbf16>)
         up_proj(%wu : tensor<2x128x64xbf16>)
         down_proj(%wd : tensor<2x64x128xbf16>)
         : tensor<?x64xbf16>, tensor<?x1xi32>, tensor<?x1xf32>
         -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Not gated, a static row count and an activation: num_experts is the
// shard's 3, the activation goes to moe.expert, and the rows stay 6.
// CHECK-LABEL: func.func @local_experts_static
// CHECK: moe.dispatch %{{.*}} {num_experts = 3 : i64} : tensor<6x1xi32> -> tensor<3xi64>, tensor<4xi64>, tensor<?xi64>, tensor<6x1xi64>
// CHECK: moe.expert %{{.*}}, %{{.*}}, %{{.*}} up_proj(%{{.*}} : tensor<3x8x16xf32>) down_proj(%{{.*}} : tensor<3x16x8xf32>) {activation = #moe.activation<gelu>, slots_per_token = 1 : i64}
// CHECK: moe.combine {{.*}} : tensor<?x16xf32>, tensor<6x1xi64>, tensor<6x1xf32> -> tensor<6x16xf32>
// CHECK-NOT: moe.local_experts
// TILE-LABEL: func.func @local_experts_static
// TILE: moe.dispatch %{{.*}} {num_experts = 3 : i64, row_tile = 16 : i64}
func.func @local_experts_static(%x: tensor<6x16xf32>, %ids: tensor<6x1xi32>,
    %w: tensor<6x1xf32>, %wu: tensor<3x8x16xf32>, %wd: tensor<3x16x8xf32>)
    -> tensor<6x16xf32> {
  %y = moe.local_experts %x, %ids, %w
         up_proj(%wu : tensor<3x8x16xf32>) down_proj(%wd : tensor<3x16x8xf32>)
         {activation = #moe.activation<gelu>}
         : tensor<6x16xf32>, tensor<6x1xi32>, tensor<6x1xf32>
         -> tensor<6x16xf32>
  return %y : tensor<6x16xf32>
}

// -----

// GPT-OSS-like (docs/FAMILY-RULES.md): the routed experts' biases go to
// moe.expert; clamped SwiGLU and its parameters go to both expert ops; the
// shared expert takes no bias; combine weighs the rows as usual.
// CHECK-LABEL: func.func @expert_biases_clamped_swiglu
// CHECK-SAME: (%[[X:[^:]*]]: {{.*}}, %[[WR:[^:]*]]: {{.*}}, %[[RB:[^:]*]]: {{.*}}, %[[WG:[^:]*]]: {{.*}}, %[[WU:[^:]*]]: {{.*}}, %[[WD:[^:]*]]: {{.*}}, %[[BG:[^:]*]]: {{.*}}, %[[BU:[^:]*]]: {{.*}}, %[[BD:[^:]*]]: {{.*}}, %[[SG:[^:]*]]: {{.*}}, %[[SU:[^:]*]]: {{.*}}, %[[SD:[^:]*]]: {{.*}})
// CHECK: %[[IDS:.*]], %[[W:.*]] = moe.gate %[[X]], %[[WR]] router_bias(%[[RB]] : tensor<4xbf16>) {top_k = 2 : i64, unordered}
// CHECK: %{{.*}}, %[[OFFSETS:.*]], %[[SLOTS:.*]], %[[ROWS:.*]] = moe.dispatch %[[IDS]] {num_experts = 4 : i64}
// CHECK: %[[OUT:.*]] = moe.expert %[[X]], %[[SLOTS]], %[[OFFSETS]] gate_proj(%[[WG]] : tensor<4x8x16xbf16>) up_proj(%[[WU]] : tensor<4x8x16xbf16>) down_proj(%[[WD]] : tensor<4x16x8xbf16>) gate_bias(%[[BG]] : tensor<4x8xbf16>) up_bias(%[[BU]] : tensor<4x8xbf16>) down_bias(%[[BD]] : tensor<4x16xbf16>) {activation = #moe.activation<clamped_swiglu>, slots_per_token = 2 : i64, swiglu_alpha = 1.500000e+00 : f32, swiglu_limit = 3.000000e+00 : f32} : tensor<?x16xbf16>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
// CHECK: %[[SHARED:.*]] = moe.shared_expert %[[X]] gate_proj(%[[SG]] : tensor<12x16xbf16>) up_proj(%[[SU]] : tensor<12x16xbf16>) down_proj(%[[SD]] : tensor<16x12xbf16>) {activation = #moe.activation<clamped_swiglu>, swiglu_alpha = 1.500000e+00 : f32, swiglu_limit = 3.000000e+00 : f32} : tensor<?x16xbf16> -> tensor<?x16xf32>
// CHECK: %[[Y:.*]] = moe.combine %[[OUT]], %[[ROWS]], %[[W]] shared(%[[SHARED]] : tensor<?x16xf32>) : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xbf16>
// CHECK: return %[[Y]]
func.func @expert_biases_clamped_swiglu(%x: tensor<?x16xbf16>,
    %wr: tensor<4x16xbf16>, %rb: tensor<4xbf16>, %wg: tensor<4x8x16xbf16>,
    %wu: tensor<4x8x16xbf16>, %wd: tensor<4x16x8xbf16>,
    %bg: tensor<4x8xbf16>, %bu: tensor<4x8xbf16>, %bd: tensor<4x16xbf16>,
    %sg: tensor<12x16xbf16>, %su: tensor<12x16xbf16>,
    %sd: tensor<16x12xbf16>) -> tensor<?x16xbf16> {
  %y = moe.layer %x router(%wr : tensor<4x16xbf16>)
         router_bias(%rb : tensor<4xbf16>)
         gate_proj(%wg : tensor<4x8x16xbf16>) up_proj(%wu : tensor<4x8x16xbf16>)
         down_proj(%wd : tensor<4x16x8xbf16>)
         gate_bias(%bg : tensor<4x8xbf16>) up_bias(%bu : tensor<4x8xbf16>)
         down_bias(%bd : tensor<4x16xbf16>)
         shared_gate_proj(%sg : tensor<12x16xbf16>)
         shared_up_proj(%su : tensor<12x16xbf16>)
         shared_down_proj(%sd : tensor<16x12xbf16>)
         {top_k = 2 : i64, activation = #moe.activation<clamped_swiglu>,
          swiglu_alpha = 1.5 : f32, swiglu_limit = 3.0 : f32}
         : tensor<?x16xbf16> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// Llama-4-like: with router_weight_on_input the gate's weights scale the
// routed experts' input (moe.expert's input_weights) and combine adds the
// rows unweighted; the shared expert sees x.
// CHECK-LABEL: func.func @router_weight_on_input
// CHECK-SAME: (%[[X:[^:]*]]: {{.*}}, %[[WR:[^:]*]]: {{.*}}, %[[WG:[^:]*]]: {{.*}}, %[[WU:[^:]*]]: {{.*}}, %[[WD:[^:]*]]: {{.*}}, %[[SG:[^:]*]]: {{.*}}, %[[SU:[^:]*]]: {{.*}}, %[[SD:[^:]*]]: {{.*}})
// CHECK: %[[IDS:.*]], %[[W:.*]] = moe.gate %[[X]], %[[WR]] {normalize_top_k = false, scoring = #moe.scoring<sigmoid>, top_k = 1 : i64, unordered} : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x1xi32>, tensor<?x1xf32>
// CHECK: %{{.*}}, %[[OFFSETS:.*]], %[[SLOTS:.*]], %[[ROWS:.*]] = moe.dispatch %[[IDS]] {num_experts = 4 : i64}
// CHECK: %[[OUT:.*]] = moe.expert %[[X]], %[[SLOTS]], %[[OFFSETS]] gate_proj(%[[WG]] : tensor<4x8x16xf32>) up_proj(%[[WU]] : tensor<4x8x16xf32>) down_proj(%[[WD]] : tensor<4x16x8xf32>) input_weights(%[[W]] : tensor<?x1xf32>) {slots_per_token = 1 : i64} : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
// CHECK: %[[SHARED:.*]] = moe.shared_expert %[[X]] gate_proj(%[[SG]] : tensor<12x16xf32>)
// CHECK-NOT: input_weights
// CHECK: %[[Y:.*]] = moe.combine %[[OUT]], %[[ROWS]] shared(%[[SHARED]] : tensor<?x16xf32>) : tensor<?x16xf32>, tensor<?x1xi64> -> tensor<?x16xf32>
// CHECK: return %[[Y]]
func.func @router_weight_on_input(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>,
    %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>,
    %sg: tensor<12x16xf32>, %su: tensor<12x16xf32>, %sd: tensor<16x12xf32>)
    -> tensor<?x16xf32> {
  %y = moe.layer %x router(%wr : tensor<4x16xf32>)
         gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         shared_gate_proj(%sg : tensor<12x16xf32>)
         shared_up_proj(%su : tensor<12x16xf32>)
         shared_down_proj(%sd : tensor<16x12xf32>)
         {top_k = 1 : i64, scoring = #moe.scoring<sigmoid>,
          normalize_top_k = false, router_weight_on_input}
         : tensor<?x16xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// JetMoE-like: the output bias is combine's bias, in the layer's type.
// CHECK-LABEL: func.func @output_bias
// CHECK-SAME: %[[OB:[^:]*]]: tensor<16xf16>)
// CHECK: %[[IDS:.*]], %[[W:.*]] = moe.gate
// CHECK: %[[OUT:.*]] = moe.expert %{{.*}} up_proj(%{{.*}} : tensor<4x8x16xf16>) down_proj(%{{.*}} : tensor<4x16x8xf16>) {activation = #moe.activation<gelu>, slots_per_token = 2 : i64}
// CHECK: moe.combine %[[OUT]], %{{.*}}, %[[W]] bias(%[[OB]] : tensor<16xf16>) : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xf16>
func.func @output_bias(%x: tensor<?x16xf16>, %wr: tensor<4x16xf16>,
    %wu: tensor<4x8x16xf16>, %wd: tensor<4x16x8xf16>, %ob: tensor<16xf16>)
    -> tensor<?x16xf16> {
  %y = moe.layer %x router(%wr : tensor<4x16xf16>)
         up_proj(%wu : tensor<4x8x16xf16>) down_proj(%wd : tensor<4x16x8xf16>)
         output_bias(%ob : tensor<16xf16>)
         {top_k = 2 : i64, activation = #moe.activation<gelu>}
         : tensor<?x16xf16> -> tensor<?x16xf16>
  return %y : tensor<?x16xf16>
}

// -----

// The p-norm and sparsemixer (DBRX, PhiMoE) go to moe.gate, and an inner
// level's to its moe.refine.
// CHECK-LABEL: func.func @p_norm_sparsemixer
// CHECK: %[[IDS:.*]], %[[W:.*]] = moe.gate %{{.*}}, %{{.*}} {normalize_p = 2.000000e+00 : f32, scoring = #moe.scoring<sparsemixer>, sparsemixer_eps = 2.000000e-01 : f32, top_k = 2 : i64, unordered} : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
// CHECK: %[[IDS2:.*]], %[[W2:.*]] = moe.refine %{{.*}}, %[[IDS]], %[[W]], %{{.*}} {normalize_p = 3.000000e+00 : f32, normalize_top_k = false, scoring = #moe.scoring<sparsemixer>, sparsemixer_eps = 5.000000e-02 : f32, top_k = 2 : i64, unordered} : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x4x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
// CHECK: moe.dispatch %[[IDS2]] {num_experts = 16 : i64}
// CHECK: moe.expert {{.*}} {slots_per_token = 4 : i64}
// CHECK: moe.combine %{{.*}}, %{{.*}}, %[[W2]] :
func.func @p_norm_sparsemixer(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>,
    %wr2: tensor<4x4x16xf32>, %wu: tensor<16x8x16xf32>,
    %wd: tensor<16x16x8xf32>) -> tensor<?x16xf32> {
  %y = moe.layer %x router(%wr : tensor<4x16xf32>)
         level_routers(%wr2 : tensor<4x4x16xf32>)
         up_proj(%wu : tensor<16x8x16xf32>) down_proj(%wd : tensor<16x16x8xf32>)
         {top_k = 2 : i64, scoring = #moe.scoring<sparsemixer>,
          sparsemixer_eps = 0.2 : f32, normalize_p = 2.0 : f32, levels = [
            #moe.level<top_k = 2, scoring = sparsemixer, sparsemixer_eps = 0.05,
                       normalize_p = 3.0, normalize_top_k = false>]}
         : tensor<?x16xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Router weights on the input over a hierarchy: the leaf weights (the last
// moe.refine's) scale the experts' input; combine takes none.
// CHECK-LABEL: func.func @router_weight_on_input_levels
// CHECK: moe.gate
// CHECK: %[[IDS2:.*]], %[[W2:.*]] = moe.refine
// CHECK: %{{.*}}, %[[OFFSETS:.*]], %[[SLOTS:.*]], %[[ROWS:.*]] = moe.dispatch %[[IDS2]]
// CHECK: %[[OUT:.*]] = moe.expert %{{.*}}, %[[SLOTS]], %[[OFFSETS]] up_proj({{.*}}) down_proj({{.*}}) input_weights(%[[W2]] : tensor<?x2xf32>) {slots_per_token = 2 : i64}
// CHECK: moe.combine %[[OUT]], %[[ROWS]] : tensor<?x16xf32>, tensor<?x2xi64> -> tensor<?x16xf32>
func.func @router_weight_on_input_levels(%x: tensor<?x16xf32>,
    %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>,
    %wd: tensor<8x16x8xf32>) -> tensor<?x16xf32> {
  %y = moe.layer %x router(%wr : tensor<4x16xf32>)
         level_routers(%wr2 : tensor<4x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, router_weight_on_input,
          levels = [#moe.level<top_k = 1>]}
         : tensor<?x16xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// A shard's experts with biases, clamped SwiGLU and the routing weight on
// the input: moe.expert takes the biases and the rows' weights, and combine
// takes no weights.
// CHECK-LABEL: func.func @local_experts_family_rules
// CHECK-SAME: (%[[X:[^:]*]]: {{.*}}, %[[IDS:[^:]*]]: {{.*}}, %[[W:[^:]*]]: {{.*}}, %[[WG:[^:]*]]: {{.*}}, %[[WU:[^:]*]]: {{.*}}, %[[WD:[^:]*]]: {{.*}}, %[[BG:[^:]*]]: {{.*}}, %[[BU:[^:]*]]: {{.*}}, %[[BD:[^:]*]]: {{.*}})
// CHECK: %{{.*}}, %[[OFFSETS:.*]], %[[SLOTS:.*]], %[[ROWS:.*]] = moe.dispatch %[[IDS]] {num_experts = 2 : i64}
// CHECK: %[[OUT:.*]] = moe.expert %[[X]], %[[SLOTS]], %[[OFFSETS]] gate_proj(%[[WG]] : tensor<2x128x64xbf16>) up_proj(%[[WU]] : tensor<2x128x64xbf16>) down_proj(%[[WD]] : tensor<2x64x128xbf16>) gate_bias(%[[BG]] : tensor<2x128xbf16>) up_bias(%[[BU]] : tensor<2x128xbf16>) down_bias(%[[BD]] : tensor<2x64xbf16>) input_weights(%[[W]] : tensor<?x1xf32>) {activation = #moe.activation<clamped_swiglu>, slots_per_token = 1 : i64, swiglu_limit = 4.000000e+00 : f32}
// CHECK: %[[Y:.*]] = moe.combine %[[OUT]], %[[ROWS]] : tensor<?x64xf32>, tensor<?x1xi64> -> tensor<?x64xf32>
// CHECK: return %[[Y]]
// CHECK-NOT: moe.local_experts
func.func @local_experts_family_rules(%x: tensor<?x64xbf16>,
    %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %wg: tensor<2x128x64xbf16>,
    %wu: tensor<2x128x64xbf16>, %wd: tensor<2x64x128xbf16>,
    %bg: tensor<2x128xbf16>, %bu: tensor<2x128xbf16>, %bd: tensor<2x64xbf16>)
    -> tensor<?x64xf32> {
  %y = moe.local_experts %x, %ids, %w
         gate_proj(%wg : tensor<2x128x64xbf16>)
         up_proj(%wu : tensor<2x128x64xbf16>)
         down_proj(%wd : tensor<2x64x128xbf16>)
         gate_bias(%bg : tensor<2x128xbf16>) up_bias(%bu : tensor<2x128xbf16>)
         down_bias(%bd : tensor<2x64xbf16>)
         {activation = #moe.activation<clamped_swiglu>, swiglu_limit = 4.0 : f32,
          router_weight_on_input}
         : tensor<?x64xbf16>, tensor<?x1xi32>, tensor<?x1xf32>
         -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Without router_weight_on_input a shard's biased experts are weighted by
// combine as before.
// CHECK-LABEL: func.func @local_experts_biases
// CHECK-SAME: (%[[X:[^:]*]]: {{.*}}, %[[IDS:[^:]*]]: {{.*}}, %[[W:[^:]*]]: {{.*}}, %[[WU:[^:]*]]: {{.*}}, %[[WD:[^:]*]]: {{.*}}, %[[BD:[^:]*]]: {{.*}})
// CHECK: %[[OUT:.*]] = moe.expert %[[X]], %{{.*}}, %{{.*}} up_proj(%[[WU]] : tensor<3x8x16xf32>) down_proj(%[[WD]] : tensor<3x16x8xf32>) down_bias(%[[BD]] : tensor<3x16xf32>) {slots_per_token = 1 : i64}
// CHECK: moe.combine %[[OUT]], %{{.*}}, %[[W]] : tensor<?x16xf32>, tensor<6x1xi64>, tensor<6x1xf32> -> tensor<6x16xf32>
func.func @local_experts_biases(%x: tensor<6x16xf32>, %ids: tensor<6x1xi32>,
    %w: tensor<6x1xf32>, %wu: tensor<3x8x16xf32>, %wd: tensor<3x16x8xf32>,
    %bd: tensor<3x16xf32>) -> tensor<6x16xf32> {
  %y = moe.local_experts %x, %ids, %w
         up_proj(%wu : tensor<3x8x16xf32>) down_proj(%wd : tensor<3x16x8xf32>)
         down_bias(%bd : tensor<3x16xf32>)
         : tensor<6x16xf32>, tensor<6x1xi32>, tensor<6x1xf32>
         -> tensor<6x16xf32>
  return %y : tensor<6x16xf32>
}

// RUN: moe-opt %s -split-input-file -verify-diagnostics
// Every verifier rule of the moe dialect, one case each.

func.func @layer_router_element_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xbf16>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'router' element type 'bf16' must equal the input's element type 'f32'}}
  %y = moe.layer %x router(%wr : tensor<4x16xbf16>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_router_static_shape(%x: tensor<?x16xf32>, %wr: tensor<?x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'router' must have a static shape}}
  %y = moe.layer %x router(%wr : tensor<?x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_router_bias_element_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %rb: tensor<4xf16>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'router_bias' element type 'f16' must equal the input's element type 'f32'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) router_bias(%rb : tensor<4xf16>) gate_proj(%wg : tensor<4x8x16xf32>)
         up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_input_static_hidden(%x: tensor<?x?xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'input' must have a static hidden size (dimension 1)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x?xf32> -> tensor<?x?xf32>
  return
}

// -----

func.func @layer_router_hidden(%x: tensor<?x16xf32>, %wr: tensor<4x12xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'router' dimension 1 is 12 but must equal the hidden size (16)}}
  %y = moe.layer %x router(%wr : tensor<4x12xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_router_bias_experts(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %rb: tensor<5xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'router_bias' dimension 0 is 5 but must equal the number of experts (4)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) router_bias(%rb : tensor<5xf32>) gate_proj(%wg : tensor<4x8x16xf32>)
         up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_selection_bias_experts(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %sb: tensor<3xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'selection_bias' dimension 0 is 3 but must equal the number of experts (4)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) selection_bias(%sb : tensor<3xf32>) gate_proj(%wg : tensor<4x8x16xf32>)
         up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_n_group_divides(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'n_group' (3) must divide the number of experts (4)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 1 : i64, n_group = 3 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_topk_group_le_n_group(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'topk_group' (3) must not exceed 'n_group' (2)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 1 : i64, n_group = 2 : i64, topk_group = 3 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_top2_sum_group_size(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'group_score' top2_sum needs at least 2 experts per group, but groups have 1}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 1 : i64, n_group = 4 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_scaling_positive(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'routed_scaling_factor' (0.000000e+00) must be finite and positive}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64, routed_scaling_factor = 0.0 : f32} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_capacity_not_negative(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'capacity_factor' (-1.000000e+00) must be finite and not negative}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64, capacity_factor = -1.0 : f64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_top_k_le_experts(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'top_k' (5) must not exceed the experts routing may choose from (4)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 5 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_top_k_le_allowed_groups(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'top_k' (3) must not exceed the experts routing may choose from (2)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 3 : i64, n_group = 2 : i64, topk_group = 1 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_top_k_positive(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+3 {{attribute 'top_k' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 0 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_n_group_positive(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+3 {{attribute 'n_group' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 1 : i64, n_group = 0 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_expert_choice_capacity(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'routing' expert_choice needs a positive 'capacity_factor'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 1 : i64, routing = #moe.routing<expert_choice>} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_expert_choice_softmax(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'routing' expert_choice needs softmax 'scoring'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 1 : i64, routing = #moe.routing<expert_choice>, capacity_factor = 1.0 : f64, scoring = #moe.scoring<sigmoid>} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_expert_choice_groups(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'routing' expert_choice does not take grouped routing ('n_group' must be 1)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 1 : i64, routing = #moe.routing<expert_choice>, capacity_factor = 1.0 : f64, n_group = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_expert_choice_selection_bias(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %sb: tensor<4xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'routing' expert_choice does not take a 'selection_bias'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) selection_bias(%sb : tensor<4xf32>) gate_proj(%wg : tensor<4x8x16xf32>)
         up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 1 : i64, routing = #moe.routing<expert_choice>, capacity_factor = 1.0 : f64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_up_proj_experts(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<3x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'up_proj' dimension 0 is 3 but must equal the number of experts (4)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<3x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_up_proj_hidden(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x15xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'up_proj' dimension 2 is 15 but must equal the hidden size (16)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x15xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_down_proj_experts(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'down_proj' dimension 0 is 2 but must equal the number of experts (4)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<2x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_down_proj_hidden(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x8x8xf32>) {
  // expected-error @+1 {{'down_proj' dimension 1 is 8 but must equal the hidden size (16)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x8x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_down_proj_intermediate(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x9xf32>) {
  // expected-error @+1 {{'down_proj' dimension 2 is 9 but must equal the intermediate size (8)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x9xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_gate_proj_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x7x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'gate_proj' type 'tensor<4x7x16xf32>' must equal 'up_proj' type 'tensor<4x8x16xf32>'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x7x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

// Projections may be in another type than the input's (bf16 weights with
// f32 activations), but gate and up in the same one.
func.func @layer_up_proj_element_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xbf16>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'gate_proj' type 'tensor<4x8x16xf32>' must equal 'up_proj' type 'tensor<4x8x16xbf16>'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xbf16>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_down_proj_static(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x?xf32>) {
  // expected-error @+1 {{'down_proj' must have a static shape}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x?xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_input_element_type(%x: tensor<?x16xi32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{operand #0 must be 2D tensor of 32-bit float or bfloat16 type or 16-bit float values, but got 'tensor<?x16xi32>'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xi32> -> tensor<?x16xi32>
  return
}

// -----

func.func @layer_shared_pair(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %su: tensor<32x16xf32>) {
  // expected-error @+1 {{'shared_up_proj' and 'shared_down_proj' must be given together}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         shared_up_proj(%su : tensor<32x16xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_shared_gate_needs_shared(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %seg: tensor<16xf32>) {
  // expected-error @+1 {{'shared_gate_proj' and 'shared_expert_gate' need a shared expert ('shared_up_proj')}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>) shared_expert_gate(%seg : tensor<16xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_shared_gated_like_routed(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %su: tensor<32x16xf32>, %sd: tensor<16x32xf32>) {
  // expected-error @+1 {{the shared expert must be gated ('shared_gate_proj') exactly when the routed experts are ('gate_proj')}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>) shared_up_proj(%su : tensor<32x16xf32>) shared_down_proj(%sd : tensor<16x32xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_shared_up_hidden(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %su: tensor<32x8xf32>, %sd: tensor<16x32xf32>) {
  // expected-error @+1 {{'shared_up_proj' dimension 1 is 8 but must equal the hidden size (16)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         shared_up_proj(%su : tensor<32x8xf32>) shared_down_proj(%sd : tensor<16x32xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_shared_down_hidden(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %su: tensor<32x16xf32>, %sd: tensor<8x32xf32>) {
  // expected-error @+1 {{'shared_down_proj' dimension 0 is 8 but must equal the hidden size (16)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         shared_up_proj(%su : tensor<32x16xf32>) shared_down_proj(%sd : tensor<8x32xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_shared_down_intermediate(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %su: tensor<32x16xf32>, %sd: tensor<16x31xf32>) {
  // expected-error @+1 {{'shared_down_proj' dimension 1 is 31 but must equal the shared intermediate size (32)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         shared_up_proj(%su : tensor<32x16xf32>) shared_down_proj(%sd : tensor<16x31xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_shared_gate_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %sg: tensor<30x16xf32>, %su: tensor<32x16xf32>, %sd: tensor<16x32xf32>) {
  // expected-error @+1 {{'shared_gate_proj' type 'tensor<30x16xf32>' must equal 'shared_up_proj' type 'tensor<32x16xf32>'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>) shared_gate_proj(%sg : tensor<30x16xf32>) shared_up_proj(%su : tensor<32x16xf32>) shared_down_proj(%sd : tensor<16x32xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_shared_expert_gate_hidden(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %su: tensor<32x16xf32>, %sd: tensor<16x32xf32>, %seg: tensor<15xf32>) {
  // expected-error @+1 {{'shared_expert_gate' dimension 0 is 15 but must equal the hidden size (16)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         shared_up_proj(%su : tensor<32x16xf32>) shared_down_proj(%sd : tensor<16x32xf32>) shared_expert_gate(%seg : tensor<15xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_shared_element_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %sg: tensor<32x16xf32>, %su: tensor<32x16xf16>, %sd: tensor<16x32xf32>) {
  // expected-error @+1 {{'shared_gate_proj' type 'tensor<32x16xf32>' must equal 'shared_up_proj' type 'tensor<32x16xf16>'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         shared_gate_proj(%sg : tensor<32x16xf32>) shared_up_proj(%su : tensor<32x16xf16>) shared_down_proj(%sd : tensor<16x32xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_result_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{result type 'tensor<?x16xbf16>' must equal the input type 'tensor<?x16xf32>'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xbf16>
  return
}

// -----

func.func @gate_routing_rules_apply(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>) {
  // expected-error @+1 {{'top_k' (5) must not exceed the experts routing may choose from (4)}}
  %ids, %w = moe.gate %x, %wr {top_k = 5 : i64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x5xi32>, tensor<?x5xf32>
  return
}

// -----

func.func @gate_selection_bias_element_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %sb: tensor<4xbf16>) {
  // expected-error @+1 {{'selection_bias' element type 'bf16' must equal the input's element type 'f32'}}
  %ids, %w = moe.gate %x, %wr selection_bias(%sb : tensor<4xbf16>) {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @gate_result_shapes(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>) {
  // expected-error @+1 {{'ids' and 'weights' must have the same shape}}
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x3xf32>
  return
}

// -----

func.func @gate_ids_tokens(%x: tensor<3x16xf32>, %wr: tensor<4x16xf32>) {
  // expected-error @+1 {{'ids' dimension 0 is 4 but must equal the number of tokens (3)}}
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<3x16xf32>, tensor<4x16xf32> -> tensor<4x2xi32>, tensor<4x2xf32>
  return
}

// -----

func.func @gate_ids_top_k(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>) {
  // expected-error @+1 {{'ids' dimension 1 is 3 but must equal 'top_k' (2)}}
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x3xi32>, tensor<?x3xf32>
  return
}

// -----

func.func @gate_ids_expert_choice(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>) {
  // expected-error @+1 {{'ids' dimension 1 is 2 but must equal the number of experts (expert choice) (4)}}
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64, routing = #moe.routing<expert_choice>, capacity_factor = 1.0 : f64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @gate_ids_element_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>) {
  // expected-error @+1 {{result #0 must be 2D tensor of 32-bit signless integer values, but got 'tensor<?x2xi64>'}}
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi64>, tensor<?x2xf32>
  return
}

// -----

func.func @layer_level_routers_count(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>) {
  // expected-error @+1 {{'level_routers' has 1 operands but 'levels' describes 2 inner levels}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1>, #moe.level<top_k = 1>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_router_biases_count(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>) {
  // expected-error @+1 {{'level_router_biases' has 0 operands but 1 of 'levels' have a 'router_bias'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1, router_bias = true>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_selection_biases_count(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>, %sb: tensor<4x2xf32>) {
  // expected-error @+1 {{'level_selection_biases' has 1 operands but 0 of 'levels' have a 'selection_bias'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>) level_selection_biases(%sb : tensor<4x2xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_router_element_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>, %r: tensor<4x2x16xbf16>) {
  // expected-error @+1 {{'level_routers[0]' element type 'bf16' must equal the input's element type 'f32'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%r : tensor<4x2x16xbf16>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_router_parents(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>, %r: tensor<3x2x16xf32>) {
  // expected-error @+1 {{'level_routers[0]' dimension 0 is 3 but must equal the number of experts of the level above (4)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%r : tensor<3x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_router_hidden(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>, %r: tensor<4x2x12xf32>) {
  // expected-error @+1 {{'level_routers[0]' dimension 2 is 12 but must equal the hidden size (16)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%r : tensor<4x2x12xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_router_bias_parents(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>, %rb: tensor<2x2xf32>) {
  // expected-error @+1 {{'level_router_biases[0]' dimension 0 is 2 but must equal the number of experts of the level above (4)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>) level_router_biases(%rb : tensor<2x2xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1, router_bias = true>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_selection_bias_experts(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>, %sb: tensor<4x3xf32>) {
  // expected-error @+1 {{'level_selection_biases[0]' dimension 1 is 3 but must equal the number of experts of the level (2)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>) level_selection_biases(%sb : tensor<4x3xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1, selection_bias = true>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_top_k_positive(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>) {
  // expected-error @+1 {{'levels[0].top_k' (0) must be positive}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 0>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_top_k(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>) {
  // expected-error @+1 {{'levels[0].top_k' (3) must not exceed the experts routing may choose from (2)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 3>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_n_group(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>) {
  // expected-error @+1 {{'levels[0].n_group' (4) must divide the number of experts (2)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1, n_group = 4>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_topk_group(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>) {
  // expected-error @+1 {{'levels[0].topk_group' (3) must not exceed 'levels[0].n_group' (2)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1, n_group = 2, topk_group = 3, group_score = max>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_group_score(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>) {
  // expected-error @+1 {{'levels[0].group_score' top2_sum needs at least 2 experts per group, but groups have 1}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1, n_group = 2>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_scaling(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>) {
  // expected-error @+1 {{'levels[0].routed_scaling_factor' (-1.000000e+00) must be finite and positive}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1, routed_scaling_factor = -1.0>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_leaf_experts(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<8x16x8xf32>) {
  // expected-error @+1 {{'up_proj' dimension 0 is 4 but must equal the number of leaf experts (8)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>)
         up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_bool(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>) {
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
  // expected-error @+2 {{expected 'true' or 'false'}}
  // expected-error @+1 {{failed to parse MoE_LevelAttr parameter 'router_bias' which is to be a `bool`}}
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1, router_bias = 1>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @gate_unordered_capacity(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>) {
  // expected-error @+1 {{'unordered' cannot be set with a 'capacity_factor': capacity grants slots in their order}}
  %ids, %w = moe.gate %x, %wr {top_k = 4 : i64, unordered, capacity_factor = 1.0 : f64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @refine_input_static_hidden(%x: tensor<?x?xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<4x3x16xf32>) {
  // expected-error @+1 {{'input' must have a static hidden size (dimension 1)}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 2 : i64}
      : tensor<?x?xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x3x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @refine_router_hidden(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<4x3x12xf32>) {
  // expected-error @+1 {{'router' dimension 2 is 12 but must equal the hidden size (16)}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x3x12xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @refine_router_static_shape(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<?x3x16xf32>) {
  // expected-error @+1 {{'router' must have a static shape}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<?x3x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @refine_router_bias_parents(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<4x3x16xf32>, %b: tensor<5x3xf32>) {
  // expected-error @+1 {{'router_bias' dimension 0 is 5 but must equal the number of experts of the level above (4)}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr router_bias(%b : tensor<5x3xf32>) {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x3x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @refine_selection_bias_experts(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<4x3x16xf32>, %b: tensor<4x2xf32>) {
  // expected-error @+1 {{'selection_bias' dimension 1 is 2 but must equal the number of experts of the level (3)}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr selection_bias(%b : tensor<4x2xf32>) {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x3x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @refine_parent_shapes(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x3xf32>, %wr: tensor<4x3x16xf32>) {
  // expected-error @+1 {{'parent_ids' and 'parent_weights' must have the same shape}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x3xf32>, tensor<4x3x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @refine_result_shapes(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<4x3x16xf32>) {
  // expected-error @+1 {{'ids' and 'weights' must have the same shape}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x3x16xf32> -> tensor<?x4xi32>, tensor<?x6xf32>
  return
}

// -----

func.func @refine_parent_tokens(%x: tensor<3x16xf32>, %ids: tensor<4x2xi32>, %w: tensor<4x2xf32>, %wr: tensor<4x3x16xf32>) {
  // expected-error @+1 {{'parent_ids' dimension 0 is 4 but must equal the number of tokens (3)}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 2 : i64}
      : tensor<3x16xf32>, tensor<4x2xi32>, tensor<4x2xf32>, tensor<4x3x16xf32> -> tensor<3x4xi32>, tensor<3x4xf32>
  return
}

// -----

func.func @refine_ids_tokens(%x: tensor<3x16xf32>, %ids: tensor<3x2xi32>, %w: tensor<3x2xf32>, %wr: tensor<4x3x16xf32>) {
  // expected-error @+1 {{'ids' dimension 0 is 5 but must equal the number of tokens (3)}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 2 : i64}
      : tensor<3x16xf32>, tensor<3x2xi32>, tensor<3x2xf32>, tensor<4x3x16xf32> -> tensor<5x4xi32>, tensor<5x4xf32>
  return
}

// -----

func.func @refine_ids_width(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<4x3x16xf32>) {
  // expected-error @+1 {{'ids' dimension 1 is 2 but must equal 'parent_ids' dimension 1 times 'top_k' (4)}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x3x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @refine_top_k(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<4x3x16xf32>) {
  // expected-error @+1 {{'top_k' (4) must not exceed the experts routing may choose from (3)}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 4 : i64}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x3x16xf32> -> tensor<?x8xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @refine_n_group(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<4x3x16xf32>) {
  // expected-error @+1 {{'n_group' (2) must divide the number of experts (3)}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 2 : i64, n_group = 2 : i64}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x3x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @dispatch_counts(%ids: tensor<?x2xi32>) {
  // expected-error @+1 {{'counts' dimension 0 is 3 but must equal 'num_experts' (4)}}
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64}
      : tensor<?x2xi32> -> tensor<3xi64>, tensor<5xi64>, tensor<?xi64>, tensor<?x2xi64>
  return
}

// -----

func.func @dispatch_offsets(%ids: tensor<?x2xi32>) {
  // expected-error @+1 {{'offsets' dimension 0 is 4 but must equal 'num_experts' + 1 (5)}}
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64}
      : tensor<?x2xi32> -> tensor<4xi64>, tensor<4xi64>, tensor<?xi64>, tensor<?x2xi64>
  return
}

// -----

func.func @dispatch_slot_rows(%ids: tensor<?x2xi32>) {
  // expected-error @+1 {{'slot_rows' type 'tensor<?x3xi64>' must have the shape of 'ids' 'tensor<?x2xi32>'}}
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64}
      : tensor<?x2xi32> -> tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<?x3xi64>
  return
}

// -----

func.func @dispatch_num_experts_positive(%ids: tensor<?x2xi32>) {
  // expected-error @+1 {{attribute 'num_experts' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 0 : i64}
      : tensor<?x2xi32> -> tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<?x2xi64>
  return
}

// -----

func.func @dispatch_row_tile_positive(%ids: tensor<?x2xi32>) {
  // expected-error @+1 {{attribute 'row_tile' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64, row_tile = 0 : i64}
      : tensor<?x2xi32> -> tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<?x2xi64>
  return
}

// -----

// The routing plan's indices are 64-bit (T * K slots may pass 2^31); the
// expert ids it is built from stay 32-bit.
func.func @dispatch_plan_element_type(%ids: tensor<?x2xi32>) {
  // expected-error @+1 {{result #0 must be 1D tensor of 64-bit signless integer values, but got 'tensor<4xi32>'}}
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64}
      : tensor<?x2xi32> -> tensor<4xi32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  return
}

// -----

func.func @dispatch_slot_rows_element_type(%ids: tensor<?x2xi32>) {
  // expected-error @+1 {{result #3 must be 2D tensor of 64-bit signless integer values, but got 'tensor<?x2xi32>'}}
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64}
      : tensor<?x2xi32> -> tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<?x2xi32>
  return
}

// -----

func.func @dispatch_ids_element_type(%ids: tensor<?x2xi64>) {
  // expected-error @+1 {{operand #0 must be 2D tensor of 32-bit signless integer values, but got 'tensor<?x2xi64>'}}
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64}
      : tensor<?x2xi64> -> tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<?x2xi64>
  return
}

// -----

func.func @expert_static_hidden(%x: tensor<?x?xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'input' must have a static hidden size (dimension 1)}}
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
      {slots_per_token = 2 : i64} : tensor<?x?xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_offsets(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<4xi64>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'offsets' dimension 0 is 4 but must equal the number of experts + 1 (5)}}
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
      {slots_per_token = 2 : i64} : tensor<?x16xf32>, tensor<?xi64>, tensor<4xi64> -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_output_rows(%x: tensor<?x16xf32>, %slots: tensor<6xi64>, %offsets: tensor<5xi64>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'output' dimension 0 is 7 but must equal the number of plan rows ('slots') (6)}}
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
      {slots_per_token = 2 : i64} : tensor<?x16xf32>, tensor<6xi64>, tensor<5xi64> -> tensor<7x16xf32>
  return
}

// -----

func.func @expert_output_hidden(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'output' dimension 1 is 15 but must equal the hidden size (16)}}
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
      {slots_per_token = 2 : i64} : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x15xf32>
  return
}

// -----

func.func @expert_weights(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>, %wu: tensor<4x8x12xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'up_proj' dimension 2 is 12 but must equal the hidden size (16)}}
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x12xf32>) down_proj(%wd : tensor<4x16x8xf32>)
      {slots_per_token = 2 : i64} : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_output_f32(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{result #0 must be 2D tensor of 32-bit float values, but got 'tensor<?x16xbf16>'}}
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
      {slots_per_token = 2 : i64} : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xbf16>
  return
}

// -----

func.func @expert_slots_element_type(%x: tensor<?x16xf32>, %slots: tensor<?xi32>, %offsets: tensor<5xi64>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{operand #1 must be 1D tensor of 64-bit signless integer values, but got 'tensor<?xi32>'}}
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
      {slots_per_token = 2 : i64} : tensor<?x16xf32>, tensor<?xi32>, tensor<5xi64> -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_offsets_element_type(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{operand #2 must be 1D tensor of 64-bit signless integer values, but got 'tensor<5xi32>'}}
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
      {slots_per_token = 2 : i64} : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi32> -> tensor<?x16xf32>
  return
}

// -----

func.func @shared_static_hidden(%x: tensor<?x?xf32>, %su: tensor<32x16xf32>, %sd: tensor<16x32xf32>) {
  // expected-error @+1 {{'input' must have a static hidden size (dimension 1)}}
  %s = moe.shared_expert %x up_proj(%su : tensor<32x16xf32>) down_proj(%sd : tensor<16x32xf32>)
      : tensor<?x?xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @shared_output_tokens(%x: tensor<3x16xf32>, %su: tensor<32x16xf32>, %sd: tensor<16x32xf32>) {
  // expected-error @+1 {{'output' dimension 0 is 4 but must equal the number of tokens (3)}}
  %s = moe.shared_expert %x up_proj(%su : tensor<32x16xf32>) down_proj(%sd : tensor<16x32xf32>)
      : tensor<3x16xf32> -> tensor<4x16xf32>
  return
}

// -----

func.func @shared_output_hidden(%x: tensor<?x16xf32>, %su: tensor<32x16xf32>, %sd: tensor<16x32xf32>) {
  // expected-error @+1 {{'output' dimension 1 is 8 but must equal the hidden size (16)}}
  %s = moe.shared_expert %x up_proj(%su : tensor<32x16xf32>) down_proj(%sd : tensor<16x32xf32>)
      : tensor<?x16xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @shared_weights(%x: tensor<?x16xf32>, %su: tensor<32x16xf32>, %sd: tensor<16x30xf32>) {
  // expected-error @+1 {{'down_proj' dimension 1 is 30 but must equal the shared intermediate size (32)}}
  %s = moe.shared_expert %x up_proj(%su : tensor<32x16xf32>) down_proj(%sd : tensor<16x30xf32>)
      : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_weights_shape(%e: tensor<?x16xf32>, %rows: tensor<?x2xi64>, %w: tensor<?x3xf32>) {
  // expected-error @+1 {{'weights' type 'tensor<?x3xf32>' must have the shape of 'slot_rows' 'tensor<?x2xi64>'}}
  %y = moe.combine %e, %rows, %w
      : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x3xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_expert_output_hidden(%e: tensor<?x8xf32>, %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'expert_output' dimension 1 is 8 but must equal the output's hidden size (16)}}
  %y = moe.combine %e, %rows, %w
      : tensor<?x8xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_tokens(%e: tensor<?x16xf32>, %rows: tensor<5x2xi64>, %w: tensor<5x2xf32>) {
  // expected-error @+1 {{'slot_rows' dimension 0 is 5 but must equal the number of output tokens (4)}}
  %y = moe.combine %e, %rows, %w
      : tensor<?x16xf32>, tensor<5x2xi64>, tensor<5x2xf32> -> tensor<4x16xf32>
  return
}

// -----

func.func @combine_shared_shape(%e: tensor<?x16xf32>, %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>, %s: tensor<?x8xf32>) {
  // expected-error @+1 {{'shared' type 'tensor<?x8xf32>' must have the shape of the result 'tensor<?x16xf32>'}}
  %y = moe.combine %e, %rows, %w shared(%s : tensor<?x8xf32>)
      : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_slot_rows_element_type(%e: tensor<?x16xf32>, %rows: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{operand #1 must be 2D tensor of 64-bit signless integer values, but got 'tensor<?x2xi32>'}}
  %y = moe.combine %e, %rows, %w
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @local_experts_static_hidden(%x: tensor<?x?xf32>, %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'input' must have a static hidden size (dimension 1)}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x16x8xf32>)
      : tensor<?x?xf32>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @local_experts_down_proj_static(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x16x?xf32>) {
  // expected-error @+1 {{'down_proj' must have a static shape}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x16x?xf32>)
      : tensor<?x16xf32>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @local_experts_up_proj_hidden(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %wu: tensor<2x8x12xf32>, %wd: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'up_proj' dimension 2 is 12 but must equal the hidden size (16)}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x12xf32>) down_proj(%wd : tensor<2x16x8xf32>)
      : tensor<?x16xf32>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x16xf32>
  return
}

// -----

// The shard's expert count is up_proj's: down_proj must hold as many.
func.func @local_experts_down_proj_experts(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<3x16x8xf32>) {
  // expected-error @+1 {{'down_proj' dimension 0 is 3 but must equal the number of experts (2)}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<3x16x8xf32>)
      : tensor<?x16xf32>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @local_experts_down_proj_hidden(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x8x8xf32>) {
  // expected-error @+1 {{'down_proj' dimension 1 is 8 but must equal the hidden size (16)}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x8x8xf32>)
      : tensor<?x16xf32>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @local_experts_down_proj_intermediate(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x16x9xf32>) {
  // expected-error @+1 {{'down_proj' dimension 2 is 9 but must equal the intermediate size (8)}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x16x9xf32>)
      : tensor<?x16xf32>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @local_experts_gate_proj_type(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %wg: tensor<2x7x16xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'gate_proj' type 'tensor<2x7x16xf32>' must equal 'up_proj' type 'tensor<2x8x16xf32>'}}
  %r = moe.local_experts %x, %ids, %w gate_proj(%wg : tensor<2x7x16xf32>) up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x16x8xf32>)
      : tensor<?x16xf32>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @local_experts_ids_rows(%x: tensor<4x16xf32>, %ids: tensor<5x1xi32>, %w: tensor<4x1xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'ids' dimension 0 is 5 but must equal the number of tokens (4)}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x16x8xf32>)
      : tensor<4x16xf32>, tensor<5x1xi32>, tensor<4x1xf32> -> tensor<4x16xf32>
  return
}

// -----

func.func @local_experts_ids_one_slot(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x1xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'ids' dimension 1 is 2 but must equal one slot per row (1)}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x16x8xf32>)
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x1xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @local_experts_weights_rows(%x: tensor<4x16xf32>, %ids: tensor<4x1xi32>, %w: tensor<3x1xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'weights' dimension 0 is 3 but must equal the number of tokens (4)}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x16x8xf32>)
      : tensor<4x16xf32>, tensor<4x1xi32>, tensor<3x1xf32> -> tensor<4x16xf32>
  return
}

// -----

func.func @local_experts_weights_one_slot(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>, %w: tensor<?x2xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'weights' dimension 1 is 2 but must equal one slot per row (1)}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x16x8xf32>)
      : tensor<?x16xf32>, tensor<?x1xi32>, tensor<?x2xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @local_experts_output_rows(%x: tensor<4x16xf32>, %ids: tensor<4x1xi32>, %w: tensor<4x1xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'output' dimension 0 is 5 but must equal the number of tokens (4)}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x16x8xf32>)
      : tensor<4x16xf32>, tensor<4x1xi32>, tensor<4x1xf32> -> tensor<5x16xf32>
  return
}

// -----

func.func @local_experts_output_hidden(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'output' dimension 1 is 8 but must equal the hidden size (16)}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x16x8xf32>)
      : tensor<?x16xf32>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @local_experts_ids_element_type(%x: tensor<?x16xf32>, %ids: tensor<?x1xi64>, %w: tensor<?x1xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x16x8xf32>) {
  // expected-error @+1 {{operand #1 must be 2D tensor of 32-bit signless integer values, but got 'tensor<?x1xi64>'}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x16x8xf32>)
      : tensor<?x16xf32>, tensor<?x1xi64>, tensor<?x1xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @local_experts_output_f32(%x: tensor<?x16xbf16>, %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %wu: tensor<2x8x16xbf16>, %wd: tensor<2x16x8xbf16>) {
  // expected-error @+1 {{result #0 must be 2D tensor of 32-bit float values, but got 'tensor<?x16xbf16>'}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xbf16>) down_proj(%wd : tensor<2x16x8xbf16>)
      : tensor<?x16xbf16>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x16xbf16>
  return
}

// -----

// docs/FAMILY-RULES.md: the p-norm, sparsemixer routing, clamped SwiGLU,
// the expert and output biases and the routing weights on the input.

func.func @layer_normalize_p_positive(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'normalize_p' (0.000000e+00) must be finite and positive}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64, normalize_p = 0.0 : f32} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_normalize_p_finite(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'normalize_p' (INF) must be finite and positive}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64, normalize_p = 0x7F800000 : f32} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_sparsemixer_eps_not_negative(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'sparsemixer_eps' (-5.000000e-01) must be finite and not negative}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64, scoring = #moe.scoring<sparsemixer>, sparsemixer_eps = -0.5 : f32} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_sparsemixer_groups(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'scoring' sparsemixer does not take grouped routing ('n_group' must be 1)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 1 : i64, scoring = #moe.scoring<sparsemixer>, n_group = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_sparsemixer_selection_bias(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %sb: tensor<4xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'scoring' sparsemixer does not take a selection bias}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) selection_bias(%sb : tensor<4xf32>) gate_proj(%wg : tensor<4x8x16xf32>)
         up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64, scoring = #moe.scoring<sparsemixer>} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

// Expert choice is for softmax scores only, so not for sparsemixer.
func.func @gate_sparsemixer_expert_choice(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>) {
  // expected-error @+1 {{'routing' expert_choice needs softmax 'scoring'}}
  %ids, %w = moe.gate %x, %wr {top_k = 1 : i64, scoring = #moe.scoring<sparsemixer>, routing = #moe.routing<expert_choice>, capacity_factor = 1.0 : f64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @gate_sparsemixer_selection_bias(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %sb: tensor<4xf32>) {
  // expected-error @+1 {{'scoring' sparsemixer does not take a selection bias}}
  %ids, %w = moe.gate %x, %wr selection_bias(%sb : tensor<4xf32>) {top_k = 2 : i64, scoring = #moe.scoring<sparsemixer>}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @gate_normalize_p(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>) {
  // expected-error @+1 {{'normalize_p' (-2.000000e+00) must be finite and positive}}
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64, normalize_p = -2.0 : f32}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @layer_level_normalize_p(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>) {
  // expected-error @+1 {{'levels[0].normalize_p' (-1.000000e+00) must be finite and positive}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1, normalize_p = -1.0>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_sparsemixer_eps(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>) {
  // expected-error @+1 {{'levels[0].sparsemixer_eps' (-1.000000e-01) must be finite and not negative}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1, scoring = sparsemixer, sparsemixer_eps = -0.1>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_sparsemixer_groups(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x4x16xf32>, %wu: tensor<16x8x16xf32>, %wd: tensor<16x16x8xf32>) {
  // expected-error @+1 {{'levels[0].scoring' sparsemixer does not take grouped routing ('levels[0].n_group' must be 1)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x4x16xf32>)
         up_proj(%wu : tensor<16x8x16xf32>) down_proj(%wd : tensor<16x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1, scoring = sparsemixer, n_group = 2>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_level_sparsemixer_selection_bias(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>, %sb: tensor<4x2xf32>) {
  // expected-error @+1 {{'levels[0].scoring' sparsemixer does not take a selection bias}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>) level_selection_biases(%sb : tensor<4x2xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1, scoring = sparsemixer, selection_bias = true>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @refine_sparsemixer_groups(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<4x4x16xf32>) {
  // expected-error @+1 {{'scoring' sparsemixer does not take grouped routing ('n_group' must be 1)}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 1 : i64, scoring = #moe.scoring<sparsemixer>, n_group = 2 : i64}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x4x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @refine_sparsemixer_selection_bias(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<4x3x16xf32>, %b: tensor<4x3xf32>) {
  // expected-error @+1 {{'scoring' sparsemixer does not take a selection bias}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr selection_bias(%b : tensor<4x3xf32>) {top_k = 2 : i64, scoring = #moe.scoring<sparsemixer>}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x3x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @refine_sparsemixer_eps(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<4x3x16xf32>) {
  // expected-error @+1 {{'sparsemixer_eps' (nan) must be finite and not negative}}
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 2 : i64, scoring = #moe.scoring<sparsemixer>, sparsemixer_eps = 0x7FC00000 : f32}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x3x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @layer_clamped_swiglu_gated(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'activation' clamped_swiglu needs a gated FFN ('gate_proj')}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64, activation = #moe.activation<clamped_swiglu>} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_swiglu_alpha_finite(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'swiglu_alpha' (INF) must be finite}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64, activation = #moe.activation<clamped_swiglu>, swiglu_alpha = 0x7F800000 : f32} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_swiglu_limit_positive(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'swiglu_limit' (0.000000e+00) must be finite and positive}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64, activation = #moe.activation<clamped_swiglu>, swiglu_limit = 0.0 : f32} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_swiglu_limit_finite(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'swiglu_limit' (INF) must be finite and positive}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64, activation = #moe.activation<clamped_swiglu>, swiglu_limit = 0x7F800000 : f32} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

// The swiglu parameters only matter to clamped_swiglu: with another
// activation they are not checked.
func.func @layer_swiglu_parameters_unused(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64, swiglu_alpha = 0x7F800000 : f32, swiglu_limit = -1.0 : f32} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_clamped_swiglu_gated(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'activation' clamped_swiglu needs a gated FFN ('gate_proj')}}
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
      {slots_per_token = 2 : i64, activation = #moe.activation<clamped_swiglu>} : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_swiglu_limit(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'swiglu_limit' (-1.000000e+00) must be finite and positive}}
  %r = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
      {slots_per_token = 2 : i64, activation = #moe.activation<clamped_swiglu>, swiglu_limit = -1.0 : f32} : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return
}

// -----

func.func @shared_clamped_swiglu_gated(%x: tensor<?x16xf32>, %su: tensor<32x16xf32>, %sd: tensor<16x32xf32>) {
  // expected-error @+1 {{'activation' clamped_swiglu needs a gated FFN ('gate_proj')}}
  %s = moe.shared_expert %x up_proj(%su : tensor<32x16xf32>) down_proj(%sd : tensor<16x32xf32>)
      {activation = #moe.activation<clamped_swiglu>} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @shared_swiglu_alpha(%x: tensor<?x16xf32>, %sg: tensor<32x16xf32>, %su: tensor<32x16xf32>, %sd: tensor<16x32xf32>) {
  // expected-error @+1 {{'swiglu_alpha' (nan) must be finite}}
  %s = moe.shared_expert %x gate_proj(%sg : tensor<32x16xf32>) up_proj(%su : tensor<32x16xf32>) down_proj(%sd : tensor<16x32xf32>)
      {activation = #moe.activation<clamped_swiglu>, swiglu_alpha = 0x7FC00000 : f32} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @local_experts_clamped_swiglu_gated(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x16x8xf32>) {
  // expected-error @+1 {{'activation' clamped_swiglu needs a gated FFN ('gate_proj')}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x16x8xf32>)
      {activation = #moe.activation<clamped_swiglu>} : tensor<?x16xf32>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_gate_bias_element_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %bg: tensor<4x8xbf16>) {
  // expected-error @+1 {{'gate_bias' element type 'bf16' must equal the input's element type 'f32'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>) gate_bias(%bg : tensor<4x8xbf16>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_up_bias_static(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %bu: tensor<4x?xf32>) {
  // expected-error @+1 {{'up_bias' must have a static shape}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         up_bias(%bu : tensor<4x?xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_gate_bias_needs_gate(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %bg: tensor<4x8xf32>) {
  // expected-error @+1 {{'gate_bias' needs a gated FFN ('gate_proj')}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         gate_bias(%bg : tensor<4x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_gate_bias_experts(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %bg: tensor<3x8xf32>) {
  // expected-error @+1 {{'gate_bias' dimension 0 is 3 but must equal the number of experts (4)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>) gate_bias(%bg : tensor<3x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_up_bias_intermediate(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %bu: tensor<4x16xf32>) {
  // expected-error @+1 {{'up_bias' dimension 1 is 16 but must equal the intermediate size (8)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         up_bias(%bu : tensor<4x16xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_down_bias_hidden(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %bd: tensor<4x8xf32>) {
  // expected-error @+1 {{'down_bias' dimension 1 is 8 but must equal the hidden size (16)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         down_bias(%bd : tensor<4x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

// The biases of a hierarchy are the leaves'.
func.func @layer_down_bias_leaf_experts(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>, %bd: tensor<4x16xf32>) {
  // expected-error @+1 {{'down_bias' dimension 0 is 4 but must equal the number of leaf experts (8)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%wr2 : tensor<4x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>) down_bias(%bd : tensor<4x16xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_output_bias_hidden(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %ob: tensor<8xf32>) {
  // expected-error @+1 {{'output_bias' dimension 0 is 8 but must equal the hidden size (16)}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         output_bias(%ob : tensor<8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @layer_output_bias_element_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %ob: tensor<16xf16>) {
  // expected-error @+1 {{'output_bias' element type 'f16' must equal the input's element type 'f32'}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         output_bias(%ob : tensor<16xf16>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_gate_bias_needs_gate(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %bg: tensor<4x8xf32>) {
  // expected-error @+1 {{'gate_bias' needs a gated FFN ('gate_proj')}}
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>) gate_bias(%bg : tensor<4x8xf32>)
      {slots_per_token = 2 : i64} : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_up_bias_experts(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %bu: tensor<5x8xf32>) {
  // expected-error @+1 {{'up_bias' dimension 0 is 5 but must equal the number of experts (4)}}
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>) up_bias(%bu : tensor<5x8xf32>)
      {slots_per_token = 2 : i64} : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_down_bias_element_type(%x: tensor<?x16xbf16>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>, %wu: tensor<4x8x16xbf16>, %wd: tensor<4x16x8xbf16>, %bd: tensor<4x16xf32>) {
  // expected-error @+1 {{'down_bias' element type 'f32' must equal the input's element type 'bf16'}}
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xbf16>) down_proj(%wd : tensor<4x16x8xbf16>) down_bias(%bd : tensor<4x16xf32>)
      {slots_per_token = 2 : i64} : tensor<?x16xbf16>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return
}

// -----

func.func @expert_input_weights_width(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %w: tensor<?x3xf32>) {
  // expected-error @+1 {{'input_weights' dimension 1 is 3 but must equal 'slots_per_token' (2)}}
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>) input_weights(%w : tensor<?x3xf32>)
      {slots_per_token = 2 : i64} : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return
}

// -----

// The routing weights are f32 whatever the data type.
func.func @expert_input_weights_f32(%x: tensor<?x16xbf16>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>, %wu: tensor<4x8x16xbf16>, %wd: tensor<4x16x8xbf16>, %w: tensor<?x2xbf16>) {
  // expected-error @+1 {{operand #5 must be 2D tensor of 32-bit float values, but got 'tensor<?x2xbf16>'}}
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xbf16>) down_proj(%wd : tensor<4x16x8xbf16>) input_weights(%w : tensor<?x2xbf16>)
      {slots_per_token = 2 : i64} : tensor<?x16xbf16>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return
}

// -----

func.func @local_experts_gate_bias_needs_gate(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x16x8xf32>, %bg: tensor<2x8xf32>) {
  // expected-error @+1 {{'gate_bias' needs a gated FFN ('gate_proj')}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x16x8xf32>) gate_bias(%bg : tensor<2x8xf32>)
      : tensor<?x16xf32>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @local_experts_down_bias_hidden(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>, %wu: tensor<2x8x16xf32>, %wd: tensor<2x16x8xf32>, %bd: tensor<2x15xf32>) {
  // expected-error @+1 {{'down_bias' dimension 1 is 15 but must equal the hidden size (16)}}
  %r = moe.local_experts %x, %ids, %w up_proj(%wu : tensor<2x8x16xf32>) down_proj(%wd : tensor<2x16x8xf32>) down_bias(%bd : tensor<2x15xf32>)
      {router_weight_on_input} : tensor<?x16xf32>, tensor<?x1xi32>, tensor<?x1xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_bias_hidden(%e: tensor<?x16xf32>, %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>, %b: tensor<12xf32>) {
  // expected-error @+1 {{'bias' dimension 0 is 12 but must equal the output's hidden size (16)}}
  %y = moe.combine %e, %rows, %w bias(%b : tensor<12xf32>)
      : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xf32>
  return
}

// -----

// The bias is in the result's data type (the layer's).
func.func @combine_bias_element_type(%e: tensor<?x16xf32>, %rows: tensor<?x2xi64>, %b: tensor<16xf32>) {
  // expected-error @+1 {{'bias' element type 'f32' must equal the result's element type 'bf16'}}
  %y = moe.combine %e, %rows bias(%b : tensor<16xf32>)
      : tensor<?x16xf32>, tensor<?x2xi64> -> tensor<?x16xbf16>
  return
}

// -----

func.func @combine_bias_static(%e: tensor<?x16xf32>, %rows: tensor<?x2xi64>, %b: tensor<?xf32>) {
  // expected-error @+1 {{'bias' must have a static shape}}
  %y = moe.combine %e, %rows bias(%b : tensor<?xf32>)
      : tensor<?x16xf32>, tensor<?x2xi64> -> tensor<?x16xf32>
  return
}

// -----

// Without weights the expert rows are summed as they are: valid, and the
// other rules still apply.
func.func @combine_without_weights(%e: tensor<?x16xf32>, %rows: tensor<5x2xi64>, %s: tensor<5x16xf32>, %b: tensor<16xbf16>) {
  %y = moe.combine %e, %rows shared(%s : tensor<5x16xf32>) bias(%b : tensor<16xbf16>)
      : tensor<?x16xf32>, tensor<5x2xi64> -> tensor<5x16xbf16>
  return
}

// -----

func.func @combine_without_weights_tokens(%e: tensor<?x16xf32>, %rows: tensor<5x2xi64>) {
  // expected-error @+1 {{'slot_rows' dimension 0 is 5 but must equal the number of output tokens (4)}}
  %y = moe.combine %e, %rows
      : tensor<?x16xf32>, tensor<5x2xi64> -> tensor<4x16xf32>
  return
}

// -----

func.func @expert_input_weights_tokens(%x: tensor<3x16xf32>, %slots: tensor<?xi64>,
                                       %offsets: tensor<5xi64>,
                                       %wu: tensor<4x8x16xf32>,
                                       %wd: tensor<4x16x8xf32>,
                                       %w: tensor<4x2xf32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{'input_weights' dimension 0 is 4 but must equal}}
  %0 = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>) input_weights(%w : tensor<4x2xf32>)
         {slots_per_token = 2 : i64}
         : tensor<3x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

func.func @layer_swiglu_up_offset_finite(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  // expected-error @+1 {{'swiglu_up_offset' (INF) must be finite}}
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64, activation = #moe.activation<clamped_swiglu>, swiglu_up_offset = 0x7F800000 : f32} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @select_dynamic_experts(%l: tensor<?x?xf32>, %i: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'logits' must have a static number of experts (dimension 1)}}
  %ids, %wt = moe.select %l outs(%i, %w : tensor<?x2xi32>, tensor<?x2xf32>) {top_k = 2 : i64} : tensor<?x?xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @select_selection_bias_size(%l: tensor<?x8xf32>, %sb: tensor<4xf32>, %i: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'selection_bias' dimension 0 is 4 but must equal the number of experts (8)}}
  %ids, %wt = moe.select %l selection_bias(%sb : tensor<4xf32>) outs(%i, %w : tensor<?x2xi32>, tensor<?x2xf32>) {top_k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @select_top_k(%l: tensor<?x4xf32>, %i: tensor<?x5xi32>, %w: tensor<?x5xf32>) {
  // expected-error @+1 {{'top_k' (5) must not exceed}}
  %ids, %wt = moe.select %l outs(%i, %w : tensor<?x5xi32>, tensor<?x5xf32>) {top_k = 5 : i64} : tensor<?x4xf32> -> tensor<?x5xi32>, tensor<?x5xf32>
  return
}

// -----

func.func @select_destination_type(%l: tensor<?x8xf32>, %i: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{each result must have the type of its destination}}
  %ids, %wt = moe.select %l outs(%i, %w : tensor<?x2xi32>, tensor<?x2xf32>) {top_k = 2 : i64} : tensor<?x8xf32> -> tensor<7x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @select_ids_width(%l: tensor<?x8xf32>, %i: tensor<?x3xi32>, %w: tensor<?x3xf32>) {
  // expected-error @+1 {{'ids' dimension 1 is 3 but must equal 'top_k' (2)}}
  %ids, %wt = moe.select %l outs(%i, %w : tensor<?x3xi32>, tensor<?x3xf32>) {top_k = 2 : i64} : tensor<?x8xf32> -> tensor<?x3xi32>, tensor<?x3xf32>
  return
}

// -----

func.func @select_unordered_capacity(%l: tensor<?x8xf32>, %i: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'unordered' cannot be set with a 'capacity_factor'}}
  %ids, %wt = moe.select %l outs(%i, %w : tensor<?x2xi32>, tensor<?x2xf32>) {top_k = 2 : i64, capacity_factor = 1.0, unordered} : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @select_expert_choice_scoring(%l: tensor<?x8xf32>, %i: tensor<?x8xi32>, %w: tensor<?x8xf32>) {
  // expected-error @+1 {{'routing' expert_choice needs softmax 'scoring'}}
  %ids, %wt = moe.select %l outs(%i, %w : tensor<?x8xi32>, tensor<?x8xf32>) {top_k = 1 : i64, routing = #moe.routing<expert_choice>, capacity_factor = 1.0, scoring = #moe.scoring<sigmoid>} : tensor<?x8xf32> -> tensor<?x8xi32>, tensor<?x8xf32>
  return
}

// -----

// expected-error @+1 {{tile sizes must not be negative}}
func.func @tiling_negative() attributes {c = #moe.tiling<cache = [0, -1]>} {
  return
}

// -----

// expected-error @+1 {{'reduction' and 'registers' must have the same length}}
func.func @tiling_reduction_rank() attributes {c = #moe.tiling<registers = [2, 4], reduction = [0, 0, 8]>} {
  return
}

// -----

// expected-error @+1 {{a loop is tiled by 'registers' or by 'reduction', not both}}
func.func @tiling_both_levels() attributes {c = #moe.tiling<registers = [2, 4, 8], reduction = [0, 0, 8]>} {
  return
}

// -----

// expected-error @+1 {{unknown tiling level 'warps'}}
func.func @tiling_unknown_level() attributes {c = #moe.tiling<warps = [2]>} {
  return
}

// -----

// expected-error @+1 {{'threads' needs a 'distribution' level of the same length}}
func.func @tiling_threads_without_blocks() attributes {c = #moe.tiling<threads = [1, 4, 1]>} {
  return
}

// -----

func.func @select_tiled_capacity(%l: tensor<?x8xf32>, %i: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{a 'lowering_config' that tiles the tokens needs token choice without a capacity}}
  %ids, %wt = moe.select %l outs(%i, %w : tensor<?x2xi32>, tensor<?x2xf32>) {top_k = 2 : i64, capacity_factor = 1.0, lowering_config = #moe.tiling<distribution = [16]>} : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

// -----

// expected-error @+1 {{'interchange' must be a permutation of the 'registers' level's loops}}
func.func @tiling_interchange() attributes {c = #moe.tiling<registers = [2, 4, 0], interchange = [1, 1, 2]>} {
  return
}

// -----

// expected-error @+1 {{tiling level 'registers' given twice}}
func.func @tiling_twice() attributes {c = #moe.tiling<registers = [2], registers = [4, 0]>} {
  return
}

// -----

func.func @refine_select_static_experts(%l: tensor<?x4x?xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'logits' must have a static number of parents (dimension 1) and of experts (dimension 2)}}
  %ids2, %w2 = moe.refine_select %l, %ids, %w {top_k = 2 : i64}
      : tensor<?x4x?xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @refine_select_bias_parents(%l: tensor<?x4x8xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %sb: tensor<3x8xf32>) {
  // expected-error @+1 {{'selection_bias' dimension 0 is 3 but must equal the number of experts of the level above (4)}}
  %ids2, %w2 = moe.refine_select %l, %ids, %w selection_bias(%sb : tensor<3x8xf32>) {top_k = 2 : i64}
      : tensor<?x4x8xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @refine_select_slots(%l: tensor<?x4x8xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'ids' dimension 1 is 6 but must equal 'parent_ids' dimension 1 times 'top_k' (4)}}
  %ids2, %w2 = moe.refine_select %l, %ids, %w {top_k = 2 : i64}
      : tensor<?x4x8xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x6xi32>, tensor<?x6xf32>
  return
}

// -----

func.func @refine_select_tokens(%l: tensor<3x4x8xf32>, %ids: tensor<5x2xi32>, %w: tensor<5x2xf32>) {
  // expected-error @+1 {{'parent_ids' dimension 0 is 5 but must equal the number of tokens (3)}}
  %ids2, %w2 = moe.refine_select %l, %ids, %w {top_k = 2 : i64}
      : tensor<3x4x8xf32>, tensor<5x2xi32>, tensor<5x2xf32> -> tensor<3x4xi32>, tensor<3x4xf32>
  return
}

// -----

func.func @refine_select_top_k(%l: tensor<?x4x8xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'top_k' (9) must not exceed the experts routing may choose from (8)}}
  %ids2, %w2 = moe.refine_select %l, %ids, %w {top_k = 9 : i64}
      : tensor<?x4x8xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x18xi32>, tensor<?x18xf32>
  return
}

// -----

func.func @refine_select_bias_static(%l: tensor<?x4x8xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %sb: tensor<?x8xf32>) {
  // expected-error @+1 {{'selection_bias' must have a static shape}}
  %ids2, %w2 = moe.refine_select %l, %ids, %w selection_bias(%sb : tensor<?x8xf32>) {top_k = 2 : i64}
      : tensor<?x4x8xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @refine_select_bias_experts(%l: tensor<?x4x8xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %sb: tensor<4x6xf32>) {
  // expected-error @+1 {{'selection_bias' dimension 1 is 6 but must equal the number of experts of the level (8)}}
  %ids2, %w2 = moe.refine_select %l, %ids, %w selection_bias(%sb : tensor<4x6xf32>) {top_k = 2 : i64}
      : tensor<?x4x8xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @refine_select_parent_shapes(%l: tensor<?x4x8xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x3xf32>) {
  // expected-error @+1 {{'parent_ids' and 'parent_weights' must have the same shape}}
  %ids2, %w2 = moe.refine_select %l, %ids, %w {top_k = 2 : i64}
      : tensor<?x4x8xf32>, tensor<?x2xi32>, tensor<?x3xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

// -----

func.func @refine_select_result_shapes(%l: tensor<?x4x8xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{'ids' and 'weights' must have the same shape}}
  %ids2, %w2 = moe.refine_select %l, %ids, %w {top_k = 2 : i64}
      : tensor<?x4x8xf32>, tensor<?x2xi32>, tensor<?x2xf32> -> tensor<?x4xi32>, tensor<?x5xf32>
  return
}

// -----

func.func @refine_select_result_tokens(%l: tensor<3x4x8xf32>, %ids: tensor<3x2xi32>, %w: tensor<3x2xf32>) {
  // expected-error @+1 {{'ids' dimension 0 is 5 but must equal the number of tokens (3)}}
  %ids2, %w2 = moe.refine_select %l, %ids, %w {top_k = 2 : i64}
      : tensor<3x4x8xf32>, tensor<3x2xi32>, tensor<3x2xf32> -> tensor<5x4xi32>, tensor<5x4xf32>
  return
}

// -----

func.func @dequantize_rank(%q: tensor<32xi8>, %s: tensor<1xf32>) {
  // expected-error @+1 {{result must have a rank of at least 2, got 1}}
  %w = moe.dequantize %q, %s {format = #moe.weight_format<int8>, group_size = 32 : i64} : tensor<32xi8>, tensor<1xf32> -> tensor<32xf32>
  return
}

// -----

func.func @dequantize_operand_rank(%q: tensor<4x8x32xi8>, %s: tensor<8x1xf32>) {
  // expected-error @+1 {{'scales' must have the result's rank (3)}}
  %w = moe.dequantize %q, %s {format = #moe.weight_format<int8>, group_size = 32 : i64} : tensor<4x8x32xi8>, tensor<8x1xf32> -> tensor<4x8x32xf32>
  return
}

// -----

func.func @dequantize_static(%q: tensor<?x32xi8>, %s: tensor<?x1xf32>) {
  // expected-error @+1 {{'packed' must have a static shape}}
  %w = moe.dequantize %q, %s {format = #moe.weight_format<int8>, group_size = 32 : i64} : tensor<?x32xi8>, tensor<?x1xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @dequantize_e8m0_scales(%q: tensor<8x16xi8>, %s: tensor<8x1xf32>) {
  // expected-error @+1 {{'scales' must be i8 (e8m0 exponents) for f4e2m1, got 'f32'}}
  %w = moe.dequantize %q, %s {format = #moe.weight_format<f4e2m1>, group_size = 32 : i64} : tensor<8x16xi8>, tensor<8x1xf32> -> tensor<8x32xf32>
  return
}

// -----

func.func @dequantize_f32_scales(%q: tensor<8x32xi8>, %s: tensor<8x1xi8>) {
  // expected-error @+1 {{'scales' must be f32 for f8e4m3, got 'i8'}}
  %w = moe.dequantize %q, %s {format = #moe.weight_format<f8e4m3>, group_size = 32 : i64} : tensor<8x32xi8>, tensor<8x1xi8> -> tensor<8x32xf32>
  return
}

// -----

func.func @dequantize_group_divides(%q: tensor<8x30xi8>, %s: tensor<8x1xf32>) {
  // expected-error @+1 {{'group_size' (32) must divide the rows' length (30)}}
  %w = moe.dequantize %q, %s {format = #moe.weight_format<int8>, group_size = 32 : i64} : tensor<8x30xi8>, tensor<8x1xf32> -> tensor<8x30xf32>
  return
}

// -----

func.func @dequantize_odd_nibble_group(%q: tensor<8x15xi8>, %s: tensor<8x10xf32>) {
  // expected-error @+1 {{'group_size' (3) must be even with 4-bit elements}}
  %w = moe.dequantize %q, %s {format = #moe.weight_format<int4>, group_size = 3 : i64} : tensor<8x15xi8>, tensor<8x10xf32> -> tensor<8x30xf32>
  return
}

// -----

func.func @dequantize_packed_bytes(%q: tensor<8x32xi8>, %s: tensor<8x2xf32>) {
  // expected-error @+1 {{'packed' type 'tensor<8x32xi8>' must hold the result's 32 columns in 16 bytes a row}}
  %w = moe.dequantize %q, %s {format = #moe.weight_format<int4>, group_size = 16 : i64} : tensor<8x32xi8>, tensor<8x2xf32> -> tensor<8x32xf32>
  return
}

// -----

func.func @dequantize_scales(%q: tensor<8x32xi8>, %s: tensor<8x1xf32>) {
  // expected-error @+1 {{'scales' type 'tensor<8x1xf32>' must hold one scale per group: 2 a row}}
  %w = moe.dequantize %q, %s {format = #moe.weight_format<int8>, group_size = 16 : i64} : tensor<8x32xi8>, tensor<8x1xf32> -> tensor<8x32xf32>
  return
}

// -----

func.func @dequantize_zeros_shape(%q: tensor<8x16xi8>, %s: tensor<8x2xf32>, %z: tensor<8x1xi8>) {
  // expected-error @+1 {{'zeros' must have the shape of 'scales'}}
  %w = moe.dequantize %q, %s zeros(%z : tensor<8x1xi8>) {format = #moe.weight_format<int4>, group_size = 16 : i64} : tensor<8x16xi8>, tensor<8x2xf32> -> tensor<8x32xf32>
  return
}

// -----

func.func @dequantize_int8_zeros(%q: tensor<8x32xi8>, %s: tensor<8x1xf32>, %z: tensor<8x1xi8>) {
  // expected-error @+1 {{'zeros' are only for int4}}
  %w = moe.dequantize %q, %s zeros(%z : tensor<8x1xi8>) {format = #moe.weight_format<int8>, group_size = 32 : i64} : tensor<8x32xi8>, tensor<8x1xf32> -> tensor<8x32xf32>
  return
}

// -----

func.func @dequantize_perm_shape(%q: tensor<4x8x32xi8>, %s: tensor<4x8x2xf32>, %p: tensor<4x16xi32>) {
  // expected-error @+1 {{'perm' type 'tensor<4x16xi32>' must hold one index per column: the result's leading dimensions and 32}}
  %w = moe.dequantize %q, %s perm(%p : tensor<4x16xi32>) {format = #moe.weight_format<int8>, group_size = 16 : i64} : tensor<4x8x32xi8>, tensor<4x8x2xf32> -> tensor<4x8x32xf32>
  return
}

// -----

func.func @expert_projection_types(%x: tensor<?x16xbf16>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>, %wg: tensor<4x8x16xbf16>, %wu: tensor<4x8x16xf16>, %wd: tensor<4x16x8xbf16>) {
  // expected-error @+1 {{'gate_proj' type 'tensor<4x8x16xbf16>' must equal 'up_proj' type 'tensor<4x8x16xf16>'}}
  %r = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<4x8x16xbf16>) up_proj(%wu : tensor<4x8x16xf16>) down_proj(%wd : tensor<4x16x8xbf16>)
         {slots_per_token = 2 : i64} : tensor<?x16xbf16>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return
}

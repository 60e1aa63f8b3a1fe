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

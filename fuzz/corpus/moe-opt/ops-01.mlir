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

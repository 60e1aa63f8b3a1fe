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

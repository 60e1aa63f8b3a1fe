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

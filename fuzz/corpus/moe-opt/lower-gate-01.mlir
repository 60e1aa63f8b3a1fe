func.func @sigmoid_grouped(%x: tensor<?x16xf32>, %wr: tensor<8x16xf32>,
    %rb: tensor<8xf32>, %sb: tensor<8xf32>)
    -> (tensor<?x3xi32>, tensor<?x3xf32>) {
  %ids, %w = moe.gate %x, %wr router_bias(%rb : tensor<8xf32>)
      selection_bias(%sb : tensor<8xf32>)
      {top_k = 3 : i64, scoring = #moe.scoring<sigmoid>, n_group = 4 : i64,
       topk_group = 2 : i64, normalize_top_k = false,
       routed_scaling_factor = 2.5 : f32}
      : tensor<?x16xf32>, tensor<8x16xf32> -> tensor<?x3xi32>, tensor<?x3xf32>
  return %ids, %w : tensor<?x3xi32>, tensor<?x3xf32>
}

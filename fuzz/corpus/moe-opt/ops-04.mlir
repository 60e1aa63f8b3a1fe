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

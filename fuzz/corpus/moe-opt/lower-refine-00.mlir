func.func @refine(%x: tensor<?x16xbf16>, %ids: tensor<?x2xi32>,
    %w: tensor<?x2xf32>, %wr: tensor<4x8x16xbf16>, %rb: tensor<4x8xbf16>,
    %sb: tensor<4x8xbf16>) -> (tensor<?x6xi32>, tensor<?x6xf32>) {
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr router_bias(%rb : tensor<4x8xbf16>)
      selection_bias(%sb : tensor<4x8xbf16>) {top_k = 3 : i64}
      : tensor<?x16xbf16>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x8x16xbf16>
      -> tensor<?x6xi32>, tensor<?x6xf32>
  return %ids2, %w2 : tensor<?x6xi32>, tensor<?x6xf32>
}

func.func @fused_softmax(%x: tensor<?x16xbf16>, %wr: tensor<4x16xbf16>,
    %rb: tensor<4xbf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr router_bias(%rb : tensor<4xbf16>) {top_k = 2 : i64}
      : tensor<?x16xbf16>, tensor<4x16xbf16> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

func.func @softmax_top2(%x: tensor<?x16xbf16>, %wr: tensor<4x16xbf16>)
    -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<?x16xbf16>, tensor<4x16xbf16> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

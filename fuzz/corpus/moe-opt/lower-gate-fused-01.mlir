func.func @fused_sigmoid(%x: tensor<?x16xf32>, %wr: tensor<8x16xf32>)
    -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64, scoring = #moe.scoring<sigmoid>}
      : tensor<?x16xf32>, tensor<8x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

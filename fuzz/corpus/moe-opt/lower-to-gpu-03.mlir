func.func @hierarchy(%x: tensor<?x16xf32>, %wr: tensor<2x16xf32>,
    %wr2: tensor<2x4x16xf32>, %sb2: tensor<2x4xf32>)
    -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64, unordered}
      : tensor<?x16xf32>, tensor<2x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr2 selection_bias(%sb2 : tensor<2x4xf32>)
      {top_k = 2 : i64, scoring = #moe.scoring<sigmoid>}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<2x4x16xf32>
      -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids2, %w2 : tensor<?x4xi32>, tensor<?x4xf32>
}

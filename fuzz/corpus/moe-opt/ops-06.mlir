func.func @gate_unordered(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>)
    -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 4 : i64, unordered}
               : tensor<?x16xf32>, tensor<4x16xf32>
               -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

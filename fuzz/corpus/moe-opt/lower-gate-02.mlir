func.func @capacity(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>)
    -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64, capacity_factor = 1.5 : f64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

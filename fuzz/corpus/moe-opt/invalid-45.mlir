func.func @gate_ids_element_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi64>, tensor<?x2xf32>
  return
}

func.func @gate_ids_top_k(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x3xi32>, tensor<?x3xf32>
  return
}

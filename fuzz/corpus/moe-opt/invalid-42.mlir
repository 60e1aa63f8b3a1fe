func.func @gate_ids_tokens(%x: tensor<3x16xf32>, %wr: tensor<4x16xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<3x16xf32>, tensor<4x16xf32> -> tensor<4x2xi32>, tensor<4x2xf32>
  return
}

func.func @gate_result_shapes(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x3xf32>
  return
}

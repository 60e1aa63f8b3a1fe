func.func @gate_routing_rules_apply(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 5 : i64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x5xi32>, tensor<?x5xf32>
  return
}

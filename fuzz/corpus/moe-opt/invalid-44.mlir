func.func @gate_ids_expert_choice(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64, routing = #moe.routing<expert_choice>, capacity_factor = 1.0 : f64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

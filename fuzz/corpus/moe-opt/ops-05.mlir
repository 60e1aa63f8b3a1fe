func.func @gate_expert_choice(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>)
    -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.gate %x, %wr
               {top_k = 1 : i64, routing = #moe.routing<expert_choice>,
                capacity_factor = 1.0 : f64}
               : tensor<?x16xf32>, tensor<4x16xf32>
               -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

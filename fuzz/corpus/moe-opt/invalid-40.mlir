func.func @gate_selection_bias_element_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %sb: tensor<4xbf16>) {
  %ids, %w = moe.gate %x, %wr selection_bias(%sb : tensor<4xbf16>) {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

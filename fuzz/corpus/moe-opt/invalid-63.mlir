func.func @refine_input_static_hidden(%x: tensor<?x?xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<4x3x16xf32>) {
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 2 : i64}
      : tensor<?x?xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x3x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return
}

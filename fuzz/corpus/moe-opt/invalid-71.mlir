func.func @refine_ids_tokens(%x: tensor<3x16xf32>, %ids: tensor<3x2xi32>, %w: tensor<3x2xf32>, %wr: tensor<4x3x16xf32>) {
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 2 : i64}
      : tensor<3x16xf32>, tensor<3x2xi32>, tensor<3x2xf32>, tensor<4x3x16xf32> -> tensor<5x4xi32>, tensor<5x4xf32>
  return
}

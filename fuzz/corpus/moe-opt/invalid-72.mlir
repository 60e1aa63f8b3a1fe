func.func @refine_ids_width(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<4x3x16xf32>) {
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr {top_k = 2 : i64}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x3x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return
}

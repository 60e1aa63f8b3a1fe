func.func @refine_dense_unordered(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>,
    %w: tensor<?x2xf32>, %wr: tensor<4x3x16xf32>)
    -> (tensor<?x6xi32>, tensor<?x6xf32>) {
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr
      {top_k = 3 : i64, scoring = #moe.scoring<sigmoid>, normalize_top_k = false,
       unordered}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x3x16xf32>
      -> tensor<?x6xi32>, tensor<?x6xf32>
  return %ids2, %w2 : tensor<?x6xi32>, tensor<?x6xf32>
}

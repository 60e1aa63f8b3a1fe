func.func @refine_select(%l: tensor<?x4x8xf32>, %ids: tensor<?x2xi32>,
    %w: tensor<?x2xf32>, %sb: tensor<4x8xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids2, %w2 = moe.refine_select %l, %ids, %w selection_bias(%sb : tensor<4x8xf32>)
      {top_k = 2 : i64, scoring = #moe.scoring<sigmoid>}
      : tensor<?x4x8xf32>, tensor<?x2xi32>, tensor<?x2xf32>
      -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids2, %w2 : tensor<?x4xi32>, tensor<?x4xf32>
}

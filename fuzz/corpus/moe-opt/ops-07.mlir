func.func @refine(%x: tensor<?x64xf32>, %ids: tensor<?x2xi32>,
    %w: tensor<?x2xf32>, %wr2: tensor<4x8x64xf32>, %rb2: tensor<4x8xf32>,
    %sb2: tensor<4x8xf32>, %wr3: tensor<32x3x64xf32>)
    -> (tensor<?x12xi32>, tensor<?x12xf32>) {
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr2 router_bias(%rb2 : tensor<4x8xf32>)
                 selection_bias(%sb2 : tensor<4x8xf32>)
                 {top_k = 2 : i64, scoring = #moe.scoring<sigmoid>,
                  n_group = 4 : i64, topk_group = 2 : i64}
                 : tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>,
                   tensor<4x8x64xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  %ids3, %w3 = moe.refine %x, %ids2, %w2, %wr3 {top_k = 3 : i64, unordered}
                 : tensor<?x64xf32>, tensor<?x4xi32>, tensor<?x4xf32>,
                   tensor<32x3x64xf32> -> tensor<?x12xi32>, tensor<?x12xf32>
  return %ids3, %w3 : tensor<?x12xi32>, tensor<?x12xf32>
}

func.func @dispatch(%ids: tensor<?x2xi32>, %ids3: tensor<3x2xi32>)
    -> (tensor<8xi64>, tensor<9xi64>, tensor<?xi64>, tensor<?x2xi64>) {
  %counts, %offsets, %slots, %rows = moe.dispatch %ids
      {num_experts = 8 : i64, row_tile = 16 : i64}
      : tensor<?x2xi32> -> tensor<8xi64>, tensor<9xi64>, tensor<?xi64>,
                           tensor<?x2xi64>
  %c, %o, %s, %r = moe.dispatch %ids3 {num_experts = 8 : i64, row_tile = 1 : i64}
      : tensor<3x2xi32> -> tensor<8xi64>, tensor<9xi64>, tensor<?xi64>,
                           tensor<3x2xi64>
  return %counts, %offsets, %slots, %rows
      : tensor<8xi64>, tensor<9xi64>, tensor<?xi64>, tensor<?x2xi64>
}

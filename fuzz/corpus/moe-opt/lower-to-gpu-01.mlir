func.func @plan(%ids: tensor<?x2xi32>) -> tensor<?xi64> {
  %counts, %offsets, %slots, %rows = moe.dispatch %ids {num_experts = 8 : i64, row_tile = 16 : i64}
      : tensor<?x2xi32> -> tensor<8xi64>, tensor<9xi64>, tensor<?xi64>, tensor<?x2xi64>
  return %slots : tensor<?xi64>
}

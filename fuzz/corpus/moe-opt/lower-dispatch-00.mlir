func.func @dispatch_tiled(%ids: tensor<?x2xi32>)
    -> (tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<?x2xi64>) {
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64, row_tile = 8 : i64}
      : tensor<?x2xi32> -> tensor<4xi64>, tensor<5xi64>, tensor<?xi64>,
                           tensor<?x2xi64>
  return %c, %o, %s, %r
      : tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<?x2xi64>
}

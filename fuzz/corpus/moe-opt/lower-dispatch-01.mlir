func.func @dispatch_static(%ids: tensor<3x4xi32>)
    -> (tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<3x4xi64>) {
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64}
      : tensor<3x4xi32> -> tensor<4xi64>, tensor<5xi64>, tensor<?xi64>,
                           tensor<3x4xi64>
  return %c, %o, %s, %r
      : tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<3x4xi64>
}

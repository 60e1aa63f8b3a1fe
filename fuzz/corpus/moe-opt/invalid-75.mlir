func.func @dispatch_counts(%ids: tensor<?x2xi32>) {
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64}
      : tensor<?x2xi32> -> tensor<3xi64>, tensor<5xi64>, tensor<?xi64>, tensor<?x2xi64>
  return
}

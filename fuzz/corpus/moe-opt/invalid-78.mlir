func.func @dispatch_num_experts_positive(%ids: tensor<?x2xi32>) {
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 0 : i64}
      : tensor<?x2xi32> -> tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<?x2xi64>
  return
}

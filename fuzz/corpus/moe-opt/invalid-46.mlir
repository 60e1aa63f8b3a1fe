func.func @dispatch_counts(%ids: tensor<?x2xi32>) {
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64}
      : tensor<?x2xi32> -> tensor<3xi32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  return
}

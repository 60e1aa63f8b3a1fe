func.func @dispatch_plan_element_type(%ids: tensor<?x2xi32>) {
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64}
      : tensor<?x2xi32> -> tensor<4xi32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>
  return
}

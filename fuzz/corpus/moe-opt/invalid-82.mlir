func.func @dispatch_ids_element_type(%ids: tensor<?x2xi64>) {
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64}
      : tensor<?x2xi64> -> tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<?x2xi64>
  return
}

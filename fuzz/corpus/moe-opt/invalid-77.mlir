func.func @dispatch_slot_rows(%ids: tensor<?x2xi32>) {
  %c, %o, %s, %r = moe.dispatch %ids {num_experts = 4 : i64}
      : tensor<?x2xi32> -> tensor<4xi64>, tensor<5xi64>, tensor<?xi64>, tensor<?x3xi64>
  return
}

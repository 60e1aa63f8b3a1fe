func.func @combine_weights_shape(%e: tensor<?x16xf32>, %rows: tensor<?x2xi64>, %w: tensor<?x3xf32>) {
  %y = moe.combine %e, %rows, %w
      : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x3xf32> -> tensor<?x16xf32>
  return
}

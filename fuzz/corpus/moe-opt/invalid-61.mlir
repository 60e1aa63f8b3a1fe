func.func @combine_weights_shape(%e: tensor<?x16xf32>, %rows: tensor<?x2xi32>, %w: tensor<?x3xf32>) {
  %y = moe.combine %e, %rows, %w
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x3xf32> -> tensor<?x16xf32>
  return
}

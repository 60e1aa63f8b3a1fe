func.func @combine_shared_shape(%e: tensor<?x16xf32>, %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>, %s: tensor<?x8xf32>) {
  %y = moe.combine %e, %rows, %w shared(%s : tensor<?x8xf32>)
      : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xf32>
  return
}

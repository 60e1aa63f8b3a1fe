func.func @combine_tokens(%e: tensor<?x16xf32>, %rows: tensor<5x2xi64>, %w: tensor<5x2xf32>) {
  %y = moe.combine %e, %rows, %w
      : tensor<?x16xf32>, tensor<5x2xi64>, tensor<5x2xf32> -> tensor<4x16xf32>
  return
}

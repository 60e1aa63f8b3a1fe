func.func @combine_expert_output_hidden(%e: tensor<?x8xf32>, %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>) {
  %y = moe.combine %e, %rows, %w
      : tensor<?x8xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xf32>
  return
}

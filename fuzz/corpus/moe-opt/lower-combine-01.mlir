func.func @plain_f32(%out: tensor<?x16xf32>, %rows: tensor<?x2xi64>,
    %w: tensor<?x2xf32>) -> tensor<?x16xf32> {
  %y = moe.combine %out, %rows, %w
         : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

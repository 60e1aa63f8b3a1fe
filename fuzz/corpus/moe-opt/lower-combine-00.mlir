func.func @shared_bf16(%out: tensor<?x16xf32>, %rows: tensor<?x2xi64>,
    %w: tensor<?x2xf32>, %s: tensor<?x16xf32>) -> tensor<?x16xbf16> {
  %y = moe.combine %out, %rows, %w shared(%s : tensor<?x16xf32>)
         : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

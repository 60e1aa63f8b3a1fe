func.func @combine(%out: tensor<?x64xf32>, %rows: tensor<?x2xi64>,
    %w: tensor<?x2xf32>, %s: tensor<?x64xf32>)
    -> (tensor<?x64xbf16>, tensor<?x64xf32>) {
  %a = moe.combine %out, %rows, %w shared(%s : tensor<?x64xf32>)
         : tensor<?x64xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x64xbf16>
  %b = moe.combine %out, %rows, %w
         : tensor<?x64xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x64xf32>
  return %a, %b : tensor<?x64xbf16>, tensor<?x64xf32>
}

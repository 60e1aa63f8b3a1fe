func.func @local_experts(%x: tensor<?x64xbf16>, %ids: tensor<?x1xi32>,
    %w: tensor<?x1xf32>, %wg: tensor<2x128x64xbf16>,
    %wu: tensor<2x128x64xbf16>, %wd: tensor<2x64x128xbf16>)
    -> tensor<?x64xf32> {
  %y = moe.local_experts %x, %ids, %w
         gate_proj(%wg : tensor<2x128x64xbf16>)
         up_proj(%wu : tensor<2x128x64xbf16>)
         down_proj(%wd : tensor<2x64x128xbf16>)
         : tensor<?x64xbf16>, tensor<?x1xi32>, tensor<?x1xf32>
         -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

func.func @local_experts_static(%x: tensor<6x16xf32>, %ids: tensor<6x1xi32>,
    %w: tensor<6x1xf32>, %wu: tensor<3x8x16xf32>, %wd: tensor<3x16x8xf32>)
    -> tensor<6x16xf32> {
  %y = moe.local_experts %x, %ids, %w
         up_proj(%wu : tensor<3x8x16xf32>) down_proj(%wd : tensor<3x16x8xf32>)
         {activation = #moe.activation<gelu>}
         : tensor<6x16xf32>, tensor<6x1xi32>, tensor<6x1xf32>
         -> tensor<6x16xf32>
  return %y : tensor<6x16xf32>
}

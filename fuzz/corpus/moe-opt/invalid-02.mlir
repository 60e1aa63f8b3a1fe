func.func @layer_router_bias_element_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %rb: tensor<4xf16>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) router_bias(%rb : tensor<4xf16>) gate_proj(%wg : tensor<4x8x16xf32>)
         up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

func.func @layer_down_proj_experts(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<2x16x8xf32>) {
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<2x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

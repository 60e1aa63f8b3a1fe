func.func @layer_gate_proj_type(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x7x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x7x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

func.func @layer_shared_gated_like_routed(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>, %su: tensor<32x16xf32>, %sd: tensor<16x32xf32>) {
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) gate_proj(%wg : tensor<4x8x16xf32>) up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>) shared_up_proj(%su : tensor<32x16xf32>) shared_down_proj(%sd : tensor<16x32xf32>)
         {top_k = 2 : i64} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

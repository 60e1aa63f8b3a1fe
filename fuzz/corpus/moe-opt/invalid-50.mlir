func.func @layer_level_router_parents(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %wr2: tensor<4x2x16xf32>, %wu: tensor<8x8x16xf32>, %wd: tensor<8x16x8xf32>, %r: tensor<3x2x16xf32>) {
  %y = moe.layer %x router(%wr : tensor<4x16xf32>) level_routers(%r : tensor<3x2x16xf32>)
         up_proj(%wu : tensor<8x8x16xf32>) down_proj(%wd : tensor<8x16x8xf32>)
         {top_k = 2 : i64, levels = [#moe.level<top_k = 1>]} : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

func.func @gated_top2(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>,
    %wg: tensor<8x128x64xf32>, %wu: tensor<8x128x64xf32>,
    %wd: tensor<8x64x128xf32>) -> tensor<?x64xf32> {
  %y = moe.layer %x router(%wr : tensor<8x64xf32>)
         gate_proj(%wg : tensor<8x128x64xf32>) up_proj(%wu : tensor<8x128x64xf32>)
         down_proj(%wd : tensor<8x64x128xf32>)
         {top_k = 2 : i64} : tensor<?x64xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

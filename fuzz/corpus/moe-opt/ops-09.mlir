func.func @expert(%x: tensor<?x64xf32>, %slots: tensor<?xi64>,
    %offsets: tensor<9xi64>, %wg: tensor<8x128x64xf32>,
    %wu: tensor<8x128x64xf32>, %wd: tensor<8x64x128xf32>)
    -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %a = moe.expert %x, %slots, %offsets
         gate_proj(%wg : tensor<8x128x64xf32>) up_proj(%wu : tensor<8x128x64xf32>)
         down_proj(%wd : tensor<8x64x128xf32>)
         {slots_per_token = 2 : i64, activation = #moe.activation<gelu>}
         : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
  %b = moe.expert %x, %slots, %offsets
         up_proj(%wu : tensor<8x128x64xf32>)
         down_proj(%wd : tensor<8x64x128xf32>)
         {slots_per_token = 2 : i64, activation = #moe.activation<silu>}
         : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64> -> tensor<?x64xf32>
  return %a, %b : tensor<?x64xf32>, tensor<?x64xf32>
}

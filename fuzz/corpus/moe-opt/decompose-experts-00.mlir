func.func @expert_combine(%x: tensor<?x16xbf16>, %slots: tensor<?xi64>,
    %offsets: tensor<5xi64>, %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>,
    %wg: tensor<4x8x16xbf16>, %wu: tensor<4x8x16xbf16>,
    %wd: tensor<4x16x8xbf16>) -> tensor<?x16xbf16> {
  %r = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<4x8x16xbf16>)
         up_proj(%wu : tensor<4x8x16xbf16>) down_proj(%wd : tensor<4x16x8xbf16>)
         {slots_per_token = 2 : i64}
         : tensor<?x16xbf16>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  %y = moe.combine %r, %rows, %w
         : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

func.func @shared_accumulates_in_place(%x: tensor<?x16xf32>,
    %slots: tensor<?xi64>, %offsets: tensor<5xi64>, %rows: tensor<?x2xi64>,
    %w: tensor<?x2xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>,
    %su: tensor<32x16xf32>, %sd: tensor<16x32xf32>) -> tensor<?x16xf32> {
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>) {slots_per_token = 2 : i64}
         : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  %s = moe.shared_expert %x up_proj(%su : tensor<32x16xf32>)
         down_proj(%sd : tensor<16x32xf32>) : tensor<?x16xf32> -> tensor<?x16xf32>
  %y = moe.combine %r, %rows, %w shared(%s : tensor<?x16xf32>)
         : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

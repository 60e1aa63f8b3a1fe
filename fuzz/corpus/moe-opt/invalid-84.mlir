func.func @expert_offsets(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<4xi64>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>) {
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
      {slots_per_token = 2 : i64} : tensor<?x16xf32>, tensor<?xi64>, tensor<4xi64> -> tensor<?x16xf32>
  return
}

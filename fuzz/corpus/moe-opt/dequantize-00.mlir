module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {
func.func @expert_act_order(%x: tensor<?x16xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>,
                            %qu: tensor<4x32x16xi8>, %su: tensor<4x32x2xf32>, %pu: tensor<4x16xi32>,
                            %qd: tensor<4x16x32xi8>, %sd: tensor<4x16x1xf32>, %pd: tensor<4x32xi32>) -> tensor<?x16xf32> {
  %wu = moe.dequantize %qu, %su perm(%pu : tensor<4x16xi32>) {format = #moe.weight_format<int8>, group_size = 8 : i64} : tensor<4x32x16xi8>, tensor<4x32x2xf32> -> tensor<4x32x16xf32>
  %wd = moe.dequantize %qd, %sd perm(%pd : tensor<4x32xi32>) {format = #moe.weight_format<int8>, group_size = 32 : i64} : tensor<4x16x32xi8>, tensor<4x16x1xf32> -> tensor<4x16x32xf32>
  %out = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x32x16xf32>) down_proj(%wd : tensor<4x16x32xf32>) {slots_per_token = 2 : i64, activation = #moe.activation<gelu>} : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}
}

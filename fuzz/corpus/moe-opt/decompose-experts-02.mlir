func.func @shared_gated(%x: tensor<3x16xf32>, %su: tensor<32x16xf32>,
    %sd: tensor<16x32xf32>, %g: tensor<16xf32>) -> tensor<3x16xf32> {
  %s = moe.shared_expert %x up_proj(%su : tensor<32x16xf32>)
         down_proj(%sd : tensor<16x32xf32>) expert_gate(%g : tensor<16xf32>)
         : tensor<3x16xf32> -> tensor<3x16xf32>
  return %s : tensor<3x16xf32>
}

func.func @shared_weights(%x: tensor<?x16xf32>, %su: tensor<32x16xf32>, %sd: tensor<16x30xf32>) {
  %s = moe.shared_expert %x up_proj(%su : tensor<32x16xf32>) down_proj(%sd : tensor<16x30xf32>)
      : tensor<?x16xf32> -> tensor<?x16xf32>
  return
}

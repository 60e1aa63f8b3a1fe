func.func @shared_static_hidden(%x: tensor<?x?xf32>, %su: tensor<32x16xf32>, %sd: tensor<16x32xf32>) {
  %s = moe.shared_expert %x up_proj(%su : tensor<32x16xf32>) down_proj(%sd : tensor<16x32xf32>)
      : tensor<?x?xf32> -> tensor<?x16xf32>
  return
}

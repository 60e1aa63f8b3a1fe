func.func @shared_expert(%x: tensor<?x64xf32>, %sg: tensor<256x64xf32>,
    %su: tensor<256x64xf32>, %sd: tensor<64x256xf32>, %g: tensor<64xf32>)
    -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %a = moe.shared_expert %x
         gate_proj(%sg : tensor<256x64xf32>) up_proj(%su : tensor<256x64xf32>)
         down_proj(%sd : tensor<64x256xf32>)
         expert_gate(%g : tensor<64xf32>)
         : tensor<?x64xf32> -> tensor<?x64xf32>
  %b = moe.shared_expert %x
         up_proj(%su : tensor<256x64xf32>)
         down_proj(%sd : tensor<64x256xf32>)
         : tensor<?x64xf32> -> tensor<?x64xf32>
  return %a, %b : tensor<?x64xf32>, tensor<?x64xf32>
}

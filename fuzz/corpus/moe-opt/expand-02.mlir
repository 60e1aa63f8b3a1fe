func.func @expert_choice(%x: tensor<5x16xf16>,
    %wr: tensor<4x16xf16>, %wg: tensor<4x8x16xf16>, %wu: tensor<4x8x16xf16>,
    %wd: tensor<4x16x8xf16>, %sg: tensor<24x16xf16>, %su: tensor<24x16xf16>,
    %sd: tensor<16x24xf16>) -> tensor<5x16xf16> {
  %y = moe.layer %x router(%wr : tensor<4x16xf16>)
         gate_proj(%wg : tensor<4x8x16xf16>) up_proj(%wu : tensor<4x8x16xf16>)
         down_proj(%wd : tensor<4x16x8xf16>)
         shared_gate_proj(%sg : tensor<24x16xf16>)
         shared_up_proj(%su : tensor<24x16xf16>)
         shared_down_proj(%sd : tensor<16x24xf16>)
         {top_k = 1 : i64, routing = #moe.routing<expert_choice>,
          capacity_factor = 2.0 : f64}
         : tensor<5x16xf16> -> tensor<5x16xf16>
  return %y : tensor<5x16xf16>
}

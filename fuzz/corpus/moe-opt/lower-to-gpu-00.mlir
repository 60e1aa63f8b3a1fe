func.func @layer(%x: tensor<?x16xbf16>, %wr: tensor<8x16xbf16>,
    %wg: tensor<8x8x16xbf16>, %wu: tensor<8x8x16xbf16>, %wd: tensor<8x16x8xbf16>,
    %sg: tensor<24x16xbf16>, %su: tensor<24x16xbf16>, %sd: tensor<16x24xbf16>,
    %g: tensor<16xbf16>) -> tensor<?x16xbf16> {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64, capacity_factor = 1.0 : f64}
      : tensor<?x16xbf16>, tensor<8x16xbf16> -> tensor<?x2xi32>, tensor<?x2xf32>
  %counts, %offsets, %slots, %rows = moe.dispatch %ids {num_experts = 8 : i64, row_tile = 64 : i64}
      : tensor<?x2xi32> -> tensor<8xi64>, tensor<9xi64>, tensor<?xi64>, tensor<?x2xi64>
  %out = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<8x8x16xbf16>)
      up_proj(%wu : tensor<8x8x16xbf16>) down_proj(%wd : tensor<8x16x8xbf16>)
      {slots_per_token = 2 : i64}
      : tensor<?x16xbf16>, tensor<?xi64>, tensor<9xi64> -> tensor<?x16xf32>
  %s = moe.shared_expert %x gate_proj(%sg : tensor<24x16xbf16>) up_proj(%su : tensor<24x16xbf16>)
      down_proj(%sd : tensor<16x24xbf16>) expert_gate(%g : tensor<16xbf16>)
      : tensor<?x16xbf16> -> tensor<?x16xf32>
  %y = moe.combine %out, %rows, %w shared(%s : tensor<?x16xf32>)
      : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

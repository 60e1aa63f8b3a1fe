// A moe.dequantize that no expert op reads would be stored dequantized:
// moe-decompose-experts refuses to leave one.
// RUN: moe-opt %s -moe-decompose-shared-expert -moe-decompose-experts -verify-diagnostics

func.func @left(%q: tensor<8x32xi8>, %s: tensor<8x1xf32>) -> tensor<8x32xf32> {
  // expected-error @+1 {{'moe.dequantize' op is left after moe-decompose-experts: only moe.expert and moe.shared_expert (decomposed by moe-decompose-shared-expert before it) read quantized weights}}
  %w = moe.dequantize %q, %s {format = #moe.weight_format<int8>, group_size = 32 : i64} : tensor<8x32xi8>, tensor<8x1xf32> -> tensor<8x32xf32>
  return %w : tensor<8x32xf32>
}

// RUN: moe-opt %s -moe-tile-gpu -verify-diagnostics

// A linalg op that no kernel reads stays outside the threads: an error.
func.func @untiled(%t: tensor<8xf32>) -> tensor<8xf32> {
  %zero = arith.constant 0.0 : f32
  // expected-error @+1 {{was not tiled into GPU threads}}
  %f = linalg.fill ins(%zero : f32) outs(%t : tensor<8xf32>) -> tensor<8xf32>
  return %f : tensor<8xf32>
}

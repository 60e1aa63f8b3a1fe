// RUN: moe-opt %s -split-input-file -moe-decompose-grouped -verify-diagnostics | FileCheck %s

// The routed experts over the plan's rows as [tiles, 64]: a row's token
// (slot / K, -1 for a padding row) and routing weight, and a tile's expert
// (the segments that end at or before its first row, a reduction over the
// offsets), are small generics. Each projection is one contraction over
// (t, i, n, k) that reads the row's input and its expert's weights with
// tensor.extract (an empty [K] gives k its extent). The activation's
// generic (the kernel expert_up) scales the sums by the routing weight
// (router_weight_on_input), adds the expert's biases and applies clamped
// SwiGLU with the op's alpha and limit; the down projection's epilogue
// (expert_down) adds the down bias and zeroes a row without a token.
// CHECK-LABEL: func.func @rules
// CHECK-DAG: %[[ALPHA:.*]] = arith.constant 1.500000e+00 : f32
// CHECK-DAG: %[[LIMIT:.*]] = arith.constant 6.000000e+00 : f32
// CHECK: %[[SLOTS:.*]] = tensor.expand_shape %arg1 {{.*}} : tensor<?xi64> into tensor<?x64xi64>
// CHECK: %[[TOKEN:.*]] = linalg.generic {{.*}} ins(%[[SLOTS]] : tensor<?x64xi64>) outs(%{{.*}} : tensor<?x64xi64>)
// CHECK: arith.divsi
// CHECK: %[[SCALE:.*]] = linalg.generic {{.*}} ins(%[[SLOTS]] : tensor<?x64xi64>) outs(%{{.*}} : tensor<?x64xf32>)
// CHECK: tensor.extract %arg4[
// CHECK: %[[ENDS:.*]] = tensor.extract_slice %arg2{{.*}} : tensor<9xi64> to tensor<7xi64>
// CHECK: %[[EXPERT:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]} ins(%[[ENDS]] : tensor<7xi64>) outs(%{{.*}} : tensor<?xindex>)
// CHECK: %[[TILE:.*]] = linalg.index 0
// CHECK: %[[FIRST:.*]] = arith.muli %[[TILE]], %c64
// CHECK: arith.cmpi ule, %{{.*}}, %[[FIRST]]
// CHECK: %[[UPSUM:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%[[TOKEN]], %[[EXPERT]], %{{.*}} : tensor<?x64xi64>, tensor<?xindex>, tensor<16xf32>) outs(%{{.*}} : tensor<?x64x8xf32>)
// CHECK: tensor.extract %arg0[%{{.*}}, %{{.*}}] : tensor<?x16xbf16>
// CHECK: tensor.extract %arg6[%{{.*}}, %{{.*}}, %{{.*}}] : tensor<8x8x16xbf16>
// CHECK: %[[GATESUM:.*]] = linalg.generic {{.*}} ins(%[[TOKEN]], %[[EXPERT]], %{{.*}} : {{.*}})
// CHECK: tensor.extract %arg5[
// CHECK: %[[HIDDEN:.*]] = linalg.generic {{.*}} ins(%[[UPSUM]], %[[GATESUM]], %[[EXPERT]], %[[SCALE]] : {{.*}}) {{.*}} attrs = {moe.kernel = "expert_up"}
// CHECK: arith.mulf
// CHECK: tensor.extract %arg9[
// CHECK: arith.extf
// CHECK: tensor.extract %arg8[
// CHECK: arith.minimumf %{{.*}}, %[[LIMIT]] : f32
// CHECK: arith.mulf %{{.*}}, %[[ALPHA]] : f32
// CHECK: %[[DOWNSUM:.*]] = linalg.generic {{.*}} ins(%[[HIDDEN]], %[[EXPERT]] : tensor<?x64x8xf32>, tensor<?xindex>) outs(%{{.*}} : tensor<?x64x16xf32>)
// CHECK: tensor.extract %arg7[
// CHECK: %[[ROWS:.*]] = linalg.generic {{.*}} ins(%[[DOWNSUM]], %[[EXPERT]], %[[TOKEN]] : {{.*}}) {{.*}} attrs = {moe.kernel = "expert_down"}
// CHECK: tensor.extract %arg10[
// CHECK: arith.cmpi sge
// CHECK: arith.select
// CHECK: %[[OUT:.*]] = tensor.collapse_shape %[[ROWS]] {{\[\[}}0, 1], [2]] : tensor<?x64x16xf32> into tensor<?x16xf32>
// CHECK: moe.combine %[[OUT]]
func.func @rules(%x: tensor<?x16xbf16>, %slots: tensor<?xi64>, %offsets: tensor<9xi64>,
    %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>,
    %wg: tensor<8x8x16xbf16>, %wu: tensor<8x8x16xbf16>, %wd: tensor<8x16x8xbf16>,
    %bg: tensor<8x8xbf16>, %bu: tensor<8x8xbf16>, %bd: tensor<8x16xbf16>)
    -> tensor<?x16xbf16> {
  %out = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<8x8x16xbf16>)
      up_proj(%wu : tensor<8x8x16xbf16>) down_proj(%wd : tensor<8x16x8xbf16>)
      gate_bias(%bg : tensor<8x8xbf16>) up_bias(%bu : tensor<8x8xbf16>)
      down_bias(%bd : tensor<8x16xbf16>) input_weights(%w : tensor<?x2xf32>)
      {slots_per_token = 2 : i64, activation = #moe.activation<clamped_swiglu>,
       swiglu_alpha = 1.5 : f32, swiglu_limit = 6.0 : f32}
      : tensor<?x16xbf16>, tensor<?xi64>, tensor<9xi64> -> tensor<?x16xf32>
  %y = moe.combine %out, %rows : tensor<?x16xf32>, tensor<?x2xi64> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// One expert: every tile's expert is 0, without a reduction. Without a
// gate, input weights or biases, the activation reads the up sums only.
// CHECK-LABEL: func.func @one_expert
// CHECK: %[[EXPERT:.*]] = linalg.fill ins(%c0 : index)
// CHECK-NOT: iterator_types = ["parallel", "reduction"]
// CHECK: %[[UPSUM:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %[[EXPERT]], %{{.*}} : tensor<?x64xi64>, tensor<?xindex>, tensor<8xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[UPSUM]] : tensor<?x64x4xf32>) {{.*}} attrs = {moe.kernel = "expert_up"}
// CHECK-NEXT: ^bb0
// CHECK-NEXT: arith.maximumf
func.func @one_expert(%x: tensor<?x8xf32>, %slots: tensor<?xi64>, %offsets: tensor<2xi64>,
    %wu: tensor<1x4x8xf32>, %wd: tensor<1x8x4xf32>) -> tensor<?x8xf32> {
  %out = moe.expert %x, %slots, %offsets
      up_proj(%wu : tensor<1x4x8xf32>) down_proj(%wd : tensor<1x8x4xf32>)
      {slots_per_token = 1 : i64, activation = #moe.activation<relu>}
      : tensor<?x8xf32>, tensor<?xi64>, tensor<2xi64> -> tensor<?x8xf32>
  return %out : tensor<?x8xf32>
}

// -----

// The shared expert over the tokens padded to whole tiles of 64: a row's
// token is its own index below T, -1 past it. sigmoid(x · expert_gate), a
// reduction over the row's input, scales the down projection's epilogue.
// The weights are operands of the contractions (not stacked). The result
// is the first T rows.
// CHECK-LABEL: func.func @shared
// CHECK: %[[T:.*]] = tensor.dim %arg0, %c0 : tensor<?x16xf32>
// CHECK: %[[TILES:.*]] = arith.ceildivui %[[T]], %c64 : index
// CHECK: %[[TOKEN:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<?x64xi64>)
// CHECK: arith.cmpi ult, %{{.*}}, %[[T]] : index
// CHECK: %[[LOGIT:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[TOKEN]], %arg4 : tensor<?x64xi64>, tensor<16xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[TOKEN]], %arg2 : tensor<?x64xi64>, tensor<24x16xf32>)
// CHECK: linalg.generic {{.*}} ins(%[[TOKEN]], %arg1 : tensor<?x64xi64>, tensor<24x16xf32>)
// CHECK: {moe.kernel = "shared_up"}
// CHECK: %[[ROWS:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %[[TOKEN]], %[[LOGIT]] : tensor<?x64x16xf32>, tensor<?x64xi64>, tensor<?x64xf32>) {{.*}} attrs = {moe.kernel = "shared_down"}
// CHECK: math.exp
// CHECK: %[[ALL:.*]] = tensor.collapse_shape %[[ROWS]]
// CHECK: %[[S:.*]] = tensor.extract_slice %[[ALL]][0, 0] [%[[T]], 16] [1, 1]
// CHECK: return %[[S]]
func.func @shared(%x: tensor<?x16xf32>, %sg: tensor<24x16xf32>, %su: tensor<24x16xf32>,
    %sd: tensor<16x24xf32>, %g: tensor<16xf32>) -> tensor<?x16xf32> {
  %s = moe.shared_expert %x gate_proj(%sg : tensor<24x16xf32>) up_proj(%su : tensor<24x16xf32>)
      down_proj(%sd : tensor<16x24xf32>) expert_gate(%g : tensor<16xf32>)
      : tensor<?x16xf32> -> tensor<?x16xf32>
  return %s : tensor<?x16xf32>
}

// -----

// A static plan is viewed as a dynamic one, whose rows are whole tiles.
// CHECK-LABEL: func.func @static_plan
// CHECK: %[[PLAN:.*]] = tensor.cast %arg1 : tensor<128xi64> to tensor<?xi64>
// CHECK: tensor.expand_shape %[[PLAN]] {{.*}} : tensor<?xi64> into tensor<?x64xi64>
// CHECK: %[[OUT:.*]] = tensor.cast %{{.*}} : tensor<?x8xf32> to tensor<128x8xf32>
// CHECK: return %[[OUT]]
func.func @static_plan(%x: tensor<?x8xf32>, %slots: tensor<128xi64>, %offsets: tensor<3xi64>,
    %wu: tensor<2x4x8xf32>, %wd: tensor<2x8x4xf32>) -> tensor<128x8xf32> {
  %out = moe.expert %x, %slots, %offsets
      up_proj(%wu : tensor<2x4x8xf32>) down_proj(%wd : tensor<2x8x4xf32>)
      {slots_per_token = 2 : i64}
      : tensor<?x8xf32>, tensor<128xi64>, tensor<3xi64> -> tensor<128x8xf32>
  return %out : tensor<128x8xf32>
}

// -----

// The plan's segments must be padded to the tiles' rows.
func.func @plan_row_tile(%x: tensor<?x8xf32>, %ids: tensor<?x2xi32>, %wu: tensor<2x4x8xf32>,
    %wd: tensor<2x8x4xf32>) -> tensor<?x8xf32> {
  // expected-error @+1 {{'moe.dispatch' op row_tile (16) must be the grouped form's row tile (64): run moe-expand with the same row-tile}}
  %counts, %offsets, %slots, %rows = moe.dispatch %ids {num_experts = 2 : i64, row_tile = 16 : i64}
      : tensor<?x2xi32> -> tensor<2xi64>, tensor<3xi64>, tensor<?xi64>, tensor<?x2xi64>
  %out = moe.expert %x, %slots, %offsets
      up_proj(%wu : tensor<2x4x8xf32>) down_proj(%wd : tensor<2x8x4xf32>)
      {slots_per_token = 2 : i64}
      : tensor<?x8xf32>, tensor<?xi64>, tensor<3xi64> -> tensor<?x8xf32>
  return %out : tensor<?x8xf32>
}

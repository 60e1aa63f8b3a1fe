// moe-decompose-experts: the routed experts as linalg ops on tensors, one
// plan segment at a time, in the shared expert's row-wise and packed forms.
// RUN: moe-opt %s -split-input-file -moe-decompose-experts | FileCheck %s --implicit-check-not=moe.expert --implicit-check-not=moe.combine
// RUN: moe-opt %s -split-input-file -moe-decompose-experts="fuse-gather=false vector-lanes=16" | FileCheck %s --check-prefix=UNFUSED
// RUN: moe-opt %s -split-input-file -moe-decompose-experts=fuse-combine=false | FileCheck %s --check-prefix=EXPERT-ROWS
// RUN: not moe-opt %s -split-input-file -moe-decompose-experts=vector-lanes=0 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: error: moe-decompose-experts: 'vector-lanes' (0) must be positive or -1

// moe.expert alone: a loop over the experts carries the [rows, H] result,
// zero where no segment writes. Each expert's weights are slices of the
// stacked ones; an empty segment is skipped; fewer rows than one vector
// (8 lanes without a target) gather their rows through the plan as
// [count, H] for the row-wise form (streamed weights); more gather them
// straight into the packed [⌈count / 8⌉, H, 8], and the packed result is
// unpacked. Either way the segment's rows are inserted at its offset.
// CHECK-LABEL: func.func @expert
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x16xf32>, %[[SLOTS:[^:]*]]: tensor<?xi64>, %[[OFFSETS:[^:]*]]: tensor<5xi64>, %[[WG:[^:]*]]: tensor<4x32x16xf32>, %[[WU:[^:]*]]: tensor<4x32x16xf32>, %[[WD:[^:]*]]: tensor<4x16x32xf32>)
// CHECK: %[[ZEROS:.*]] = linalg.fill {{.*}} -> tensor<?x16xf32>
// CHECK: %[[OUT:.*]] = scf.for %[[E:.*]] = %c0 to %c4 step %c1 iter_args(%[[ACC:.*]] = %[[ZEROS]]) -> (tensor<?x16xf32>)
// CHECK: tensor.extract %[[OFFSETS]][%[[E]]]
// CHECK: %[[START:.*]] = arith.index_cast
// CHECK: %[[COUNT:.*]] = arith.subi
// CHECK: %[[GATE_W:.*]] = tensor.extract_slice %[[WG]][%[[E]], 0, 0] [1, 32, 16] [1, 1, 1] : tensor<4x32x16xf32> to tensor<32x16xf32>
// CHECK: %[[UP_W:.*]] = tensor.extract_slice %[[WU]][%[[E]], 0, 0] [1, 32, 16] [1, 1, 1]
// CHECK: %[[DOWN_W:.*]] = tensor.extract_slice %[[WD]][%[[E]], 0, 0] [1, 16, 32] [1, 1, 1]
// CHECK: %[[FEW:.*]] = arith.cmpi ult, %[[COUNT]], %c8
// CHECK: %[[SOME:.*]] = arith.cmpi ugt, %[[COUNT]], %c0
// CHECK: scf.if %[[SOME]] -> (tensor<?x16xf32>)
// CHECK: scf.if %[[FEW]] -> (tensor<?x16xf32>)
// CHECK: %[[ROWS:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<?x16xf32>)
// CHECK: %[[SLOT:.*]] = tensor.extract %[[SLOTS]]
// CHECK: %[[CLAMPED:.*]] = arith.maxsi %[[SLOT]], %c0_i64
// CHECK: %[[SLOT_INDEX:.*]] = arith.index_cast %[[CLAMPED]]
// CHECK: %[[TOKEN:.*]] = arith.divui %[[SLOT_INDEX]], %c2
// CHECK: tensor.extract %[[X]][%[[TOKEN]], %{{.*}}]
// CHECK: tensor.expand_shape %[[UP_W]] {{\[\[}}0, 1], [2]] output_shape [4, 8, 16]
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%[[ROWS]], %{{.*}} : tensor<?x16xf32>, tensor<4x8x16xf32>)
// CHECK: tensor.expand_shape %[[GATE_W]]
// CHECK: math.exp
// CHECK: tensor.expand_shape %[[DOWN_W]]
// CHECK: %[[SEGMENT:.*]] = tensor.collapse_shape %{{.*}} {{\[\[}}0], [1, 2]] : tensor<?x4x4xf32> into tensor<?x16xf32>
// CHECK: %[[KEPT:.*]] = linalg.generic {{.*}} ins(%[[SEGMENT]] : tensor<?x16xf32>)
// CHECK: %[[PADDING:.*]] = arith.cmpi sge, %{{.*}}, %c0_i64
// CHECK: arith.select %[[PADDING]], %{{.*}}, %cst
// CHECK: tensor.insert_slice %[[KEPT]] into %[[ACC]][%[[START]], 0] [%[[COUNT]], 16] [1, 1]
// CHECK: } else {
// CHECK-NOT: linalg.pack
// CHECK: %[[PACKED:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<?x16x8xf32>)
// CHECK: %[[REAL:.*]] = arith.cmpi ult, %{{.*}}, %[[COUNT]]
// CHECK: tensor.extract %[[SLOTS]]
// CHECK: %[[V:.*]] = tensor.extract %[[X]]
// CHECK: arith.select %[[REAL]], %[[V]], %cst
// CHECK: %[[UP:.*]] = linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction", "parallel"]} ins(%[[PACKED]], %[[UP_W]] : tensor<?x16x8xf32>, tensor<32x16xf32>)
// CHECK: %[[GATE:.*]] = linalg.generic {{.*}} ins(%[[PACKED]], %[[GATE_W]] :
// CHECK: %[[ACT:.*]] = linalg.generic {{.*}} ins(%[[UP]], %[[GATE]] :
// CHECK: %[[DOWN:.*]] = linalg.generic {{.*}} ins(%[[ACT]], %[[DOWN_W]] : tensor<?x32x8xf32>, tensor<16x32xf32>) outs(%{{.*}} : tensor<?x16x8xf32>)
// CHECK: %[[UNPACKED:.*]] = linalg.unpack %[[DOWN]] inner_dims_pos = [0] inner_tiles = [8]
// CHECK: %[[KEPT:.*]] = linalg.generic {{.*}} ins(%[[UNPACKED]] : tensor<?x16xf32>)
// CHECK: tensor.insert_slice %[[KEPT]] into %[[ACC]][%[[START]], 0] [%[[COUNT]], 16] [1, 1]
// CHECK: } else {
// CHECK: scf.yield %[[ACC]]
// CHECK: return %[[OUT]]
// Without the fused gather the packed form's rows are copied out, then
// packed; 16 lanes pack 16 rows.
// UNFUSED-LABEL: func.func @expert
// UNFUSED: arith.cmpi ult, %{{.*}}, %c16
// UNFUSED: } else {
// UNFUSED: %[[ROWS:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<?x16xf32>)
// UNFUSED: linalg.pack %[[ROWS]] {{.*}} inner_tiles = [16] {{.*}} -> tensor<?x16x16xf32>
func.func @expert(%x: tensor<?x16xf32>, %slots: tensor<?xi64>,
    %offsets: tensor<5xi64>, %wg: tensor<4x32x16xf32>, %wu: tensor<4x32x16xf32>,
    %wd: tensor<4x16x32xf32>) -> tensor<?x16xf32> {
  %rows = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<4x32x16xf32>)
      up_proj(%wu : tensor<4x32x16xf32>) down_proj(%wd : tensor<4x16x32xf32>)
      {slots_per_token = 2 : i64}
      : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return %rows : tensor<?x16xf32>
}

// -----

// A moe.combine of a moe.expert is decomposed with it: the loop carries the
// combined f32 output, starting from the shared expert's, and each
// segment's rows that are not padding are scaled by their routing weight
// and added into their token's row in place; bf16 weights take the packed
// form from two vectors of rows and start each projection from its bias.
// The sum is rounded to bf16 once.
// CHECK-LABEL: func.func @combine
// CHECK-SAME: %[[WEIGHTS:[^:]*]]: tensor<?x2xf32>, %[[SHARED:[^:]*]]: tensor<?x16xf32>)
// CHECK: %[[SUM:.*]] = scf.for %{{.*}} iter_args(%[[ACC:.*]] = %[[SHARED]]) -> (tensor<?x16xf32>)
// CHECK: %[[BU:.*]] = tensor.extract_slice %{{.*}} : tensor<4x32xbf16> to tensor<32xbf16>
// CHECK: arith.cmpi ult, %{{.*}}, %c16
// CHECK: %[[BU_STREAMS:.*]] = tensor.expand_shape %[[BU]] {{\[\[}}0, 1]] output_shape [4, 8]
// CHECK: %[[UP_INIT:.*]] = linalg.generic {{.*}} ins(%[[BU_STREAMS]] : tensor<4x8xbf16>) outs(%{{.*}} : tensor<?x4x8xf32>)
// CHECK: arith.extf
// CHECK: linalg.generic {{.*}} outs(%[[UP_INIT]] : tensor<?x4x8xf32>)
// CHECK: math.erf
// CHECK: %[[ROWS:.*]] = tensor.collapse_shape %{{.*}} : tensor<?x4x4xf32> into tensor<?x16xf32>
// CHECK: scf.for %[[R:.*]] = %c0 to %{{.*}} step %c1 iter_args(%[[ROW_ACC:.*]] = %[[ACC]]) -> (tensor<?x16xf32>)
// CHECK: %[[SLOT:.*]] = tensor.extract
// CHECK: %[[KEPT:.*]] = arith.cmpi sge, %[[SLOT]], %c0_i64
// CHECK: scf.if %[[KEPT]] -> (tensor<?x16xf32>)
// CHECK: %[[W:.*]] = tensor.extract %[[WEIGHTS]]
// CHECK-DAG: %[[TOKEN_ROW:.*]] = tensor.extract_slice %[[ROW_ACC]][%[[TOKEN:.*]], 0] [1, 16] [1, 1] : tensor<?x16xf32> to tensor<16xf32>
// CHECK-DAG: %[[ROW:.*]] = tensor.extract_slice %[[ROWS]][%[[R]], 0] [1, 16] [1, 1] : tensor<?x16xf32> to tensor<16xf32>
// CHECK: %[[ADDED:.*]] = linalg.generic {{.*}} ins(%[[ROW]] : tensor<16xf32>) outs(%[[TOKEN_ROW]] : tensor<16xf32>)
// CHECK: arith.mulf %[[W]]
// CHECK: tensor.insert_slice %[[ADDED]] into %[[ROW_ACC]][%[[TOKEN]], 0] [1, 16] [1, 1]
// CHECK: } else {
// CHECK: linalg.generic {{.*}} ins(%{{.*}} : tensor<32x16xbf16>) outs(%{{.*}} : tensor<32x16xf32>)
// The packed form's rows are read at (r / 8, 0, r % 8).
// CHECK: scf.for
// CHECK: tensor.extract_slice %{{.*}} [1, 16, 1] [1, 1, 1] : tensor<?x16x8xf32> to tensor<16xf32>
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// EXPERT-ROWS-LABEL: func.func @combine
// EXPERT-ROWS: tensor.insert_slice
// EXPERT-ROWS: moe.combine
func.func @combine(%x: tensor<?x16xbf16>, %slots: tensor<?xi64>,
    %offsets: tensor<5xi64>, %wu: tensor<4x32x16xbf16>,
    %wd: tensor<4x16x32xbf16>, %bu: tensor<4x32xbf16>, %bd: tensor<4x16xbf16>,
    %slot_rows: tensor<?x2xi64>, %w: tensor<?x2xf32>, %s: tensor<?x16xf32>)
    -> tensor<?x16xbf16> {
  %rows = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x32x16xbf16>)
      down_proj(%wd : tensor<4x16x32xbf16>) up_bias(%bu : tensor<4x32xbf16>)
      down_bias(%bd : tensor<4x16xbf16>)
      {slots_per_token = 2 : i64, activation = #moe.activation<gelu>}
      : tensor<?x16xbf16>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  %y = moe.combine %rows, %slot_rows, %w shared(%s : tensor<?x16xf32>)
      : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// With input weights each gathered element is scaled by its slot's routing
// weight.
// CHECK-LABEL: func.func @input_weights
// CHECK-SAME: %[[IW:[^:]*]]: tensor<?x1xf32>)
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<?x16xf32>)
// CHECK: %[[V:.*]] = tensor.extract %{{.*}} : tensor<?x16xf32>
// CHECK: %[[SCALE:.*]] = tensor.extract %[[IW]]
// CHECK: arith.mulf %[[V]], %[[SCALE]]
func.func @input_weights(%x: tensor<?x16xf32>, %slots: tensor<?xi64>,
    %offsets: tensor<5xi64>, %wu: tensor<4x32x16xf32>,
    %wd: tensor<4x16x32xf32>, %iw: tensor<?x1xf32>) -> tensor<?x16xf32> {
  %rows = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x32x16xf32>)
      down_proj(%wd : tensor<4x16x32xf32>) input_weights(%iw : tensor<?x1xf32>)
      {slots_per_token = 1 : i64}
      : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return %rows : tensor<?x16xf32>
}

// -----

// Without a shared expert the combined output starts from zeros; the gate
// projection starts from its bias, and the combine's bias is added once
// after the loop over the experts, whose rows arrive weighted (no weights).
// CHECK-LABEL: func.func @combine_biases
// CHECK-SAME: %[[BG:[^:]*]]: tensor<4x32xf32>, %[[BIAS:[^:]*]]: tensor<16xf32>)
// CHECK: %[[ZEROS:.*]] = linalg.fill {{.*}} -> tensor<?x16xf32>
// CHECK: %[[SUM:.*]] = scf.for {{.*}} iter_args(%{{.*}} = %[[ZEROS]])
// CHECK: %[[GATE_BIAS:.*]] = tensor.extract_slice %[[BG]]
// CHECK: tensor.expand_shape %[[GATE_BIAS]]
// CHECK: linalg.generic {{.*}} outs(%{{.*}} : tensor<16xf32>)
// CHECK-NOT: arith.mulf
// CHECK: linalg.yield
// CHECK: linalg.generic {{.*}} ins(%[[BIAS]] : tensor<16xf32>) outs(%[[SUM]] : tensor<?x16xf32>)
func.func @combine_biases(%x: tensor<?x16xf32>, %slots: tensor<?xi64>,
    %offsets: tensor<5xi64>, %wg: tensor<4x32x16xf32>, %wu: tensor<4x32x16xf32>,
    %wd: tensor<4x16x32xf32>, %iw: tensor<?x2xf32>, %slot_rows: tensor<?x2xi64>,
    %bg: tensor<4x32xf32>, %bias: tensor<16xf32>) -> tensor<?x16xf32> {
  %rows = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<4x32x16xf32>)
      up_proj(%wu : tensor<4x32x16xf32>) down_proj(%wd : tensor<4x16x32xf32>)
      gate_bias(%bg : tensor<4x32xf32>) input_weights(%iw : tensor<?x2xf32>)
      {slots_per_token = 2 : i64}
      : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  %y = moe.combine %rows, %slot_rows bias(%bias : tensor<16xf32>)
      : tensor<?x16xf32>, tensor<?x2xi64> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// RUN: moe-opt %s -split-input-file -moe-lower-to-gpu | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-lower-to-gpu=emulate | FileCheck %s --check-prefix=EMULATED

// docs/FAMILY-RULES.md in the kernels. expert_up's epilogue scales the
// row's gate and up sums by its routing weight (router_weight_on_input:
// input_weights[slot / K, slot % K] through the plan's slots, 0 for a
// padding row), adds the block's expert's gate and up biases (widened from
// the data type), then applies clamped SwiGLU (min of the gate, clamp of
// the up) with the op's alpha and limit; expert_down adds the down bias.
// The shared expert applies clamped SwiGLU with the defaults. combine
// without weights adds the kept rows as they are, then the output bias,
// before rounding.
// CHECK-LABEL: func.func @rules
// CHECK-DAG: %[[ALPHA:.*]] = arith.constant 1.500000e+00 : f32
// CHECK-DAG: %[[LIMIT:.*]] = arith.constant 6.000000e+00 : f32
// CHECK-DAG: %[[NLIMIT:.*]] = arith.constant -6.000000e+00 : f32
// CHECK-DAG: %[[DLIMIT:.*]] = arith.constant 7.000000e+00 : f32
// CHECK-DAG: %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK-DAG: %[[SLOTS:.*]] = bufferization.to_buffer %arg1 {{.*}} : tensor<?xi64> to memref<?xi64>
// CHECK-DAG: %[[BG:.*]] = bufferization.to_buffer %arg8 {{.*}} : tensor<8x8xbf16> to memref<8x8xbf16>
// CHECK-DAG: %[[BU:.*]] = bufferization.to_buffer %arg9 {{.*}} : tensor<8x8xbf16> to memref<8x8xbf16>
// CHECK-DAG: %[[BD:.*]] = bufferization.to_buffer %arg10 {{.*}} : tensor<8x16xbf16> to memref<8x16xbf16>
// CHECK-DAG: %[[IW:.*]] = bufferization.to_buffer %arg4 {{.*}} : tensor<?x2xf32> to memref<?x2xf32>
// CHECK: %[[HIDDEN:.*]] = gpu.alloc (%{{.*}}) {moe.workspace} : memref<?x8xf32>
// CHECK: gpu.launch {{.*}} function(@rules_expert_up)
// CHECK: %[[SUMS:.*]]:32 = scf.for
// CHECK: gpu.barrier
// CHECK: scf.if
// CHECK: %[[SLOT64:.*]] = memref.load %[[SLOTS]][%{{.*}}] : memref<?xi64>
// CHECK: %[[SLOT:.*]] = arith.index_cast %[[SLOT64]] : i64 to index
// CHECK: %[[REAL:.*]] = arith.cmpi sge, %[[SLOT]], %c0
// CHECK: %[[AT:.*]] = arith.select %[[REAL]], %[[SLOT]], %c0
// CHECK: %[[TOKEN:.*]] = arith.divui %[[AT]], %c2
// CHECK: %[[J:.*]] = arith.remui %[[AT]], %c2
// CHECK: %[[W:.*]] = memref.load %[[IW]][%[[TOKEN]], %[[J]]] : memref<?x2xf32>
// CHECK: %[[SCALE:.*]] = arith.select %[[REAL]], %[[W]], %[[ZERO]] : f32
// CHECK: %[[UPW:.*]] = arith.mulf %[[SUMS]]#0, %[[SCALE]] : f32
// CHECK: %[[BUV:.*]] = memref.load %[[BU]][%[[EXPERT:.*]], %[[COLUMN:.*]]] : memref<8x8xbf16>
// CHECK: %[[BUF:.*]] = arith.extf %[[BUV]] : bf16 to f32
// CHECK: %[[UP:.*]] = arith.addf %[[UPW]], %[[BUF]] : f32
// CHECK: %[[GATEW:.*]] = arith.mulf %[[SUMS]]#16, %[[SCALE]] : f32
// CHECK: %[[BGV:.*]] = memref.load %[[BG]][%[[EXPERT]], %[[COLUMN]]] : memref<8x8xbf16>
// CHECK: %[[BGF:.*]] = arith.extf %[[BGV]] : bf16 to f32
// CHECK: %[[GATE:.*]] = arith.addf %[[GATEW]], %[[BGF]] : f32
// CHECK: %[[G:.*]] = arith.minimumf %[[GATE]], %[[LIMIT]] : f32
// CHECK: %[[U1:.*]] = arith.minimumf %[[UP]], %[[LIMIT]] : f32
// CHECK: %[[U:.*]] = arith.maximumf %[[U1]], %[[NLIMIT]] : f32
// CHECK: arith.mulf %[[G]], %[[ALPHA]] : f32
// CHECK: math.exp
// CHECK: memref.store %{{.*}}, %[[HIDDEN]]
// CHECK: gpu.launch {{.*}} function(@rules_expert_down)
// CHECK: %[[DSUMS:.*]]:16 = scf.for
// CHECK: %[[BDV:.*]] = memref.load %[[BD]][%{{.*}}, %{{.*}}] : memref<8x16xbf16>
// CHECK: %[[BDF:.*]] = arith.extf %[[BDV]] : bf16 to f32
// CHECK: %[[DOWN:.*]] = arith.addf %[[DSUMS]]#0, %[[BDF]] : f32
// CHECK: memref.store %[[DOWN]]
// CHECK: gpu.launch {{.*}} function(@rules_shared_up)
// CHECK-NOT: gpu.launch
// CHECK: arith.minimumf %{{.*}}, %[[DLIMIT]] : f32
// CHECK: gpu.launch {{.*}} function(@rules_shared_down)
// CHECK-NOT: memref.load %[[BD]]
// CHECK: gpu.launch {{.*}} function(@rules_combine)
// CHECK: %[[SUM:.*]] = scf.for {{.*}} -> (f32) {
// CHECK-NOT: memref.load %[[IW]]
// CHECK: %[[ROW:.*]] = memref.load %{{.*}} : memref<?x16xf32>
// CHECK-NEXT: %[[ADDED:.*]] = arith.addf %{{.*}}, %[[ROW]] : f32
// CHECK-NEXT: arith.select %{{.*}}, %[[ADDED]], %{{.*}} : f32
// CHECK: %[[BO:.*]] = memref.load %{{.*}} : memref<16xbf16>
// CHECK: %[[BOF:.*]] = arith.extf %[[BO]] : bf16 to f32
// CHECK: %[[BIASED:.*]] = arith.addf %[[SUM]], %[[BOF]] : f32
// CHECK: arith.truncf %[[BIASED]] : f32 to bf16

// EMULATED-LABEL: func.func @rules
// EMULATED-NOT: gpu.
// EMULATED: omp.parallel
// EMULATED: arith.minimumf
// EMULATED: arith.maximumf
// EMULATED: omp.barrier
func.func @rules(%x: tensor<?x16xbf16>, %slots: tensor<?xi64>, %offsets: tensor<9xi64>,
    %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>,
    %wg: tensor<8x8x16xbf16>, %wu: tensor<8x8x16xbf16>, %wd: tensor<8x16x8xbf16>,
    %bg: tensor<8x8xbf16>, %bu: tensor<8x8xbf16>, %bd: tensor<8x16xbf16>,
    %sg: tensor<24x16xbf16>, %su: tensor<24x16xbf16>, %sd: tensor<16x24xbf16>,
    %bo: tensor<16xbf16>) -> tensor<?x16xbf16> {
  %out = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<8x8x16xbf16>)
      up_proj(%wu : tensor<8x8x16xbf16>) down_proj(%wd : tensor<8x16x8xbf16>)
      gate_bias(%bg : tensor<8x8xbf16>) up_bias(%bu : tensor<8x8xbf16>)
      down_bias(%bd : tensor<8x16xbf16>) input_weights(%w : tensor<?x2xf32>)
      {slots_per_token = 2 : i64, activation = #moe.activation<clamped_swiglu>,
       swiglu_alpha = 1.5 : f32, swiglu_limit = 6.0 : f32}
      : tensor<?x16xbf16>, tensor<?xi64>, tensor<9xi64> -> tensor<?x16xf32>
  %s = moe.shared_expert %x gate_proj(%sg : tensor<24x16xbf16>) up_proj(%su : tensor<24x16xbf16>)
      down_proj(%sd : tensor<16x24xbf16>)
      {activation = #moe.activation<clamped_swiglu>}
      : tensor<?x16xbf16> -> tensor<?x16xf32>
  %y = moe.combine %out, %rows shared(%s : tensor<?x16xf32>) bias(%bo : tensor<16xbf16>)
      : tensor<?x16xf32>, tensor<?x2xi64> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// Without a gate projection the up sum plus the up bias goes through the
// activation; without input weights the sums are not scaled. combine with
// weights and a bias in f32 weights the rows, adds the bias and does not
// round.
// CHECK-LABEL: func.func @ungated
// CHECK: %[[BU:.*]] = bufferization.to_buffer %arg5 {{.*}} : tensor<4x8xf32> to memref<4x8xf32>
// CHECK: gpu.launch {{.*}} function(@ungated_expert_up)
// CHECK: %[[SUMS:.*]]:16 = scf.for
// CHECK: scf.if
// CHECK-NOT: memref<?x2xf32>
// CHECK: %[[B:.*]] = memref.load %[[BU]][%{{.*}}, %{{.*}}] : memref<4x8xf32>
// CHECK-NEXT: %[[UP:.*]] = arith.addf %[[SUMS]]#0, %[[B]] : f32
// CHECK-NEXT: %[[RELU:.*]] = arith.maximumf %[[UP]], %{{.*}} : f32
// CHECK-NEXT: memref.store %[[RELU]]
// CHECK: gpu.launch {{.*}} function(@ungated_expert_down)
// CHECK: %[[WEIGHTS:.*]] = bufferization.to_buffer %arg4 {{.*}} : tensor<?x2xf32> to memref<?x2xf32>
// CHECK: gpu.launch {{.*}} function(@ungated_combine)
// CHECK: scf.for
// CHECK: %[[ROW:.*]] = memref.load %{{.*}} : memref<?x8xf32>
// CHECK-NEXT: %[[W:.*]] = memref.load %[[WEIGHTS]]
// CHECK-NEXT: %[[WEIGHTED:.*]] = arith.mulf %[[W]], %[[ROW]] : f32
// CHECK-NEXT: arith.addf %{{.*}}, %[[WEIGHTED]] : f32
// CHECK: memref.load %{{.*}} : memref<8xf32>
// CHECK-NEXT: arith.addf
// CHECK-NOT: arith.truncf
// CHECK: memref.store
func.func @ungated(%x: tensor<?x8xf32>, %slots: tensor<?xi64>, %offsets: tensor<5xi64>,
    %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>, %bu: tensor<4x8xf32>,
    %wu: tensor<4x8x8xf32>, %wd: tensor<4x8x8xf32>, %bo: tensor<8xf32>)
    -> tensor<?x8xf32> {
  %out = moe.expert %x, %slots, %offsets
      up_proj(%wu : tensor<4x8x8xf32>) down_proj(%wd : tensor<4x8x8xf32>)
      up_bias(%bu : tensor<4x8xf32>)
      {slots_per_token = 2 : i64, activation = #moe.activation<relu>}
      : tensor<?x8xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x8xf32>
  %y = moe.combine %out, %rows, %w bias(%bo : tensor<8xf32>)
      : tensor<?x8xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// RUN: moe-opt %s -split-input-file -moe-lower-gate | FileCheck %s

// Without a lowering config (no moe-tile-cpu) the gate is its router
// contraction, a linalg.matmul over all T tokens that the scalar lowering
// runs, and a select over the whole [T, E] logits: a scratch copy becomes
// max-subtracted softmax scores, then a per-token loop selects, its argmax
// taking the lower index on ties and never letting a NaN beat a number.
// CHECK-LABEL: func.func @softmax_top2
// CHECK-SAME: (%[[X:.*]]: tensor<?x16xbf16>, %[[WR:.*]]: tensor<4x16xbf16>)
// CHECK-NOT: moe.gate
// CHECK: %[[T:.*]] = tensor.dim %[[X]]
// CHECK: %[[EMPTY:.*]] = tensor.empty(%[[T]]) : tensor<?x4xf32>
// CHECK: %[[ZERO:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%[[EMPTY]] : tensor<?x4xf32>)
// CHECK: %[[LOGITS:.*]] = linalg.matmul indexing_maps = [#{{.*}}, #{{.*}}, #{{.*}}] ins(%[[X]], %[[WR]] : tensor<?x16xbf16>, tensor<4x16xbf16>) outs(%[[ZERO]] : tensor<?x4xf32>)
// CHECK: %[[L_BUF:.*]] = bufferization.to_buffer %[[LOGITS]] read_only
// CHECK: %[[IDS:.*]] = memref.alloc(%{{.*}}) : memref<?x2xi32>
// CHECK: %[[W:.*]] = memref.alloc(%{{.*}}) : memref<?x2xf32>
// CHECK: %[[SCORES:.*]] = memref.alloc(%{{.*}}) : memref<?x4xf32>
// CHECK: linalg.copy ins(%[[L_BUF]] : memref<?x4xf32>) outs(%[[SCORES]] : memref<?x4xf32>)
// CHECK: arith.maximumf
// CHECK: math.exp
// CHECK: arith.divf
// CHECK: scf.for %[[TOKEN:.*]] = %c0 to %{{.*}} step %c1
// CHECK: scf.for %[[J:.*]] = {{.*}} iter_args(%{{.*}}) -> (f32)
// CHECK: scf.for {{.*}} -> (index, f32)
// CHECK: arith.cmpf ogt
// CHECK: arith.cmpf uno
// CHECK: arith.cmpf ord
// CHECK: memref.store %{{.*}}, %[[IDS]][%[[TOKEN]], %[[J]]]
// CHECK: %[[IDS_T:.*]] = bufferization.to_tensor %[[IDS]] restrict writable
// CHECK: %[[W_T:.*]] = bufferization.to_tensor %[[W]] restrict writable
// CHECK: return %[[IDS_T]], %[[W_T]]
func.func @softmax_top2(%x: tensor<?x16xbf16>, %wr: tensor<4x16xbf16>)
    -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64}
      : tensor<?x16xbf16>, tensor<4x16xbf16> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

// -----

// Sigmoid scores, a router bias in the logits, a selection bias added for
// the choice only, grouped routing, no normalization, scaling by 2.5.
// CHECK-LABEL: func.func @sigmoid_grouped
// CHECK-SAME: %[[RB:[^:]*]]: tensor<8xf32>, %[[SB:[^:]*]]: tensor<8xf32>
// CHECK-DAG: arith.constant 2.500000e+00 : f32
// The logits start from the router bias.
// CHECK: %[[BIASED:.*]] = linalg.generic {{.*}} ins(%[[RB]] : tensor<8xf32>)
// CHECK: linalg.matmul {{.*}} outs(%[[BIASED]] : tensor<?x8xf32>)
// CHECK: %[[SB_BUF:.*]] = bufferization.to_buffer %[[SB]] read_only
// CHECK: arith.negf
// CHECK: math.exp
// CHECK: %[[GROUP_SCORES:.*]] = memref.alloc() : memref<4xf32>
// CHECK: %[[GROUP_CHOSEN:.*]] = memref.alloc() : memref<4xi1>
// CHECK-NOT: arith.maximumf
// CHECK: scf.for
// The group score is the sum of the two best choice values.
// CHECK: scf.for {{.*}} -> (f32, f32)
// CHECK: memref.load %[[SB_BUF]]
// CHECK: arith.addf
// CHECK: memref.store %{{.*}}, %[[GROUP_SCORES]]
// CHECK: memref.store %{{.*}}, %[[GROUP_CHOSEN]]
// CHECK: arith.divui
// CHECK: memref.load %[[GROUP_CHOSEN]]
// CHECK-NOT: arith.divf %{{.*}}, %{{.*}} : f32
// CHECK: return
func.func @sigmoid_grouped(%x: tensor<?x16xf32>, %wr: tensor<8x16xf32>,
    %rb: tensor<8xf32>, %sb: tensor<8xf32>)
    -> (tensor<?x3xi32>, tensor<?x3xf32>) {
  %ids, %w = moe.gate %x, %wr router_bias(%rb : tensor<8xf32>)
      selection_bias(%sb : tensor<8xf32>)
      {top_k = 3 : i64, scoring = #moe.scoring<sigmoid>, n_group = 4 : i64,
       topk_group = 2 : i64, normalize_top_k = false,
       routed_scaling_factor = 2.5 : f32}
      : tensor<?x16xf32>, tensor<8x16xf32> -> tensor<?x3xi32>, tensor<?x3xf32>
  return %ids, %w : tensor<?x3xi32>, tensor<?x3xf32>
}

// -----

// Capacity: C = ceil(1.5 · T · 2 / 4) in f64, then slot-major grants.
// CHECK-LABEL: func.func @capacity
// CHECK-DAG: %[[FACTOR:.*]] = arith.constant 1.500000e+00 : f64
// CHECK: arith.sitofp %{{.*}} : i64 to f64
// CHECK: arith.mulf %{{.*}}, %[[FACTOR]] : f64
// CHECK: math.ceil
// CHECK: %[[GRANTED:.*]] = memref.alloca() : memref<4xindex>
// CHECK: scf.for %[[J:.*]] = %c0 to %c2
// CHECK-NEXT: scf.for %[[T:.*]] = %c0 to %dim
// CHECK: memref.load %[[GRANTED]]
// CHECK: arith.cmpi ult
// CHECK: scf.if
// CHECK: } else {
// CHECK: memref.store %{{.*}}, %{{.*}}[%[[T]], %[[J]]] : memref<?x2xi32>
func.func @capacity(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>)
    -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr {top_k = 2 : i64, capacity_factor = 1.5 : f64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

// -----

// Expert choice: every slot starts unchosen (-1), then each expert takes
// its C best tokens.
// CHECK-LABEL: func.func @expert_choice
// CHECK: math.ceil
// CHECK: arith.minui
// CHECK: memref.store %c-1_i32
// CHECK: scf.for %[[E:.*]] = %{{.*}} to %c4
// CHECK: scf.for
// CHECK: scf.for {{.*}} -> (index, f32)
// CHECK: memref.store %{{.*}}, %{{.*}}[%{{.*}}, %[[E]]] : memref<?x4xi32>
func.func @expert_choice(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>)
    -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.gate %x, %wr
      {top_k = 1 : i64, routing = #moe.routing<expert_choice>,
       capacity_factor = 2.0 : f64}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

// -----

// Sparsemixer (docs/FAMILY-RULES.md): the scores are the logits, read in
// place (no scratch copy), with no softmax (no row maximum, no exp) before
// the selection. Each slot's weight
// is then a loop over the experts: the relative distance (m - s) /
// max(|s|, m), compared with 2ε (0.5), keeps an available expert's
// exp(s - m) in the sum, and the weight is 1 / sum. p = 1: no powf.
// CHECK-LABEL: func.func @sparsemixer
// CHECK-DAG: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-DAG: %[[TWO_EPS:.*]] = arith.constant 5.000000e-01 : f32
// CHECK: %[[SCORES:.*]] = bufferization.to_buffer %{{.*}} read_only : tensor<?x4xf32>
// CHECK: %[[W:.*]] = memref.alloc(%{{.*}}) : memref<?x2xf32>
// CHECK-NOT: linalg.copy
// CHECK: %[[AVAILABLE:.*]] = memref.alloc() : memref<4xi1>
// CHECK-NOT: math.exp
// CHECK-NOT: arith.maximumf
// CHECK: %[[BEST:.*]]:2 = scf.for {{.*}} -> (index, f32)
// CHECK: arith.cmpf ogt
// CHECK-NOT: math.exp
// CHECK: %[[M:.*]] = memref.load %[[SCORES]][%{{.*}}, %[[BEST]]#0]
// CHECK: %[[SUM:.*]] = scf.for {{.*}} -> (f32)
// CHECK: %[[S:.*]] = memref.load %[[SCORES]]
// CHECK: %[[ABS:.*]] = math.absf %[[S]]
// CHECK: %[[FACTOR:.*]] = arith.maximumf %[[ABS]], %[[M]]
// CHECK: %[[GAP:.*]] = arith.subf %[[M]], %[[S]]
// CHECK: %[[RELATIVE:.*]] = arith.divf %[[GAP]], %[[FACTOR]]
// CHECK: arith.cmpf ogt, %[[RELATIVE]], %[[TWO_EPS]]
// CHECK: memref.load %[[AVAILABLE]]
// CHECK: math.exp
// CHECK: arith.select
// CHECK: %[[WEIGHT:.*]] = arith.divf %[[ONE]], %[[SUM]]
// CHECK: memref.store %[[WEIGHT]], %[[W]]
// CHECK: memref.store %false, %[[AVAILABLE]][%[[BEST]]#0]
// CHECK-NOT: math.powf
// CHECK: return
func.func @sparsemixer(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>)
    -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr
      {top_k = 2 : i64, scoring = #moe.scoring<sparsemixer>,
       sparsemixer_eps = 0.25 : f32}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

// -----

// A dense sparsemixer mixture still selects in order (its weights depend on
// the slot order), even when the consumer takes the slots in any order.
// CHECK-LABEL: func.func @sparsemixer_dense_unordered
// CHECK: memref.alloc() : memref<4xi1>
// CHECK: scf.for {{.*}} -> (index, f32)
// CHECK: math.absf
func.func @sparsemixer_dense_unordered(%x: tensor<?x16xf32>,
    %wr: tensor<4x16xf32>) -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids, %w = moe.gate %x, %wr
      {top_k = 4 : i64, scoring = #moe.scoring<sparsemixer>, unordered}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids, %w : tensor<?x4xi32>, tensor<?x4xf32>
}

// -----

// normalize_p = 4 (DBRX): each chosen weight adds w^4 to the sum, and the
// scaling divides by sum^(1/4).
// CHECK-LABEL: func.func @p_norm
// CHECK-DAG: %[[INV_P:.*]] = arith.constant 2.500000e-01 : f32
// CHECK-DAG: %[[SCALE:.*]] = arith.constant 3.000000e+00 : f32
// CHECK-DAG: %[[P:.*]] = arith.constant 4.000000e+00 : f32
// CHECK: math.exp
// CHECK: %[[SUM:.*]] = scf.for {{.*}} -> (f32)
// CHECK: %[[BEST:.*]]:2 = scf.for {{.*}} -> (index, f32)
// CHECK: %[[WEIGHT:.*]] = memref.load %{{.*}}[%{{.*}}, %[[BEST]]#0]
// CHECK: memref.store %[[WEIGHT]]
// CHECK: %[[POWER:.*]] = math.powf %[[WEIGHT]], %[[P]] : f32
// CHECK: arith.addf %{{.*}}, %[[POWER]]
// CHECK: %[[NORM:.*]] = math.powf %[[SUM]], %[[INV_P]] : f32
// CHECK: %[[FACTOR:.*]] = arith.divf %[[SCALE]], %[[NORM]]
// CHECK: arith.mulf %{{.*}}, %[[FACTOR]]
func.func @p_norm(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>)
    -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %ids, %w = moe.gate %x, %wr
      {top_k = 2 : i64, normalize_p = 4.0 : f32,
       routed_scaling_factor = 3.0 : f32}
      : tensor<?x16xf32>, tensor<4x16xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
  return %ids, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

// -----

// moe.refine with sparsemixer and p = 2: the parent's logits are copied
// as they are, without a softmax, and the child slots take sparsemixer
// weights normalized by their 2-norm.
// CHECK-LABEL: func.func @refine_sparsemixer_p_norm
// CHECK-DAG: %[[HALF:.*]] = arith.constant 5.000000e-01 : f32
// CHECK-DAG: %[[P:.*]] = arith.constant 2.000000e+00 : f32
// CHECK-DAG: %[[TWO_EPS:.*]] = arith.constant 2.000000e-02 : f32
// CHECK: scf.if
// CHECK: linalg.copy ins(%{{.*}} : memref<4xf32, {{.*}}>) outs(%{{.*}} : memref<4xf32, {{.*}}>)
// CHECK-NOT: math.exp
// CHECK: scf.for {{.*}} -> (index, f32)
// CHECK: math.absf
// CHECK: arith.cmpf ogt, %{{.*}}, %[[TWO_EPS]]
// CHECK: math.exp
// CHECK: math.powf %{{.*}}, %[[P]]
// CHECK: math.powf %{{.*}}, %[[HALF]]
func.func @refine_sparsemixer_p_norm(%x: tensor<?x16xf32>,
    %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>, %wr: tensor<4x4x16xf32>)
    -> (tensor<?x4xi32>, tensor<?x4xf32>) {
  %ids2, %w2 = moe.refine %x, %ids, %w, %wr
      {top_k = 2 : i64, scoring = #moe.scoring<sparsemixer>,
       normalize_p = 2.0 : f32}
      : tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x4x16xf32>
      -> tensor<?x4xi32>, tensor<?x4xf32>
  return %ids2, %w2 : tensor<?x4xi32>, tensor<?x4xf32>
}

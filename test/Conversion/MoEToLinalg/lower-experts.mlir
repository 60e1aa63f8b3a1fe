// RUN: moe-opt %s -split-input-file -moe-lower-experts | FileCheck %s
// RUN: moe-opt %s -split-input-file -moe-lower-experts=fuse-combine=false | FileCheck %s --check-prefix=UNFUSED-COMBINE
// RUN: moe-opt %s -split-input-file -moe-lower-experts=fuse-activation=false | FileCheck %s --check-prefix=UNFUSED-ACT
// RUN: moe-opt %s -split-input-file -moe-lower-experts=fuse-gather=false | FileCheck %s --check-prefix=UNFUSED-GATHER
// RUN: moe-opt %s -split-input-file -moe-lower-experts=parallel=false | FileCheck %s --check-prefix=SERIAL
// RUN: moe-opt %s -split-input-file -moe-lower-experts=strided-columns=false | FileCheck %s --check-prefix=SIDE-BY-SIDE
// RUN: moe-opt %s -split-input-file -moe-lower-experts="vector-lanes=8 tile-rows=2 reduction-block=8 row-block=4" | FileCheck %s --check-prefix=BLOCKED
// RUN: moe-opt %s -split-input-file -moe-lower-experts="vector-lanes=8 broadcast-weight-rows=4 broadcast-min-rows=8" | FileCheck %s --check-prefix=BROADCAST
// RUN: moe-opt %s -split-input-file -moe-lower-experts="vector-lanes=8 broadcast-weight-rows=4 broadcast-min-rows=8 broadcast-reduction-block=8" | FileCheck %s --check-prefix=BROADCAST-BLOCKED
// RUN: not moe-opt %s -split-input-file -moe-lower-experts=tile-weight-rows=3 2>&1 | FileCheck %s --check-prefix=BAD-TILE
// RUN: not moe-opt %s -split-input-file -moe-lower-experts=broadcast-weight-rows=3 2>&1 | FileCheck %s --check-prefix=BAD-BROADCAST
// RUN: not moe-opt %s -split-input-file -moe-lower-experts=broadcast-min-rows=0 2>&1 | FileCheck %s --check-prefix=BAD-MIN-ROWS
// RUN: not moe-opt %s -split-input-file -moe-lower-experts=broadcast-reduction-block=-1 2>&1 | FileCheck %s --check-prefix=BAD-BLOCK

// The options obey #moe.lowering_config's rules.
// BAD-TILE: error: moe-lower-experts: tile_weight_rows must be even and at least 2
// BAD-BROADCAST: error: moe-lower-experts: broadcast_weight_rows must be even and not negative
// BAD-MIN-ROWS: error: moe-lower-experts: vector_lanes, tile_rows, row_block and broadcast_min_rows must be positive
// BAD-BLOCK: error: moe-lower-experts: reduction_block and broadcast_reduction_block must not be negative

// Without `parallel` every loop is sequential.
// SERIAL-NOT: scf.parallel

// Without `strided-columns` a tile's columns are consecutive: gated tile t
// takes columns 2t and 2t + 1 of F = 8, down tile t columns 4t to 4t + 3 of
// H = 16.
// SIDE-BY-SIDE-LABEL: func.func @expert_combine
// SIDE-BY-SIDE: %[[WU_BUF:.*]] = bufferization.to_buffer %arg6
// SIDE-BY-SIDE: scf.parallel (%[[T:.*]]) = (%c0) to (%c4) step (%c1) {
// SIDE-BY-SIDE: %[[F0:.*]] = arith.muli %[[T]], %c2
// SIDE-BY-SIDE: %[[F1:.*]] = arith.addi %[[F0]], %c1
// SIDE-BY-SIDE: vector.load %[[WU_BUF]][%{{.*}}, %[[F0]], %{{.*}}]
// SIDE-BY-SIDE: vector.load %[[WU_BUF]][%{{.*}}, %[[F1]], %{{.*}}]
// SIDE-BY-SIDE: scf.parallel (%[[C:.*]]) = (%c0) to (%c4) step (%c1) {
// SIDE-BY-SIDE: %[[C0:.*]] = arith.muli %[[C]], %c4
// SIDE-BY-SIDE: arith.addi %[[C0]], %c1

// Everything fused. A loop over experts; each projection is a loop over
// register tiles of 4 input rows by 4 weight rows (2 up + 2 gate rows when
// gated): 16-lane vector accumulators along the reduction, one load per row
// and step, 16 FMAs. The input rows are read through the plan; a tile's
// gate and up sums go straight to act(gate) * up in the [rows, F] hidden
// block; the down projection's tile sums are scaled by the routing weight
// and added to the token's output row. No [rows, H] buffer exists.
// CHECK-LABEL: func.func @expert_combine
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x16xbf16>, %[[SLOTS:[^:]*]]: tensor<?xi64>, %[[OFFSETS:[^:]*]]: tensor<5xi64>, %[[ROWS:[^:]*]]: tensor<?x2xi64>, %[[W:[^:]*]]: tensor<?x2xf32>, %[[WG:[^:]*]]: tensor<4x8x16xbf16>, %[[WU:[^:]*]]: tensor<4x8x16xbf16>, %[[WD:[^:]*]]: tensor<4x16x8xbf16>)
// CHECK-NOT: moe.
// CHECK: %[[ACC:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
// CHECK-DAG: %[[X_BUF:.*]] = bufferization.to_buffer %[[X]] read_only
// CHECK-DAG: %[[SLOTS_BUF:.*]] = bufferization.to_buffer %[[SLOTS]] read_only
// CHECK-DAG: %[[WG_BUF:.*]] = bufferization.to_buffer %[[WG]] read_only
// CHECK-DAG: %[[WU_BUF:.*]] = bufferization.to_buffer %[[WU]] read_only
// CHECK-DAG: %[[WD_BUF:.*]] = bufferization.to_buffer %[[WD]] read_only
// CHECK-DAG: %[[W_BUF:.*]] = bufferization.to_buffer %[[W]] read_only
// CHECK: scf.for %[[E:.*]] = %{{.*}} to %{{.*}} step
// CHECK: %[[HIDDEN:.*]] = memref.alloc(%{{.*}}) : memref<?x8xf32>
// CHECK-NOT: memref.alloc
// A tile's columns lie a tile count apart: of F = 8 in 4 gated tiles, tile
// t takes columns t and t + 4, so each thread's tiles walk its rows of Wu
// and Wg as long runs.
// CHECK: scf.parallel (%[[F0:.*]]) = (%c0) to (%c4) step (%c1) {
// CHECK: %[[F1:.*]] = arith.addi %[[F0]], %c4
// CHECK: scf.for %[[I0:.*]] = %{{.*}} to %{{.*}} step %{{.*}} {
// CHECK: memref.load %[[SLOTS_BUF]]
// CHECK: scf.for %[[K:.*]] = {{.*}} iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK-COUNT-4: vector.load %[[X_BUF]]
// CHECK: vector.load %[[WU_BUF]][%[[E]], %[[F0]], %[[K]]] : memref<4x8x16xbf16>, vector<16xbf16>
// CHECK: vector.load %[[WU_BUF]][%[[E]], %[[F1]], %[[K]]]
// CHECK: vector.load %[[WG_BUF]][%[[E]], %[[F0]], %[[K]]]
// CHECK: vector.load %[[WG_BUF]][%[[E]], %[[F1]], %[[K]]]
// CHECK-COUNT-16: vector.fma
// CHECK-COUNT-16: vector.reduction <add>
// CHECK: math.exp
// CHECK: memref.store %{{.*}}, %[[HIDDEN]][%{{.*}}, %[[F0]]]
// CHECK: memref.store %{{.*}}, %[[HIDDEN]][%{{.*}}, %[[F1]]]
// The down projection and its combine epilogue: of H = 16 in 4 tiles, tile
// c takes columns c, c + 4, c + 8 and c + 12.
// CHECK: scf.parallel (%[[C0:.*]]) = (%c0) to (%c4) step (%c1) {
// CHECK: %[[C1:.*]] = arith.addi %[[C0]], %c4
// CHECK: %[[C2:.*]] = arith.addi %[[C0]], %c8
// CHECK: %[[C3:.*]] = arith.addi %[[C0]], %c12
// CHECK: vector.load %[[HIDDEN]]
// CHECK: vector.load %[[WD_BUF]][%[[E]], %[[C0]], %{{.*}}]
// CHECK: vector.load %[[WD_BUF]][%[[E]], %[[C1]], %{{.*}}]
// CHECK: vector.load %[[WD_BUF]][%[[E]], %[[C2]], %{{.*}}]
// CHECK: vector.load %[[WD_BUF]][%[[E]], %[[C3]], %{{.*}}]
// CHECK: %[[SLOT:.*]] = memref.load %[[SLOTS_BUF]]
// CHECK: arith.cmpi sge, %[[SLOT]]
// CHECK: %[[TOKEN:.*]] = arith.divui
// CHECK: %[[J:.*]] = arith.remui
// CHECK: %[[WEIGHT:.*]] = memref.load %[[W_BUF]][%[[TOKEN]], %[[J]]]
// CHECK: memref.load %[[ACC]][%[[TOKEN]], %[[C0]]]
// CHECK: memref.store %{{.*}}, %[[ACC]][%[[TOKEN]], %[[C0]]]
// CHECK: memref.store %{{.*}}, %[[ACC]][%[[TOKEN]], %[[C1]]]
// CHECK: memref.store %{{.*}}, %[[ACC]][%[[TOKEN]], %[[C2]]]
// CHECK: memref.store %{{.*}}, %[[ACC]][%[[TOKEN]], %[[C3]]]
// CHECK: %[[SUM:.*]] = bufferization.to_tensor %[[ACC]] restrict writable
// CHECK: linalg.generic {{.*}} ins(%[[SUM]] : tensor<?x16xf32>) outs(%{{.*}} : tensor<?x16xbf16>)
// CHECK: arith.truncf

// Tiles of 2 input rows by 4 weight rows with 8-lane accumulators, and the
// gate/up reduction (H = 16) cut into passes of 8 over blocks of 4 rows.
// The 4 column tiles form 4 chunks across threads, each with its own
// [4 rows, 4 weight rows · 8 lanes] buffer of partial sums, zeroed per row
// block. An expert of at most 2 rows takes one pass. The down projection's
// reduction (F = 8) fits one pass.
// BLOCKED-LABEL: func.func @expert_combine
// BLOCKED: scf.for %{{.*}} = %{{.*}} to %{{.*}} step
// BLOCKED: %[[HIDDEN:.*]] = memref.alloc(%[[EXPERT_ROWS:.*]]) : memref<?x8xf32>
// BLOCKED: %[[BLOCKS:.*]] = arith.ceildivui %[[EXPERT_ROWS]], %c32768
// BLOCKED: scf.for %{{.*}} = %c0 to %[[BLOCKS]] step %c1 {
// BLOCKED: %[[ROWS:.*]] = arith.subi
// BLOCKED: %[[PARTIALS:.*]] = memref.alloc() : memref<4x4x32xf32>
// BLOCKED: %[[FEW:.*]] = arith.cmpi ule, %[[ROWS]], %c2
// BLOCKED: scf.parallel (%[[CHUNK:.*]]) = (%c0) to (%c4) step (%c1) {
// BLOCKED: scf.if %[[FEW]] {
// BLOCKED: scf.for %{{.*}} = %c0 to %c16 step %c8 iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>)
// BLOCKED: } else {
// BLOCKED: %[[PARTIAL:.*]] = memref.subview %[[PARTIALS]][%[[CHUNK]], 0, 0] [1, 4, 32] [1, 1, 1]
// BLOCKED: scf.for %{{.*}} = %c0 to %[[ROWS]] step %c4 {
// BLOCKED: linalg.fill ins(%{{.*}} : f32) outs(%[[PARTIAL]] :
// The passes before the last keep their sums in the buffer.
// BLOCKED: scf.for %[[K0:.*]] = %c0 to %c8 step %c8 {
// BLOCKED-COUNT-8: vector.load %[[PARTIAL]]
// BLOCKED: scf.for %{{.*}} = %[[K0]] to %{{.*}} step %c8 iter_args
// BLOCKED-COUNT-8: vector.store %{{.*}}, %[[PARTIAL]]
// The last pass starts from the buffer and ends in the epilogue.
// BLOCKED: vector.load %[[PARTIAL]]
// BLOCKED: vector.reduction <add>
// BLOCKED: math.exp
// BLOCKED: memref.store %{{.*}}, %[[HIDDEN]]
// BLOCKED-NOT: memref.subview %[[PARTIALS]]
// BLOCKED: vector.load %[[HIDDEN]]

// Rows in the fewest blocks of at most 32768 rows (whose input of 16 f32
// elements per row fits 2 MiB), block b from row b · rows / blocks, so that
// no block is more than a row smaller than another. Outer-product tiles from
// 8 rows on: the block's input rows, rounded up to 8 (padding rows zero),
// are transposed into f32 vectors of rows, [rows / 8, H, 8], shared by every
// column tile, so that a vector of rows reads consecutive vectors along k; a
// tile of 2 up + 2 gate weight rows broadcasts one element of each across
// two vectors of rows (8 accumulators), then one vector for the last rows.
// Each lane is one row's sum, so the epilogue takes lanes one row at a time
// and skips the padding. The column tiles form chunks across threads; inside
// a chunk, each tile of rows meets all of the chunk's column tiles in turn.
// With 4 column tiles each is a chunk, so that threads share the work. The
// bf16 weights are widened first, per pass, into an f32 buffer of the
// chunk's weight rows that the tiles read. Fewer rows take the dot products.
// The down projection transposes the hidden block the same way and adds into
// the token outputs.
// BROADCAST-LABEL: func.func @expert_combine
// BROADCAST: %[[OUT:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
// BROADCAST: %[[HIDDEN:.*]] = memref.alloc(%[[ROWS:.*]]) : memref<?x8xf32>
// BROADCAST: %[[BLOCKS:.*]] = arith.ceildivui %[[ROWS]], %c32768
// BROADCAST: scf.for %[[B:.*]] = %c0 to %[[BLOCKS]] step %c1 {
// BROADCAST: %[[START:.*]] = arith.muli %[[B]], %[[ROWS]]
// BROADCAST: %[[FIRST:.*]] = arith.divui %[[START]], %[[BLOCKS]]
// BROADCAST: %[[NEXT:.*]] = arith.addi %[[B]], %c1
// BROADCAST: %[[END_ROWS:.*]] = arith.muli %[[NEXT]], %[[ROWS]]
// BROADCAST: %[[END:.*]] = arith.divui %[[END_ROWS]], %[[BLOCKS]]
// BROADCAST: %[[BLOCK:.*]] = arith.subi %[[END]], %[[FIRST]]
// BROADCAST: %[[MANY:.*]] = arith.cmpi uge, %[[BLOCK]], %c8
// BROADCAST: scf.if %[[MANY]] {
// BROADCAST: %[[PADDED:.*]] = arith.muli %{{.*}}, %c8
// BROADCAST: %[[GROUPS:.*]] = arith.divui %[[PADDED]], %c8
// BROADCAST: %[[INPUT:.*]] = memref.alloc(%[[GROUPS]]) : memref<?x16x8xf32>
// BROADCAST: scf.for %[[T_ROW:.*]] = %c0 to %[[PADDED]] step %c1 {
// BROADCAST: %[[T_GROUP:.*]] = arith.divui %[[T_ROW]], %c8
// BROADCAST: %[[T_LANE:.*]] = arith.remui %[[T_ROW]], %c8
// BROADCAST: scf.for %[[T_K:.*]] = %c0 to %c16 step %c1 {
// BROADCAST: arith.select %{{.*}}, %{{.*}}, %cst{{.*}} : f32
// BROADCAST: memref.store %{{.*}}, %[[INPUT]][%[[T_GROUP]], %[[T_K]], %[[T_LANE]]] : memref<?x16x8xf32>
// BROADCAST: scf.parallel (%[[CHUNK:.*]]) = (%c0) to (%c4) step (%c1) {
// BROADCAST: %[[WIDE:.*]] = memref.alloc() : memref<4x16xf32>
// BROADCAST: scf.for %[[WIDE_TILE:.*]] = %[[CHUNK]] to %{{.*}} step %c1 {
// BROADCAST: %[[WIDE_COLUMN:.*]] = arith.muli %[[WIDE_TILE]], %c2
// BROADCAST: scf.for %[[WIDE_K:.*]] = %c0 to %c16 step %c1 {
// BROADCAST: memref.load %{{.*}}[%{{.*}}, %[[WIDE_COLUMN]], %[[WIDE_K]]] : memref<4x8x16xbf16>
// BROADCAST: arith.extf %{{.*}} : bf16 to f32
// BROADCAST: memref.store %{{.*}}, %[[WIDE]][%{{.*}}, %[[WIDE_K]]] : memref<4x16xf32>
// BROADCAST-NOT: memref.alloc
// BROADCAST: scf.for %[[FIRST_ROW:.*]] = %c0 to %{{.*}} step %c16 {
// BROADCAST: scf.for %[[TILE:.*]] = %[[CHUNK]] to %{{.*}} step %c1 {
// BROADCAST: %[[COLUMN:.*]] = arith.muli %[[TILE]], %c2
// BROADCAST: %[[GROUP:.*]] = arith.divui %[[FIRST_ROW]], %c8
// BROADCAST: scf.for %[[K:.*]] = %c0 to %c16 step %c1 iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>)
// BROADCAST: vector.load %[[INPUT]][%[[GROUP]], %[[K]], %c0] : memref<?x16x8xf32>, vector<8xf32>
// BROADCAST: %[[GROUP1:.*]] = arith.addi %[[GROUP]], %c1
// BROADCAST: vector.load %[[INPUT]][%[[GROUP1]], %[[K]], %c0] : memref<?x16x8xf32>, vector<8xf32>
// BROADCAST: memref.load %[[WIDE]][%{{.*}}, %[[K]]] : memref<4x16xf32>
// BROADCAST: vector.broadcast %{{.*}} : f32 to vector<8xf32>
// BROADCAST-COUNT-2: vector.fma
// BROADCAST: scf.for %[[LANE:.*]] = %c0 to %c8 step %c1 {
// BROADCAST: %[[ROW:.*]] = arith.addi %{{.*}}, %[[LANE]]
// BROADCAST: arith.cmpi ult, %[[ROW]], %[[BLOCK]]
// BROADCAST: vector.extract %{{.*}}[%[[LANE]]] : f32 from vector<8xf32>
// BROADCAST: %[[PLAN_ROW:.*]] = arith.addi %[[FIRST]], %[[ROW]]
// BROADCAST: math.exp
// BROADCAST: memref.store %{{.*}}, %[[HIDDEN]][%[[PLAN_ROW]], %[[COLUMN]]]
// BROADCAST: scf.for %{{.*}} = %c0 to %c16 step %c1 iter_args({{.*}}) -> (vector<8xf32>, vector<8xf32>, vector<8xf32>, vector<8xf32>) {
// BROADCAST: } else {
// BROADCAST: vector.reduction <add>
// BROADCAST: %[[HIDDENT:.*]] = memref.alloc(%{{.*}}) : memref<?x8x8xf32>
// BROADCAST: memref.load %[[HIDDEN]]
// BROADCAST: scf.parallel (%{{.*}}) = (%c0) to (%c4) step (%c1) {
// BROADCAST: memref.alloc() : memref<4x8xf32>
// BROADCAST: vector.load %[[HIDDENT]]
// BROADCAST: memref.load %[[OUT]]
// BROADCAST: } else {
// BROADCAST: vector.reduction <add>

// The gate/up reduction (H = 16) in passes of 8 outer-product steps once
// there is more than one tile of rows (16 padded rows): each chunk keeps its
// tiles' accumulators in a [chunk's weight rows, rows] buffer, zeroed first;
// every pass but the last stores them there, and the last starts from it
// and ends in the epilogue. One tile of rows takes the whole reduction in
// one pass, with no such buffer. The down projection (F = 8) takes one pass
// and no buffer of partial sums.
// BROADCAST-BLOCKED-LABEL: func.func @expert_combine
// BROADCAST-BLOCKED: %[[PADDED:.*]] = arith.muli %{{.*}}, %c8
// BROADCAST-BLOCKED: %[[INPUT:.*]] = memref.alloc(%{{.*}}) : memref<?x16x8xf32>
// BROADCAST-BLOCKED: %[[ONE_TILE:.*]] = arith.cmpi ule, %[[PADDED]], %c16
// BROADCAST-BLOCKED: scf.if %[[ONE_TILE]] {
// BROADCAST-BLOCKED: scf.parallel (%{{.*}}) = (%c0) to (%c4) step (%c1) {
// BROADCAST-BLOCKED-NOT: memref<4x?xf32>
// BROADCAST-BLOCKED: memref.alloc() : memref<4x16xf32>
// BROADCAST-BLOCKED-NOT: memref<4x?xf32>
// BROADCAST-BLOCKED: scf.for %{{.*}} = %c0 to %c16 step %c1 iter_args
// BROADCAST-BLOCKED: } else {
// BROADCAST-BLOCKED: scf.parallel (%[[CHUNK:.*]]) = (%c0) to (%c4) step (%c1) {
// BROADCAST-BLOCKED: %[[PARTIAL:.*]] = memref.alloc(%[[PADDED]]) : memref<4x?xf32>
// BROADCAST-BLOCKED: linalg.fill ins(%{{.*}} : f32) outs(%[[PARTIAL]] : memref<4x?xf32>)
// BROADCAST-BLOCKED: %[[WIDE:.*]] = memref.alloc() : memref<4x8xf32>
// BROADCAST-BLOCKED: scf.for %[[K0:.*]] = %c0 to %c8 step %c8 {
// BROADCAST-BLOCKED: %[[K1:.*]] = arith.addi %[[K0]], %c8
// BROADCAST-BLOCKED: scf.for %[[WIDE_K:.*]] = %[[K0]] to %[[K1]] step %c1 {
// BROADCAST-BLOCKED: %[[WIDE_AT:.*]] = arith.subi %[[WIDE_K]], %[[K0]]
// BROADCAST-BLOCKED: memref.store %{{.*}}, %[[WIDE]][%{{.*}}, %[[WIDE_AT]]]
// BROADCAST-BLOCKED: scf.for %{{.*}} = %c0 to %{{.*}} step %c16 {
// BROADCAST-BLOCKED: scf.for %{{.*}} = %[[CHUNK]] to %{{.*}} step %c1 {
// BROADCAST-BLOCKED-COUNT-8: vector.load %[[PARTIAL]]
// BROADCAST-BLOCKED: scf.for %[[K:.*]] = %[[K0]] to %[[K1]] step %c1 iter_args
// BROADCAST-BLOCKED: vector.load %[[INPUT]]
// BROADCAST-BLOCKED: %[[AT:.*]] = arith.subi %[[K]], %[[K0]]
// BROADCAST-BLOCKED: memref.load %[[WIDE]][%{{.*}}, %[[AT]]]
// BROADCAST-BLOCKED-COUNT-8: vector.store %{{.*}}, %[[PARTIAL]]
// BROADCAST-BLOCKED: scf.for %{{.*}} = %c8 to %c16 step %c1 iter_args
// BROADCAST-BLOCKED: vector.extract
// BROADCAST-BLOCKED: math.exp
// BROADCAST-BLOCKED-NOT: vector.store %{{.*}}, %[[PARTIAL]]
// BROADCAST-BLOCKED: memref.alloc(%{{.*}}) : memref<?x8x8xf32>
// BROADCAST-BLOCKED: scf.parallel
// BROADCAST-BLOCKED-NOT: memref.alloc(%{{.*}}) : memref<4x?xf32>
// BROADCAST-BLOCKED: scf.for %{{.*}} = %c0 to %c8 step %c1 iter_args

// Combine unfused: moe.expert writes its [rows, H] result; moe.combine is
// left for moe-lower-combine.
// UNFUSED-COMBINE-LABEL: func.func @expert_combine
// UNFUSED-COMBINE: %[[ROWS_BUF:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
// UNFUSED-COMBINE: scf.for
// UNFUSED-COMBINE: vector.fma
// UNFUSED-COMBINE: memref.store %{{.*}}, %[[ROWS_BUF]]
// UNFUSED-COMBINE: %[[OUT:.*]] = bufferization.to_tensor %[[ROWS_BUF]]
// UNFUSED-COMBINE: moe.combine %[[OUT]]

// Activation unfused: the gate and up projections are stored whole, then
// combined by one elementwise pass.
// UNFUSED-ACT-LABEL: func.func @expert_combine
// UNFUSED-ACT: %[[HIDDEN:.*]] = memref.alloc(%[[N:.*]]) : memref<?x8xf32>
// UNFUSED-ACT: %[[UP:.*]] = memref.alloc(%[[N]]) : memref<?x8xf32>
// UNFUSED-ACT: %[[GATE:.*]] = memref.alloc(%[[N]]) : memref<?x8xf32>
// UNFUSED-ACT: memref.store %{{.*}}, %[[UP]]
// UNFUSED-ACT: memref.store %{{.*}}, %[[GATE]]
// UNFUSED-ACT: linalg.generic {{.*}} ins(%[[UP]], %[[GATE]] : {{.*}}) outs(%[[HIDDEN]] : {{.*}})

// Gather unfused: each expert's rows are copied out first, and the
// projections read the copy.
// UNFUSED-GATHER-LABEL: func.func @expert_combine
// UNFUSED-GATHER: scf.for
// UNFUSED-GATHER: %[[GATHERED:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
// UNFUSED-GATHER: linalg.generic {{.*}} outs(%[[GATHERED]]
// UNFUSED-GATHER: memref.load %{{.*}} : memref<?x16xbf16>
// UNFUSED-GATHER: vector.load %[[GATHERED]]
func.func @expert_combine(%x: tensor<?x16xbf16>, %slots: tensor<?xi64>,
    %offsets: tensor<5xi64>, %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>,
    %wg: tensor<4x8x16xbf16>, %wu: tensor<4x8x16xbf16>,
    %wd: tensor<4x16x8xbf16>) -> tensor<?x16xbf16> {
  %r = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<4x8x16xbf16>)
         up_proj(%wu : tensor<4x8x16xbf16>) down_proj(%wd : tensor<4x16x8xbf16>)
         {slots_per_token = 2 : i64}
         : tensor<?x16xbf16>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  %y = moe.combine %r, %rows, %w
         : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// Plain FFN: the activation of the up projection alone, for each of the
// four (standalone moe.expert ops: no combine to fuse). Tiles take 4 up
// rows at a time.
// CHECK-LABEL: func.func @plain_activations
// CHECK-COUNT-16: vector.fma
// f32 weights are broadcast from where they are, with no widened copy.
// BROADCAST-LABEL: func.func @plain_activations
// BROADCAST: scf.parallel
// BROADCAST-NOT: memref.alloc()
// BROADCAST: memref.load %{{.*}} : memref<4x8x16xf32>
// BROADCAST: vector.broadcast
// CHECK: math.erf
// CHECK: math.tanh
// CHECK: arith.maximumf
func.func @plain_activations(%x: tensor<?x16xf32>, %slots: tensor<?xi64>,
    %offsets: tensor<5xi64>, %wu: tensor<4x8x16xf32>,
    %wd: tensor<4x16x8xf32>)
    -> (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>) {
  %a = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {slots_per_token = 1 : i64, activation = #moe.activation<gelu>}
         : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  %b = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {slots_per_token = 1 : i64, activation = #moe.activation<gelu_tanh>}
         : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  %c = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>)
         {slots_per_token = 1 : i64, activation = #moe.activation<relu>}
         : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return %a, %b, %c : tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>
}

// -----

// A shared expert left whole is decomposed here into its linalg ops, the
// packed form's relayouts lowered (nothing is left that does not
// bufferize); the routed experts add into a copy of its output.
// CHECK-LABEL: func.func @shared_then_routed
// CHECK-NOT: moe.shared_expert
// CHECK-NOT: linalg.pack
// CHECK-NOT: linalg.unpack
// CHECK: tensor.collapse_shape
// CHECK: %[[ACC:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
// CHECK: %[[SHARED:.*]] = bufferization.to_buffer
// CHECK: memref.copy %[[SHARED]], %[[ACC]]
// CHECK: memref.store %{{.*}}, %[[ACC]][
// CHECK: %[[Y:.*]] = bufferization.to_tensor %[[ACC]] restrict writable
// CHECK: return %[[Y]]
func.func @shared_then_routed(%x: tensor<?x16xf32>,
    %slots: tensor<?xi64>, %offsets: tensor<5xi64>, %rows: tensor<?x2xi64>,
    %w: tensor<?x2xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>,
    %su: tensor<32x16xf32>, %sd: tensor<16x32xf32>) -> tensor<?x16xf32> {
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xf32>)
         down_proj(%wd : tensor<4x16x8xf32>) {slots_per_token = 2 : i64}
         : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  %s = moe.shared_expert %x up_proj(%su : tensor<32x16xf32>)
         down_proj(%sd : tensor<16x32xf32>) : tensor<?x16xf32> -> tensor<?x16xf32>
  %y = moe.combine %r, %rows, %w shared(%s : tensor<?x16xf32>)
         : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// The down projection's reduction of 8192 leaves 64 rows of f32 input in
// 2 MiB; its blocks take 128 rows all the same, whose input fits 8 MiB. The
// up projection's 16 keeps blocks of up to 32768 rows.
// CHECK-LABEL: func.func @long_reduction
// CHECK: arith.ceildivui %{{.*}}, %c32768
// CHECK: arith.ceildivui %{{.*}}, %c128 :
func.func @long_reduction(%x: tensor<?x16xf32>, %slots: tensor<?xi64>,
    %offsets: tensor<3xi64>, %wu: tensor<2x8192x16xf32>,
    %wd: tensor<2x16x8192xf32>) -> tensor<?x16xf32> {
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<2x8192x16xf32>)
         down_proj(%wd : tensor<2x16x8192xf32>)
         {slots_per_token = 1 : i64, activation = #moe.activation<relu>}
         : tensor<?x16xf32>, tensor<?xi64>, tensor<3xi64> -> tensor<?x16xf32>
  return %r : tensor<?x16xf32>
}

// -----

// docs/FAMILY-RULES.md (GPT-OSS, JetMoE): each tile's up and gate sums get
// their expert's bias rows, then clamped SwiGLU: g = min(gate, limit),
// u = clamp(up, -limit, limit), g · sigmoid(alpha · g) · (u + 1). The down
// projection's sums get the down bias before the routing weight scales
// them, and the output bias is added to the whole sum after every expert.
// CHECK-LABEL: func.func @biases_clamped_swiglu
// CHECK-SAME: (%{{[^:]*}}: {{.*}}, %{{[^:]*}}: {{.*}}, %{{[^:]*}}: {{.*}}, %{{[^:]*}}: {{.*}}, %[[W:[^:]*]]: {{.*}}, %{{[^:]*}}: {{.*}}, %{{[^:]*}}: {{.*}}, %{{[^:]*}}: {{.*}}, %[[BG:[^:]*]]: tensor<4x8xf32>, %[[BU:[^:]*]]: tensor<4x8xf32>, %[[BD:[^:]*]]: tensor<4x16xf32>, %[[OB:[^:]*]]: tensor<16xf32>)
// CHECK-DAG: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-DAG: %[[ALPHA:.*]] = arith.constant 1.500000e+00 : f32
// CHECK-DAG: %[[NEG_LIMIT:.*]] = arith.constant -3.000000e+00 : f32
// CHECK-DAG: %[[LIMIT:.*]] = arith.constant 3.000000e+00 : f32
// CHECK: %[[ACC:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
// CHECK-DAG: %[[BG_BUF:.*]] = bufferization.to_buffer %[[BG]] read_only
// CHECK-DAG: %[[BU_BUF:.*]] = bufferization.to_buffer %[[BU]] read_only
// CHECK-DAG: %[[BD_BUF:.*]] = bufferization.to_buffer %[[BD]] read_only
// CHECK-DAG: %[[W_BUF:.*]] = bufferization.to_buffer %[[W]] read_only
// CHECK: scf.for %[[E:.*]] = %{{.*}} to %{{.*}} step
// CHECK: %[[HIDDEN:.*]] = memref.alloc(%{{.*}}) : memref<?x8xf32>
// CHECK: scf.parallel (%[[F0:.*]]) =
// CHECK: vector.fma
// A tile's biases are loaded once for all its rows.
// CHECK: %[[UP_BIAS:.*]] = memref.load %[[BU_BUF]][%[[E]], %[[F0]]] : memref<4x8xf32>
// CHECK: %[[GATE_BIAS:.*]] = memref.load %[[BG_BUF]][%[[E]], %[[F0]]] : memref<4x8xf32>
// CHECK: %[[UP:.*]] = arith.addf %{{.*}}, %[[UP_BIAS]]
// CHECK: %[[GATE:.*]] = arith.addf %{{.*}}, %[[GATE_BIAS]]
// CHECK: %[[G:.*]] = arith.minimumf %[[GATE]], %[[LIMIT]]
// CHECK: %[[U_HIGH:.*]] = arith.minimumf %[[UP]], %[[LIMIT]]
// CHECK: %[[U:.*]] = arith.maximumf %[[U_HIGH]], %[[NEG_LIMIT]]
// CHECK: arith.mulf %[[G]], %[[ALPHA]]
// CHECK: math.exp
// CHECK: %[[GLU:.*]] = arith.mulf %[[G]], %{{.*}}
// CHECK: %[[U1:.*]] = arith.addf %[[U]], %[[ONE]]
// CHECK: %[[H:.*]] = arith.mulf %[[GLU]], %[[U1]]
// CHECK: memref.store %[[H]], %[[HIDDEN]][%{{.*}}, %[[F0]]]
// CHECK: scf.parallel (%[[C0:.*]]) =
// CHECK: vector.load %[[HIDDEN]]
// CHECK: %[[DOWN_BIAS:.*]] = memref.load %[[BD_BUF]][%[[E]], %[[C0]]] : memref<4x16xf32>
// CHECK: %[[D:.*]] = arith.addf %{{.*}}, %[[DOWN_BIAS]]
// CHECK: arith.cmpi sge
// CHECK: %[[WEIGHT:.*]] = memref.load %[[W_BUF]]
// CHECK: %[[TERM:.*]] = arith.mulf %[[WEIGHT]], %[[D]]
// CHECK: %[[OLD:.*]] = memref.load %[[ACC]]
// CHECK: arith.addf %[[OLD]], %[[TERM]]
// CHECK: %[[OB_BUF:.*]] = bufferization.to_buffer %[[OB]] read_only
// CHECK: linalg.generic {{.*}} ins(%[[OB_BUF]] : memref<16xf32>) outs(%[[ACC]] : memref<?x16xf32>)
// CHECK: arith.addf
// CHECK: %[[SUM:.*]] = bufferization.to_tensor %[[ACC]] restrict writable
// CHECK: return %[[SUM]]
// Activation unfused: the biased sums are stored whole and clamped SwiGLU
// is the elementwise pass.
// UNFUSED-ACT-LABEL: func.func @biases_clamped_swiglu
// UNFUSED-ACT: %[[HIDDEN:.*]] = memref.alloc(%[[N:.*]]) : memref<?x8xf32>
// UNFUSED-ACT: %[[UP:.*]] = memref.alloc(%[[N]]) : memref<?x8xf32>
// UNFUSED-ACT: %[[GATE:.*]] = memref.alloc(%[[N]]) : memref<?x8xf32>
// UNFUSED-ACT: %[[UP_BIAS:.*]] = memref.load %{{.*}} : memref<4x8xf32>
// UNFUSED-ACT: %[[UP_SUM:.*]] = arith.addf %{{.*}}, %[[UP_BIAS]]
// UNFUSED-ACT: memref.store %[[UP_SUM]], %[[UP]]
// UNFUSED-ACT: memref.store %{{.*}}, %[[GATE]]
// UNFUSED-ACT: linalg.generic {{.*}} ins(%[[UP]], %[[GATE]] : {{.*}}) outs(%[[HIDDEN]] : {{.*}})
// UNFUSED-ACT: arith.minimumf
// UNFUSED-ACT: arith.minimumf
// UNFUSED-ACT: arith.maximumf
// UNFUSED-ACT: math.exp
// UNFUSED-ACT: linalg.yield
// Combine unfused: moe.expert adds the down bias to its own rows, and the
// output bias stays on moe.combine.
// UNFUSED-COMBINE-LABEL: func.func @biases_clamped_swiglu
// UNFUSED-COMBINE: %[[ROWS_BUF:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
// UNFUSED-COMBINE: arith.minimumf
// UNFUSED-COMBINE: memref.load %{{.*}} : memref<4x16xf32>
// UNFUSED-COMBINE: %[[ROW:.*]] = arith.addf
// UNFUSED-COMBINE: memref.store %[[ROW]], %[[ROWS_BUF]]
// UNFUSED-COMBINE: %[[OUT:.*]] = bufferization.to_tensor %[[ROWS_BUF]]
// UNFUSED-COMBINE: moe.combine %[[OUT]], %{{.*}}, %{{.*}} bias(%{{.*}} : tensor<16xf32>)
func.func @biases_clamped_swiglu(%x: tensor<?x16xf32>, %slots: tensor<?xi64>,
    %offsets: tensor<5xi64>, %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>,
    %wg: tensor<4x8x16xf32>, %wu: tensor<4x8x16xf32>, %wd: tensor<4x16x8xf32>,
    %bg: tensor<4x8xf32>, %bu: tensor<4x8xf32>, %bd: tensor<4x16xf32>,
    %ob: tensor<16xf32>) -> tensor<?x16xf32> {
  %r = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<4x8x16xf32>)
         up_proj(%wu : tensor<4x8x16xf32>) down_proj(%wd : tensor<4x16x8xf32>)
         gate_bias(%bg : tensor<4x8xf32>) up_bias(%bu : tensor<4x8xf32>)
         down_bias(%bd : tensor<4x16xf32>)
         {slots_per_token = 2 : i64,
          activation = #moe.activation<clamped_swiglu>,
          swiglu_alpha = 1.5 : f32, swiglu_limit = 3.0 : f32}
         : tensor<?x16xf32>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  %y = moe.combine %r, %rows, %w bias(%ob : tensor<16xf32>)
         : tensor<?x16xf32>, tensor<?x2xi64>, tensor<?x2xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Routing weights on the input (Llama 4): a tile's up and gate sums are
// scaled by the routing weight of the slot their plan row serves (the
// projections are linear), and combine, which has no weights, adds the
// down projection's sums as they are.
// CHECK-LABEL: func.func @input_weights
// CHECK-SAME: (%[[X:[^:]*]]: {{.*}}, %[[SLOTS:[^:]*]]: {{.*}}, %{{[^:]*}}: {{.*}}, %{{[^:]*}}: {{.*}}, %[[W:[^:]*]]: tensor<?x2xf32>,
// CHECK: %[[ACC:.*]] = memref.alloc(%{{.*}}) : memref<?x16xf32>
// CHECK-DAG: %[[SLOTS_BUF:.*]] = bufferization.to_buffer %[[SLOTS]] read_only
// CHECK-DAG: %[[W_BUF:.*]] = bufferization.to_buffer %[[W]] read_only
// CHECK: scf.for %[[E:.*]] = %{{.*}} to %{{.*}} step
// CHECK: scf.parallel
// CHECK: vector.fma
// CHECK: memref.load %[[SLOTS_BUF]]
// CHECK: %[[SCALE:.*]] = memref.load %[[W_BUF]][%{{.*}}, %{{.*}}] : memref<?x2xf32>
// CHECK: %[[UP:.*]] = arith.mulf %{{.*}}, %[[SCALE]]
// CHECK: %[[GATE:.*]] = arith.mulf %{{.*}}, %[[SCALE]]
// CHECK: arith.negf %[[GATE]]
// CHECK: math.exp
// CHECK: arith.mulf %{{.*}}, %[[UP]]
// The down projection's epilogue: no weight.
// CHECK: scf.parallel
// CHECK: arith.cmpi sge
// CHECK-NOT: memref.load %[[W_BUF]]
// CHECK-NOT: arith.mulf
// CHECK: %[[OLD:.*]] = memref.load %[[ACC]]
// CHECK-NEXT: %[[NEW:.*]] = arith.addf %[[OLD]], %{{.*}}#0 : f32
// CHECK-NEXT: memref.store %[[NEW]], %[[ACC]]
// CHECK: bufferization.to_tensor %[[ACC]]
// CHECK: arith.truncf
// The outer-product tiles scale each lane's row alike.
// BROADCAST-LABEL: func.func @input_weights
// BROADCAST: %[[W_BUF:.*]] = bufferization.to_buffer %{{.*}} read_only : tensor<?x2xf32>
// BROADCAST: vector.broadcast
// BROADCAST: vector.extract
// BROADCAST: %[[SCALE:.*]] = memref.load %[[W_BUF]]
// BROADCAST: arith.mulf %{{.*}}, %[[SCALE]]
// Combine unfused: moe.combine without weights is left as it is.
// UNFUSED-COMBINE-LABEL: func.func @input_weights
// UNFUSED-COMBINE: %[[OUT:.*]] = bufferization.to_tensor
// UNFUSED-COMBINE: moe.combine %[[OUT]], %{{.*}} : tensor<?x16xf32>, tensor<?x2xi64> -> tensor<?x16xbf16>
func.func @input_weights(%x: tensor<?x16xbf16>, %slots: tensor<?xi64>,
    %offsets: tensor<5xi64>, %rows: tensor<?x2xi64>, %w: tensor<?x2xf32>,
    %wg: tensor<4x8x16xbf16>, %wu: tensor<4x8x16xbf16>,
    %wd: tensor<4x16x8xbf16>) -> tensor<?x16xbf16> {
  %r = moe.expert %x, %slots, %offsets gate_proj(%wg : tensor<4x8x16xbf16>)
         up_proj(%wu : tensor<4x8x16xbf16>) down_proj(%wd : tensor<4x16x8xbf16>)
         input_weights(%w : tensor<?x2xf32>) {slots_per_token = 2 : i64}
         : tensor<?x16xbf16>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  %y = moe.combine %r, %rows
         : tensor<?x16xf32>, tensor<?x2xi64> -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// A standalone moe.expert with a bf16 up bias (widened) and a plain FFN.
// CHECK-LABEL: func.func @expert_up_bias_bf16
// CHECK: %[[BU_BUF:.*]] = bufferization.to_buffer %{{.*}} read_only : tensor<4x8xbf16> to memref<4x8xbf16>
// CHECK: vector.fma
// CHECK: %[[B:.*]] = memref.load %[[BU_BUF]]
// CHECK: %[[B32:.*]] = arith.extf %[[B]] : bf16 to f32
// CHECK: arith.addf %{{.*}}, %[[B32]]
// CHECK: math.erf
func.func @expert_up_bias_bf16(%x: tensor<?x16xbf16>, %slots: tensor<?xi64>,
    %offsets: tensor<5xi64>, %wu: tensor<4x8x16xbf16>,
    %wd: tensor<4x16x8xbf16>, %bu: tensor<4x8xbf16>) -> tensor<?x16xf32> {
  %r = moe.expert %x, %slots, %offsets up_proj(%wu : tensor<4x8x16xbf16>)
         down_proj(%wd : tensor<4x16x8xbf16>) up_bias(%bu : tensor<4x8xbf16>)
         {slots_per_token = 1 : i64, activation = #moe.activation<gelu>}
         : tensor<?x16xbf16>, tensor<?xi64>, tensor<5xi64> -> tensor<?x16xf32>
  return %r : tensor<?x16xf32>
}

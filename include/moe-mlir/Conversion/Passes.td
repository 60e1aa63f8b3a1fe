//===- Passes.td - Lowerings out of the moe dialect --------*- tablegen -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_CONVERSION_PASSES_TD
#define MOE_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

defvar MoELoweringDialects = [
  "::mlir::arith::ArithDialect",
  "::mlir::bufferization::BufferizationDialect",
  "::mlir::linalg::LinalgDialect",
  "::mlir::math::MathDialect",
  "::mlir::memref::MemRefDialect",
  "::mlir::scf::SCFDialect",
  "::mlir::tensor::TensorDialect"
];

def MoELowerGate : Pass<"moe-lower-gate"> {
  let summary = "Lower moe.gate to linalg, scf and memref";
  let description = [{
    The router matmul and the scoring (softmax or sigmoid, biases) become
    `linalg.generic` ops on tensors, all in f32. Selection is a per-token
    loop nest (`scf.for` over memrefs): grouped routing keeps the best
    `topk_group` groups, then `top_k` rounds each take the allowed expert
    with the largest choice value, the lower index winning ties and a NaN
    never beating a number, so the result is deterministic. Weights are then
    normalized and scaled, and with a capacity factor a second loop grants
    slots slot-major in token order and drops the rest (id -1, weight 0).
    Expert choice selects, for each expert, its highest-scoring tokens.

    With `fuse-scores` (the default) token choice runs as one loop nest per
    tile of `token-tile` tokens: the router matmul and the scoring write a
    `[token-tile, E]` scratch buffer, and each token of the tile is selected
    from it at once, so the `[T, E]` score matrix never exists. Expert
    choice ranks all tokens for each expert and keeps the whole matrix.
  }];
  let dependentDialects = MoELoweringDialects;
  let options = [
    Option<"fuseScores", "fuse-scores", "bool", /*default=*/"true",
           "Score and select per tile of tokens (no [T, E] matrix)">,
    Option<"tokenTile", "token-tile", "int64_t", /*default=*/"16",
           "Tokens per tile of the fused gate">
  ];
}

def MoELowerDispatch : Pass<"moe-lower-dispatch"> {
  let summary = "Lower moe.dispatch to a routing plan built at run time";
  let description = [{
    Three passes over the `[T, K]` ids, as `scf.for` loops over memrefs: a
    histogram of the slots each expert takes, the prefix sum of the counts
    each rounded up to `row_tile` (the padded segment offsets), and a stable
    counting sort that writes each slot into its expert's segment (`slots`)
    and the row back into `slot_rows`. Padding rows hold -1. Only indices
    move; the plan is O(T·K) integers.
  }];
  let dependentDialects = MoELoweringDialects;
}

def MoELowerExperts : Pass<"moe-lower-experts"> {
  let summary = "Lower moe.expert and moe.shared_expert to linalg";
  let description = [{
    `moe.expert` becomes a loop over experts; for expert `e` three
    `linalg.generic` contractions run over its plan segment
    `[offsets[e], offsets[e+1])`: the gate and up projections read their
    input rows through the plan (`x[slots[r] / K]`, a gather fused into the
    GEMM, so no permuted copy of `x` exists), the activation and the gate
    product form the `[rows, F]` hidden block, and the down projection
    writes the segment of the result. Weights are read in place through
    slices of the `[E, F, H]` / `[E, H, F]` tensors, never copied.
    Accumulation is in f32 whatever the data type. `moe.shared_expert` is
    the same FFN over every token, scaled by `sigmoid(x · expert_gate)` when
    that gate is present.
  }];
  let dependentDialects = MoELoweringDialects;
}

def MoELowerCombine : Pass<"moe-lower-combine"> {
  let summary = "Lower moe.combine to a gather-reduction in token order";
  let description = [{
    One `linalg.generic` over `(t, h, j)` with `j` a reduction: each token
    reads its expert rows through `slot_rows` and sums them weighted, in
    f32, on top of the shared expert's output when there is one; dropped
    slots (-1) add nothing. No scatter-add, no atomics: every output row has
    one writer. The f32 sum is rounded once to the result's element type.
  }];
  let dependentDialects = MoELoweringDialects;
}

#endif // MOE_CONVERSION_PASSES_TD

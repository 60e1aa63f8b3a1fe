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
  let summary = "Lower moe.gate and moe.refine to linalg, scf and memref";
  let description = [{
    Scoring runs on buffers, in f32 whatever the input type: the router
    matmul (plus `router_bias`) is a `linalg.generic` into a `[tile, E]`
    score buffer, then each row becomes softmax (max-subtracted) or sigmoid
    scores. Selection is a per-token loop nest (`scf.for`): grouped routing
    keeps the best `topk_group` groups, then `top_k` rounds each take the
    allowed expert with the largest choice value, the lower index winning
    ties and a NaN never beating a number, so the result is deterministic.
    Weights are then normalized and scaled, and with a capacity factor a
    second loop grants slots slot-major in token order and drops the rest
    (id -1, weight 0). Expert choice selects, for each expert, its
    highest-scoring tokens.

    With `fuse-scores` (the default) token choice runs as one loop nest per
    tile of `token-tile` tokens: each token of the tile is selected as soon
    as its tile is scored, so the `[T, E]` score matrix never exists;
    without it the tile is all T tokens. Expert choice ranks all tokens for
    each expert and always scores the whole matrix.

    A dense mixture (`top_k` = E) whose gate is `unordered` skips selection
    altogether: slot e holds expert e, and only the scores' sum (for the
    normalization) remains, O(E) per token instead of O(E·top_k). Without
    `unordered` (the route kernel, capacity) the selection loop runs, so
    slots stay in descending choice order.

    `moe.refine` (an inner level of a hierarchy) runs the same scoring and
    selection per token and parent slot: the parent's `[E, H]` block of the
    stacked router (a rank-reduced subview) scores the token into a
    `[1, E]` row, the selection writes the slot's `top_k` children into
    their block of the result, which then gets the parent's id offset and
    weight; a dropped parent slot drops all its children.
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
  let summary = "Lower moe.expert (with its moe.combine) and moe.shared_expert";
  let description = [{
    `moe.expert` becomes a loop over experts on buffers; expert `e` runs its
    projections over its plan segment `[offsets[e], offsets[e+1])` as
    register-tiled dot products in the vector dialect: 4 input rows by 4
    weight rows, 16-lane f32 accumulators along the reduction, each row
    loaded once per step, weights read in place from the stacked
    `[E, F, H]` / `[E, H, F]` buffers in their `nn.Linear` layout.
    Accumulation is in f32 whatever the data type. Three fusions, each with
    a flag:

    * `fuse-gather`: the gate and up projections read their input rows
      through the plan (`x[slots[r] / K]`), so no permuted copy of `x`
      exists; off, each segment's rows are copied out first.
    * `fuse-activation`: a tile computes matching gate and up sums together
      and writes `act(gate) ⊙ up` straight into the `[rows, F]` hidden
      block; off, both `[rows, F]` projections are stored whole first.
    * `fuse-combine`: a `moe.combine` of a `moe.expert` is lowered with it:
      the down projection's epilogue scales each tile's sums by the slot's
      routing weight and adds them to the token's f32 output row, so the
      `[rows, H]` expert output never exists. Experts run in order, so the
      sum is deterministic. Off, `moe.expert` writes its `[rows, H]` result
      and `moe-lower-combine` gathers it.

    `moe.shared_expert` is the same FFN kernel over every token, scaled by
    `sigmoid(x · expert_gate)` when that gate is present; the fused combine
    adds the routed experts into the buffer it wrote, with no copy. Experts
    without rows are skipped.

    With `parallel`, each projection's column tiles form an `scf.parallel`
    loop: threads own disjoint columns of the hidden block and of the
    token outputs, so there are no races and no atomics, and every output
    element is summed in the same order whatever the thread count.
  }];
  let dependentDialects = !listconcat(MoELoweringDialects,
                                      ["::mlir::vector::VectorDialect"]);
  let options = [
    Option<"fuseGather", "fuse-gather", "bool", /*default=*/"true",
           "Read expert input rows through the plan (no gathered copy)">,
    Option<"fuseActivation", "fuse-activation", "bool", /*default=*/"true",
           "Compute act(gate) * up per tile (no whole gate/up)">,
    Option<"fuseCombine", "fuse-combine", "bool", /*default=*/"true",
           "Accumulate the down projection into the token outputs">,
    Option<"parallel", "parallel", "bool", /*default=*/"true",
           "Split each projection's column tiles across threads "
           "(scf.parallel)">
  ];
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

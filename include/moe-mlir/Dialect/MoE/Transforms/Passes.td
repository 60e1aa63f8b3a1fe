//===- Passes.td - Transformations of the moe dialect ------*- tablegen -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD
#define MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def MoEExpand : Pass<"moe-expand"> {
  let summary = "Split every moe.layer and moe.local_experts into gate, "
                "refine, dispatch, expert and combine";
  let description = [{
    Rewrites each `moe.layer` into its stages, so that later passes can tile
    and fuse them one by one:

    ```
    ids, weights            = moe.gate(x, router, biases)
    counts, offsets, slots,
    slot_rows               = moe.dispatch(ids)
    rows                    = moe.expert(x, slots, offsets, Wg, Wu, Wd)
    shared                  = moe.shared_expert(x, Wsg, Wsu, Wsd, wsgate)
    y                       = moe.combine(rows, slot_rows, weights, shared)
    ```

    A hierarchical layer (`levels` not empty) adds one `moe.refine` per
    inner level after the gate, each routing one level down, so that
    dispatch, experts and combine run over the leaf experts (the product of
    every level's experts) with the leaves' slots (the product of the
    levels' `top_k`):

    ```
    ids, weights = moe.gate(x, router, biases)
    ids, weights = moe.refine(x, ids, weights, level_routers[0], biases)
    ...            (one per inner level)
    ```

    Combine sums over a token's slots in any order, so the gate is marked
    `unordered` when no capacity factor grants slots in order (token
    choice), and every `moe.refine` always is (inner levels are dropless);
    a dense level then needs no selection.

    A `moe.local_experts` (a shard's experts over rows already routed)
    becomes the same three stages with one slot per row: its ids give the
    plan, and combine scales each row by its weight.

    ```
    counts, offsets, slots,
    slot_rows               = moe.dispatch(ids)
    rows                    = moe.expert(x, slots, offsets, Wg, Wu, Wd)
    out                     = moe.combine(rows, slot_rows, weights)
    ```

    The plan's rows are padded to `row-tile`, the row tile the expert
    kernels will use; 1 means no padding.
  }];
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
  let options = [
    Option<"rowTile", "row-tile", "int64_t", /*default=*/"1",
           "Rows per expert tile: each expert's segment of the plan is "
           "padded to a multiple of it">
  ];
}

#endif // MOE_DIALECT_MOE_TRANSFORMS_PASSES_TD

//===- MoEOps.td - Operations of the moe dialect -----------*- tablegen -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_IR_MOEOPS_TD
#define MOE_DIALECT_MOE_IR_MOEOPS_TD

include "moe-mlir/Dialect/MoE/IR/MoEAttrs.td"
include "mlir/IR/OpBase.td"
include "mlir/Interfaces/DestinationStyleOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/TilingInterface.td"

//===----------------------------------------------------------------------===//
// Type and attribute constraints
//===----------------------------------------------------------------------===//

/// Activations and weights: f32, or bf16/f16 with f32 accumulation.
def MoE_DataTensor1D : 1DTensorOf<[F32, BF16, F16]>;
def MoE_DataTensor2D : 2DTensorOf<[F32, BF16, F16]>;
def MoE_DataTensor3D : 3DTensorOf<[F32, BF16, F16]>;
def MoE_F32Tensor2D : 2DTensorOf<[F32]>;
def MoE_F32Tensor3D : 3DTensorOf<[F32]>;
def MoE_I32Tensor2D : 2DTensorOf<[I32]>;
// The routing plan's indices: 64-bit, since T·K slots may pass 2^31.
def MoE_PlanTensor1D : 1DTensorOf<[I64]>;
def MoE_PlanTensor2D : 2DTensorOf<[I64]>;

def MoE_PositiveI64Attr : ConfinedAttr<I64Attr, [IntPositive]>;

class MoE_Op<string mnemonic, list<Trait> traits = []>
    : Op<MoE_Dialect, mnemonic, !listconcat(traits, [Pure])>;

/// The token-choice routing attributes shared by `moe.layer`, `moe.gate`
/// and `moe.refine` (SPEC §1, routing steps 1-6).
defvar MoE_TokenChoiceAttributes = (ins
  MoE_PositiveI64Attr:$top_k,
  DefaultValuedAttr<MoE_ScoringAttr, "::mlir::moe::Scoring::softmax">:$scoring,
  DefaultValuedAttr<BoolAttr, "true">:$normalize_top_k,
  DefaultValuedAttr<F32Attr, "1.0f">:$routed_scaling_factor,
  DefaultValuedAttr<MoE_PositiveI64Attr, "1">:$n_group,
  DefaultValuedAttr<MoE_PositiveI64Attr, "1">:$topk_group,
  DefaultValuedAttr<MoE_GroupScoreAttr,
                    "::mlir::moe::GroupScore::top2_sum">:$group_score,
  DefaultValuedAttr<F32Attr, "1.0f">:$normalize_p,
  DefaultValuedAttr<F32Attr, "0.01f">:$sparsemixer_eps
);

/// The expert FFN's activation, and the parameters of clamped_swiglu
/// (docs/FAMILY-RULES.md).
defvar MoE_ActivationAttributes = (ins
  DefaultValuedAttr<MoE_ActivationAttr,
                    "::mlir::moe::Activation::silu">:$activation,
  DefaultValuedAttr<F32Attr, "1.702f">:$swiglu_alpha,
  DefaultValuedAttr<F32Attr, "7.0f">:$swiglu_limit,
  DefaultValuedAttr<F32Attr, "1.0f">:$swiglu_up_offset
);

/// The routing attributes shared by `moe.layer` and `moe.gate` (SPEC §1,
/// routing steps 1-7 and expert choice).
defvar MoE_RoutingAttributes = !con(MoE_TokenChoiceAttributes, (ins
  DefaultValuedAttr<MoE_RoutingAttr,
                    "::mlir::moe::Routing::token_choice">:$routing,
  DefaultValuedAttr<F64Attr, "0.0">:$capacity_factor
));

//===----------------------------------------------------------------------===//
// DequantizeOp
//===----------------------------------------------------------------------===//

def MoE_DequantizeOp : MoE_Op<"dequantize", [AttrSizedOperandSegments]> {
  let summary = "quantized projection weights as the f32 values they stand for";
  let description = [{
    The weights `[..., N, K]` that quantized elements, scales and zero
    points stand for, with one scale and zero point per group of
    `group_size` consecutive elements along K (a row of the `nn.Linear`
    layout): `w[..., n, k] = (q[..., n, k] - zero[..., n, k / group_size]) ·
    scale[..., n, k / group_size]`. `format` says how `packed`'s bytes
    (i8) hold q:

    * `int8`: `[..., N, K]`, a signed byte; the zero point is 0.
    * `f8e4m3`: `[..., N, K]`, float8 e4m3fn bits (1 sign, 4 exponent
      bits biased by 7, 3 mantissa bits; NaN is not given a meaning).
    * `int4`: `[..., N, K / 2]`, unsigned nibbles, 0 to 15; the zero point
      is 8 without `zeros` (unsigned bytes).
    * `f4e2m1`: `[..., N, K / 2]`, float4 e2m1 nibbles (1 sign, 2 exponent
      bits biased by 1, 1 mantissa bit: ±0 to ±6).

    Nibbles are ordered within each group: byte b holds element b in its
    low nibble and element b + group_size / 2 in its high nibble. `scales`
    is `[..., N, K / group_size]`: f32, or for `f4e2m1` i8 holding e8m0
    exponents, 2^(e - 127) (an exponent of 0 stands for 0).

    With `perm` (`[..., K]`, i32, a permutation of 0 to K - 1 per row of
    the leading dimensions), the columns are stored in another order, as
    act-order GPTQ checkpoints keep them so that groups stay contiguous:
    column k of `packed`, and its group, holds the weight of input element
    `perm[..., k]`, so the result is `w[..., n, perm[..., k]]`.

    The op only names the weights: the expert decompositions read the
    integers inside their contractions, and no dequantized weight is ever
    stored. A `moe.dequantize` that an expert op does not consume is an
    error when the experts are decomposed.

    ```mlir
    %w = moe.dequantize %q, %scales
           {format = #moe.weight_format<int4>, group_size = 32 : i64}
           : tensor<8x128x32xi8>, tensor<8x128x2xf32> -> tensor<8x128x64xf32>
    ```
  }];
  let arguments = (ins
    RankedTensorOf<[I8]>:$packed,
    RankedTensorOf<[F32, I8]>:$scales,
    Optional<RankedTensorOf<[I8]>>:$zeros,
    Optional<RankedTensorOf<[I32]>>:$perm,
    MoE_WeightFormatAttr:$format,
    MoE_PositiveI64Attr:$group_size);
  let results = (outs RankedTensorOf<[F32]>:$result);
  let extraClassDeclaration = [{
    /// Bits a quantized element takes: 4 or 8.
    int64_t getBits() {
      return getFormat() == WeightFormat::int4 ||
                     getFormat() == WeightFormat::f4e2m1
                 ? 4
                 : 8;
    }
  }];
  let assemblyFormat = [{
    $packed `,` $scales (`zeros` `(` $zeros^ `:` type($zeros) `)`)?
    (`perm` `(` $perm^ `:` type($perm) `)`)? attr-dict
    `:` type($packed) `,` type($scales) `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// LayerOp
//===----------------------------------------------------------------------===//

def MoE_LayerOp : MoE_Op<"layer", [AttrSizedOperandSegments]> {
  let summary = "a whole Mixture-of-Experts layer";
  let description = [{
    Computes SPEC §1 in one op: routes every token of `input` (`[T, H]`) with
    `router` (`[E, H]`), runs the chosen experts and the optional shared
    expert, and returns `y` (`[T, H]`, the input's element type).

    Routed experts are gated when `gate_proj` is present
    (`act(v·Wg^T) ⊙ (v·Wu^T)`), plain otherwise (`act(v·Wu^T)`); the shared
    expert follows the same rule and is present when `shared_up_proj` is.
    The routing attributes are those of `moe.gate`. `moe-expand` rewrites
    this op into gate, dispatch, expert, shared_expert and combine.

    The rules of docs/FAMILY-RULES.md: `gate_bias`, `up_bias` (`[E, F]`)
    and `down_bias` (`[E, H]`) are the routed experts' biases (GPT-OSS);
    `activation = clamped_swiglu` with `swiglu_alpha`, `swiglu_limit` and
    `swiglu_up_offset` is GPT-OSS's (and GLM-5-Next's) clamped SwiGLU, for the routed and shared experts;
    `router_weight_on_input` runs each expert on `w·x` and adds its output
    unweighted (Llama 4); `output_bias` (`[H]`) is added to every token's
    output (JetMoE).

    Hierarchical MoE: when `levels` is not empty every routed expert is
    itself an MoE layer, to any depth. `router` (`[E1, H]`) routes among the
    E1 experts of level 1; `levels[i]` describes level `l = i + 2` (its
    token-choice routing, dropless) and `level_routers[i]` is its router,
    one `[El, H]` matrix per expert of the level above, stacked as
    `[E1·…·E(l-1), El, H]`. `level_router_biases` and
    `level_selection_biases` hold `[E1·…·E(l-1), El]` biases for the levels
    whose `#moe.level` asks for them, in level order. The expert weights are
    the leaves', stacked over every level: `[E1·…·EL, F, H]`. A token's
    output is `Σ_j w[t,j] · MoE_ids[t,j](x[t])` with `MoE_e` the inner
    layer of expert e; the capacity, expert choice and shared expert
    attributes apply to level 1 only.

    Example (Mixtral-like, 8 experts, top-2, one dynamic token dimension):

    ```mlir
    %y = moe.layer %x router(%wr : tensor<8x64xf32>)
           gate_proj(%wg : tensor<8x128x64xf32>)
           up_proj(%wu : tensor<8x128x64xf32>)
           down_proj(%wd : tensor<8x64x128xf32>)
           {top_k = 2 : i64} : tensor<?x64xf32> -> tensor<?x64xf32>
    ```

    Two levels: 4 experts of top-2, each an MoE of 8 sigmoid-scored experts
    of top-2, so 32 leaf FFNs and 4 leaf slots per token:

    ```mlir
    %y = moe.layer %x router(%wr : tensor<4x64xf32>)
           level_routers(%wr2 : tensor<4x8x64xf32>)
           up_proj(%wu : tensor<32x128x64xf32>)
           down_proj(%wd : tensor<32x64x128xf32>)
           {top_k = 2 : i64,
            levels = [#moe.level<top_k = 2, scoring = sigmoid>]}
           : tensor<?x64xf32> -> tensor<?x64xf32>
    ```
  }];
  let arguments = !con((ins
    MoE_DataTensor2D:$input,
    MoE_DataTensor2D:$router,
    Optional<MoE_DataTensor1D>:$router_bias,
    Optional<MoE_DataTensor1D>:$selection_bias,
    Variadic<MoE_DataTensor3D>:$level_routers,
    Variadic<MoE_DataTensor2D>:$level_router_biases,
    Variadic<MoE_DataTensor2D>:$level_selection_biases,
    Optional<MoE_DataTensor3D>:$gate_proj,
    MoE_DataTensor3D:$up_proj,
    MoE_DataTensor3D:$down_proj,
    Optional<MoE_DataTensor2D>:$gate_bias,
    Optional<MoE_DataTensor2D>:$up_bias,
    Optional<MoE_DataTensor2D>:$down_bias,
    Optional<MoE_DataTensor2D>:$shared_gate_proj,
    Optional<MoE_DataTensor2D>:$shared_up_proj,
    Optional<MoE_DataTensor2D>:$shared_down_proj,
    Optional<MoE_DataTensor1D>:$shared_expert_gate,
    Optional<MoE_DataTensor1D>:$output_bias),
    MoE_RoutingAttributes,
    MoE_ActivationAttributes,
    (ins UnitAttr:$router_weight_on_input,
         DefaultValuedAttr<MoE_LevelArrayAttr, "{}">:$levels));
  let results = (outs MoE_DataTensor2D:$output);
  let assemblyFormat = [{
    $input `router` `(` $router `:` type($router) `)`
    (`router_bias` `(` $router_bias^ `:` type($router_bias) `)`)?
    (`selection_bias` `(` $selection_bias^ `:` type($selection_bias) `)`)?
    (`level_routers` `(` $level_routers^ `:` type($level_routers) `)`)?
    (`level_router_biases` `(` $level_router_biases^ `:`
     type($level_router_biases) `)`)?
    (`level_selection_biases` `(` $level_selection_biases^ `:`
     type($level_selection_biases) `)`)?
    (`gate_proj` `(` $gate_proj^ `:` type($gate_proj) `)`)?
    `up_proj` `(` $up_proj `:` type($up_proj) `)`
    `down_proj` `(` $down_proj `:` type($down_proj) `)`
    (`gate_bias` `(` $gate_bias^ `:` type($gate_bias) `)`)?
    (`up_bias` `(` $up_bias^ `:` type($up_bias) `)`)?
    (`down_bias` `(` $down_bias^ `:` type($down_bias) `)`)?
    (`shared_gate_proj` `(` $shared_gate_proj^ `:`
     type($shared_gate_proj) `)`)?
    (`shared_up_proj` `(` $shared_up_proj^ `:`
     type($shared_up_proj) `)`)?
    (`shared_down_proj` `(` $shared_down_proj^ `:`
     type($shared_down_proj) `)`)?
    (`shared_expert_gate` `(` $shared_expert_gate^ `:`
     type($shared_expert_gate) `)`)?
    (`output_bias` `(` $output_bias^ `:` type($output_bias) `)`)?
    attr-dict `:` type($input) `->` type($output)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// GateOp
//===----------------------------------------------------------------------===//

def MoE_GateOp : MoE_Op<"gate", [AttrSizedOperandSegments]> {
  let summary = "router scores, chosen expert ids and routing weights";
  let description = [{
    SPEC §1 routing, in f32 whatever the input type: `logits = x·Wr^T (+
    router_bias)`, softmax or sigmoid scores, `selection_bias` added for the
    choice only, grouped selection when `n_group > 1` (a group scored by
    `group_score`, only the best `topk_group` groups allowed), the top
    `top_k` experts by descending choice value (ties to the lower index),
    weights normalized (`normalize_top_k`, by their `normalize_p`-norm) and
    scaled (`routed_scaling_factor`). `scoring = sparsemixer` (PhiMoE)
    chooses by the logits and weighs slot j by a softmax over the experts
    not chosen before it whose logits lie within `2·sparsemixer_eps`
    (relative) of its own (docs/FAMILY-RULES.md). With `capacity_factor > 0` each expert grants
    at most `ceil(capacity_factor·T·k/E)` slots, slot-major in token order;
    a dropped slot has id -1 and weight 0.

    Results are per token slot: `ids` and `weights` are `[T, top_k]` for
    token choice. For `expert_choice` they are `[T, E]`: slot `e` of token
    `t` holds `e` and `scores[t, e]` when expert `e` took token `t`, and -1
    and 0 otherwise, so that later stages treat both kinds alike.

    `unordered` says that the consumer sums over a token's slots and does
    not care in which order they come (never with a capacity factor, whose
    grants follow the slot order). A dense mixture (`top_k` = E, every
    expert chosen) then needs no selection: slot `e` holds expert `e`.
    Without it, slots always come in descending choice order.

    ```mlir
    %ids, %w = moe.gate %x, %wr selection_bias(%b : tensor<64xf32>)
                 {top_k = 6 : i64, scoring = #moe.scoring<sigmoid>,
                  n_group = 8 : i64, topk_group = 3 : i64}
                 : tensor<?x128xf32>, tensor<64x128xf32>
                 -> tensor<?x6xi32>, tensor<?x6xf32>
    ```
  }];
  let arguments = !con((ins
    MoE_DataTensor2D:$input,
    MoE_DataTensor2D:$router,
    Optional<MoE_DataTensor1D>:$router_bias,
    Optional<MoE_DataTensor1D>:$selection_bias),
    MoE_RoutingAttributes,
    (ins UnitAttr:$unordered));
  let results = (outs MoE_I32Tensor2D:$ids, MoE_F32Tensor2D:$weights);
  let assemblyFormat = [{
    $input `,` $router
    (`router_bias` `(` $router_bias^ `:` type($router_bias) `)`)?
    (`selection_bias` `(` $selection_bias^ `:` type($selection_bias) `)`)?
    attr-dict `:` type($input) `,` type($router) `->` type($ids) `,`
    type($weights)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// SelectOp
//===----------------------------------------------------------------------===//

def MoE_SelectOp : MoE_Op<"select", [
    DestinationStyleOpInterface,
    DeclareOpInterfaceMethods<TilingInterface,
      ["getLoopIteratorTypes", "getIterationDomain", "getTiledImplementation",
       "getResultTilePosition"]>]> {
  let summary = "expert ids and routing weights from router logits";
  let description = [{
    `moe.gate` after its router contraction: `logits` (`[T, E]`, f32, the
    router bias already added) become scores and the scores a selection,
    by the rules and attributes of `moe.gate`, into the destinations
    `ids_init` and `weights_init` (`[T, top_k]`, or `[T, E]` for expert
    choice). `moe-decompose-gate` creates it.

    Token choice without a capacity factor selects for each token from its
    own row alone, so the op implements TilingInterface over its tokens:
    tiled with its producers fused (the router contraction), only a tile's
    rows of logits ever exist. Expert choice and capacity compare tokens
    with each other and refuse to be tiled.

    ```mlir
    %ids, %w = moe.select %logits outs(%ids0, %w0 : tensor<?x2xi32>, tensor<?x2xf32>)
                 {top_k = 2 : i64} : tensor<?x8xf32> -> tensor<?x2xi32>, tensor<?x2xf32>
    ```
  }];
  let arguments = !con((ins
    MoE_F32Tensor2D:$logits,
    Optional<MoE_DataTensor1D>:$selection_bias,
    MoE_I32Tensor2D:$ids_init,
    MoE_F32Tensor2D:$weights_init),
    MoE_RoutingAttributes,
    (ins UnitAttr:$unordered));
  let results = (outs MoE_I32Tensor2D:$ids, MoE_F32Tensor2D:$weights);
  let assemblyFormat = [{
    $logits
    (`selection_bias` `(` $selection_bias^ `:` type($selection_bias) `)`)?
    `outs` `(` $ids_init `,` $weights_init `:` type($ids_init) `,`
    type($weights_init) `)`
    attr-dict `:` type($logits) `->` type($ids) `,` type($weights)
  }];
  let extraClassDeclaration = [{
    ::mlir::MutableOperandRange getDpsInitsMutable() {
      return ::mlir::MutableOperandRange(
          getOperation(), getIdsInitMutable().getOperandNumber(), 2);
    }
    /// Whether each token's selection depends on its own logits alone.
    bool isTokenwise() {
      return getRouting() == ::mlir::moe::Routing::token_choice &&
             getCapacityFactor().convertToDouble() == 0;
    }
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// RefineOp
//===----------------------------------------------------------------------===//

def MoE_RefineOp : MoE_Op<"refine", [AttrSizedOperandSegments]> {
  let summary = "routes each chosen expert's tokens one level down";
  let description = [{
    One inner level of a hierarchical layer, as routing composed with the
    level above. `parent_ids`/`parent_weights` (`[T, K]`) are the routing
    so far, in the space of the P experts of the level above; each of them
    is an MoE layer of E experts whose routers are stacked in `router`
    (`[P, E, H]`), with `router_bias` and `selection_bias` (`[P, E]`) when
    present. For each token `t` and slot `j` with `p = parent_ids[t, j] >=
    0`, the token is routed by SPEC §1 steps 1-6 (token choice, dropless,
    the attributes of `moe.gate`) with `router[p]` and the biases' row `p`,
    giving `top_k` ids `i` and weights `v` in descending choice order; slot
    `j·top_k + s` of the result then holds the id `p·E + i_s` and the weight
    `parent_weights[t, j] · v_s`. A dropped parent slot (-1) gives `top_k`
    dropped slots (-1, weight 0).

    The result (`[T, K·top_k]`) is routing in the space of the P·E experts
    of this level, so a chain of `moe.refine` after `moe.gate` routes to the
    leaves of a hierarchy and dispatch, experts and combine run on it as on
    a flat layer. `unordered` is `moe.gate`'s: a dense level (`top_k` = E)
    then takes every expert without a selection loop.

    ```mlir
    %ids2, %w2 = moe.refine %x, %ids, %w, %wr2
                   selection_bias(%sb2 : tensor<4x8xf32>)
                   {top_k = 2 : i64, scoring = #moe.scoring<sigmoid>}
                   : tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>,
                     tensor<4x8x64xf32> -> tensor<?x4xi32>, tensor<?x4xf32>
    ```
  }];
  let arguments = !con((ins
    MoE_DataTensor2D:$input,
    MoE_I32Tensor2D:$parent_ids,
    MoE_F32Tensor2D:$parent_weights,
    MoE_DataTensor3D:$router,
    Optional<MoE_DataTensor2D>:$router_bias,
    Optional<MoE_DataTensor2D>:$selection_bias),
    MoE_TokenChoiceAttributes,
    (ins UnitAttr:$unordered));
  let results = (outs MoE_I32Tensor2D:$ids, MoE_F32Tensor2D:$weights);
  let assemblyFormat = [{
    $input `,` $parent_ids `,` $parent_weights `,` $router
    (`router_bias` `(` $router_bias^ `:` type($router_bias) `)`)?
    (`selection_bias` `(` $selection_bias^ `:` type($selection_bias) `)`)?
    attr-dict `:` type($input) `,` type($parent_ids) `,`
    type($parent_weights) `,` type($router) `->` type($ids) `,`
    type($weights)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// RefineSelectOp
//===----------------------------------------------------------------------===//

def MoE_RefineSelectOp : MoE_Op<"refine_select"> {
  let summary = "one inner level's selection from its router logits";
  let description = [{
    `moe.refine` after its router contraction: `logits` (`[T, P, E]`, f32,
    each parent's router bias already added) hold each token's logits under
    every one of the P parents' routers. For each token `t` and slot `j`
    with `p = parent_ids[t, j] >= 0`, row `logits[t, p]` becomes scores and
    a selection by the rules and attributes of `moe.refine`, with row `p`
    of `selection_bias` (`[P, E]`) when present, into slots `j·top_k` to
    `(j+1)·top_k - 1` of the results, as `moe.refine` writes them.
    `moe-decompose-gate` creates it.

    ```mlir
    %ids2, %w2 = moe.refine_select %logits, %ids, %w {top_k = 2 : i64}
                   : tensor<?x4x8xf32>, tensor<?x2xi32>, tensor<?x2xf32>
                   -> tensor<?x4xi32>, tensor<?x4xf32>
    ```
  }];
  let arguments = !con((ins
    MoE_F32Tensor3D:$logits,
    MoE_I32Tensor2D:$parent_ids,
    MoE_F32Tensor2D:$parent_weights,
    Optional<MoE_DataTensor2D>:$selection_bias),
    MoE_TokenChoiceAttributes,
    (ins UnitAttr:$unordered));
  let results = (outs MoE_I32Tensor2D:$ids, MoE_F32Tensor2D:$weights);
  let assemblyFormat = [{
    $logits `,` $parent_ids `,` $parent_weights
    (`selection_bias` `(` $selection_bias^ `:` type($selection_bias) `)`)?
    attr-dict `:` type($logits) `,` type($parent_ids) `,`
    type($parent_weights) `->` type($ids) `,` type($weights)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// DispatchOp
//===----------------------------------------------------------------------===//

def MoE_DispatchOp : MoE_Op<"dispatch"> {
  let summary = "the routing plan: token slots grouped by expert";
  let description = [{
    Turns the per-slot expert ids (`[T, K]`, -1 for a slot no expert takes)
    into a plan that expert kernels tile by expert:

    * `counts` (`[E]`): the slots each expert takes (the histogram);
    * `offsets` (`[E + 1]`): where each expert's segment starts among the
      plan's rows; every segment is padded to a multiple of `row_tile`, so
      each tile of `row_tile` rows belongs to one expert, and `offsets[E]` is
      the number of rows;
    * `slots` (`[offsets[E]]`): the flat slot index `t·K + j` each row
      serves, in token order within an expert, -1 for padding rows;
    * `slot_rows` (`[T, K]`): the inverse, the row serving each slot, -1 for
      a dropped slot.

    The plan holds indices only: no row of `x` is copied. An expert kernel
    reads its input rows through `slots` (token `slots[r] / K`) and combine
    reads expert rows through `slot_rows`, without a scatter.

    ```mlir
    %counts, %offsets, %slots, %rows = moe.dispatch %ids
        {num_experts = 8 : i64, row_tile = 16 : i64}
        : tensor<?x2xi32> -> tensor<8xi64>, tensor<9xi64>, tensor<?xi64>,
                             tensor<?x2xi64>
    ```
  }];
  let arguments = (ins
    MoE_I32Tensor2D:$ids,
    MoE_PositiveI64Attr:$num_experts,
    DefaultValuedAttr<MoE_PositiveI64Attr, "1">:$row_tile);
  let results = (outs
    MoE_PlanTensor1D:$counts,
    MoE_PlanTensor1D:$offsets,
    MoE_PlanTensor1D:$slots,
    MoE_PlanTensor2D:$slot_rows);
  let assemblyFormat = [{
    $ids attr-dict `:` type($ids) `->` type($counts) `,` type($offsets) `,`
    type($slots) `,` type($slot_rows)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// ExpertOp
//===----------------------------------------------------------------------===//

def MoE_ExpertOp : MoE_Op<"expert", [AttrSizedOperandSegments]> {
  let summary = "every routed expert's FFN over its segment of the plan";
  let description = [{
    For each expert `e` and each plan row `r` in `[offsets[e],
    offsets[e+1])` with `slots[r] >= 0`, computes `FFN_e(input[slots[r] /
    slots_per_token])` into row `r` of the result (`[rows, H]`, f32); padding
    rows are zero. Weights are `[E, F, H]` (`gate_proj`, `up_proj`) and
    `[E, H, F]` (`down_proj`) in PyTorch `nn.Linear` layout, read in place.
    The FFN is gated when `gate_proj` is present, and adds the biases that
    are present (`gate_bias`, `up_bias`: `[E, F]`, `down_bias`: `[E, H]`).
    With `input_weights` (`[T, slots_per_token]`, the routing weights) row
    `r`'s input is first scaled by the weight of slot `slots[r]`.

    ```mlir
    %out = moe.expert %x, %slots, %offsets
             gate_proj(%wg : tensor<8x128x64xf32>)
             up_proj(%wu : tensor<8x128x64xf32>)
             down_proj(%wd : tensor<8x64x128xf32>)
             {slots_per_token = 2 : i64, activation = #moe.activation<gelu>}
             : tensor<?x64xf32>, tensor<?xi64>, tensor<9xi64>
             -> tensor<?x64xf32>
    ```
  }];
  let arguments = !con((ins
    MoE_DataTensor2D:$input,
    MoE_PlanTensor1D:$slots,
    MoE_PlanTensor1D:$offsets,
    Optional<MoE_DataTensor3D>:$gate_proj,
    MoE_DataTensor3D:$up_proj,
    MoE_DataTensor3D:$down_proj,
    Optional<MoE_DataTensor2D>:$gate_bias,
    Optional<MoE_DataTensor2D>:$up_bias,
    Optional<MoE_DataTensor2D>:$down_bias,
    Optional<MoE_F32Tensor2D>:$input_weights,
    MoE_PositiveI64Attr:$slots_per_token),
    MoE_ActivationAttributes);
  let results = (outs MoE_F32Tensor2D:$output);
  let assemblyFormat = [{
    $input `,` $slots `,` $offsets
    (`gate_proj` `(` $gate_proj^ `:` type($gate_proj) `)`)?
    `up_proj` `(` $up_proj `:` type($up_proj) `)`
    `down_proj` `(` $down_proj `:` type($down_proj) `)`
    (`gate_bias` `(` $gate_bias^ `:` type($gate_bias) `)`)?
    (`up_bias` `(` $up_bias^ `:` type($up_bias) `)`)?
    (`down_bias` `(` $down_bias^ `:` type($down_bias) `)`)?
    (`input_weights` `(` $input_weights^ `:` type($input_weights) `)`)?
    attr-dict `:` type($input) `,` type($slots) `,` type($offsets) `->`
    type($output)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// LocalExpertsOp
//===----------------------------------------------------------------------===//

def MoE_LocalExpertsOp : MoE_Op<"local_experts", [AttrSizedOperandSegments]> {
  let summary = "a shard's experts over rows that other ranks sent it";
  let description = [{
    The expert-parallel half of a layer: rows arrive already routed, each
    with the local expert that takes it and its routing weight. For each
    row `r` with `ids[r, 0] >= 0`, computes `weights[r, 0] ·
    FFN_ids[r,0](input[r])` into row `r` of the result (`[N, H]`, f32); a
    row whose id is -1 is zero. The weights are the shard's experts only
    (`[E_local, F, H]`, `[E_local, H, F]`, biases as `moe.expert`'s); ids
    index them. With `router_weight_on_input` the row is
    `FFN_ids[r,0](weights[r, 0] · input[r])`.

    `moe-expand` rewrites it into `moe.dispatch`, `moe.expert` and
    `moe.combine` with one slot per row, so it runs on the same kernels as
    a whole layer.

    ```mlir
    %out = moe.local_experts %rows, %ids, %w
             gate_proj(%wg : tensor<2x128x64xbf16>)
             up_proj(%wu : tensor<2x128x64xbf16>)
             down_proj(%wd : tensor<2x64x128xbf16>)
             : tensor<?x64xbf16>, tensor<?x1xi32>, tensor<?x1xf32>
             -> tensor<?x64xf32>
    ```
  }];
  let arguments = !con((ins
    MoE_DataTensor2D:$input,
    MoE_I32Tensor2D:$ids,
    MoE_F32Tensor2D:$weights,
    Optional<MoE_DataTensor3D>:$gate_proj,
    MoE_DataTensor3D:$up_proj,
    MoE_DataTensor3D:$down_proj,
    Optional<MoE_DataTensor2D>:$gate_bias,
    Optional<MoE_DataTensor2D>:$up_bias,
    Optional<MoE_DataTensor2D>:$down_bias),
    MoE_ActivationAttributes,
    (ins UnitAttr:$router_weight_on_input));
  let results = (outs MoE_F32Tensor2D:$output);
  let assemblyFormat = [{
    $input `,` $ids `,` $weights
    (`gate_proj` `(` $gate_proj^ `:` type($gate_proj) `)`)?
    `up_proj` `(` $up_proj `:` type($up_proj) `)`
    `down_proj` `(` $down_proj `:` type($down_proj) `)`
    (`gate_bias` `(` $gate_bias^ `:` type($gate_bias) `)`)?
    (`up_bias` `(` $up_bias^ `:` type($up_bias) `)`)?
    (`down_bias` `(` $down_bias^ `:` type($down_bias) `)`)?
    attr-dict `:` type($input) `,` type($ids) `,` type($weights) `->`
    type($output)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// SharedExpertOp
//===----------------------------------------------------------------------===//

def MoE_SharedExpertOp : MoE_Op<"shared_expert", [AttrSizedOperandSegments]> {
  let summary = "the dense FFN every token goes through";
  let description = [{
    `FFN_s(x_t)` for every token (`gate_proj`, `up_proj`: `[Fs, H]`,
    `down_proj`: `[H, Fs]`; gated when `gate_proj` is present), scaled by
    `sigmoid(x_t · expert_gate)` when `expert_gate` (`[H]`) is present.
    The result is `[T, H]` in f32.

    ```mlir
    %s = moe.shared_expert %x gate_proj(%sg : tensor<256x64xf32>)
           up_proj(%su : tensor<256x64xf32>) down_proj(%sd : tensor<64x256xf32>)
           expert_gate(%g : tensor<64xf32>)
           : tensor<?x64xf32> -> tensor<?x64xf32>
    ```
  }];
  let arguments = !con((ins
    MoE_DataTensor2D:$input,
    Optional<MoE_DataTensor2D>:$gate_proj,
    MoE_DataTensor2D:$up_proj,
    MoE_DataTensor2D:$down_proj,
    Optional<MoE_DataTensor1D>:$expert_gate),
    MoE_ActivationAttributes);
  let results = (outs MoE_F32Tensor2D:$output);
  let assemblyFormat = [{
    $input
    (`gate_proj` `(` $gate_proj^ `:` type($gate_proj) `)`)?
    `up_proj` `(` $up_proj `:` type($up_proj) `)`
    `down_proj` `(` $down_proj `:` type($down_proj) `)`
    (`expert_gate` `(` $expert_gate^ `:` type($expert_gate) `)`)?
    attr-dict `:` type($input) `->` type($output)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// CombineOp
//===----------------------------------------------------------------------===//

def MoE_CombineOp : MoE_Op<"combine", [AttrSizedOperandSegments]> {
  let summary = "the weighted sum of expert rows back in token order";
  let description = [{
    `y[t] = Σ_j weights[t, j] · expert_output[slot_rows[t, j]]`, skipping
    slots whose row is -1, plus `shared[t]` when `shared` is present, plus
    `bias` (`[H]`) when present. Without `weights` the expert rows are added
    as they are (the experts weighted their input). A gather-reduction per
    token, never a scatter-add. The sum is in f32 and rounded once to the
    result's element type.

    ```mlir
    %y = moe.combine %out, %rows, %w shared(%s : tensor<?x64xf32>)
           : tensor<?x64xf32>, tensor<?x2xi64>, tensor<?x2xf32>
           -> tensor<?x64xbf16>
    ```
  }];
  let arguments = (ins
    MoE_F32Tensor2D:$expert_output,
    MoE_PlanTensor2D:$slot_rows,
    Optional<MoE_F32Tensor2D>:$weights,
    Optional<MoE_F32Tensor2D>:$shared,
    Optional<MoE_DataTensor1D>:$bias);
  let results = (outs MoE_DataTensor2D:$output);
  let assemblyFormat = [{
    $expert_output `,` $slot_rows (`,` $weights^)?
    (`shared` `(` $shared^ `:` type($shared) `)`)?
    (`bias` `(` $bias^ `:` type($bias) `)`)?
    attr-dict `:` type($expert_output) `,` type($slot_rows)
    (`,` type($weights)^)? `->` type($output)
  }];
  let hasVerifier = 1;
}

#endif // MOE_DIALECT_MOE_IR_MOEOPS_TD

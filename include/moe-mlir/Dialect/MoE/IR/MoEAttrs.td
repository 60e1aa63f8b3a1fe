//===- MoEAttrs.td - Enum attributes of the moe dialect ----*- tablegen -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_IR_MOEATTRS_TD
#define MOE_DIALECT_MOE_IR_MOEATTRS_TD

include "moe-mlir/Dialect/MoE/IR/MoEDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

class MoE_EnumAttr<EnumAttrInfo enumInfo, string mnemonic>
    : EnumAttr<MoE_Dialect, enumInfo, mnemonic> {
  let assemblyFormat = "`<` $value `>`";
}

def MoE_Scoring : I32EnumAttr<"Scoring",
    "how router logits become expert scores", [
      I32EnumAttrCase<"softmax", 0>,
      I32EnumAttrCase<"sigmoid", 1>,
      I32EnumAttrCase<"sparsemixer", 2>
    ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def MoE_ScoringAttr : MoE_EnumAttr<MoE_Scoring, "scoring">;

def MoE_WeightFormat : I32EnumAttr<"WeightFormat",
    "how moe.dequantize's bytes hold a weight element", [
      I32EnumAttrCase<"int8", 0>,
      I32EnumAttrCase<"int4", 1>,
      I32EnumAttrCase<"f8e4m3", 2>,
      I32EnumAttrCase<"f4e2m1", 3>
    ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def MoE_WeightFormatAttr : MoE_EnumAttr<MoE_WeightFormat, "weight_format">;

def MoE_GroupScore : I32EnumAttr<"GroupScore",
    "how a group of experts is scored in grouped routing", [
      I32EnumAttrCase<"top2_sum", 0>,
      I32EnumAttrCase<"max", 1>
    ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def MoE_GroupScoreAttr : MoE_EnumAttr<MoE_GroupScore, "group_score">;

def MoE_Routing : I32EnumAttr<"Routing",
    "who chooses: tokens choose experts, or experts choose tokens", [
      I32EnumAttrCase<"token_choice", 0>,
      I32EnumAttrCase<"expert_choice", 1>
    ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def MoE_RoutingAttr : MoE_EnumAttr<MoE_Routing, "routing">;

def MoE_Activation : I32EnumAttr<"Activation",
    "the expert FFN's activation function", [
      I32EnumAttrCase<"silu", 0>,
      I32EnumAttrCase<"gelu", 1>,
      I32EnumAttrCase<"gelu_tanh", 2>,
      I32EnumAttrCase<"relu", 3>,
      I32EnumAttrCase<"clamped_swiglu", 4>
    ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def MoE_ActivationAttr : MoE_EnumAttr<MoE_Activation, "activation">;

//===----------------------------------------------------------------------===//
// LevelAttr
//===----------------------------------------------------------------------===//

/// A bool parameter written `true` or `false`.
class MoE_BoolParameter<string default>
    : DefaultValuedParameter<"bool", default> {
  let parser = [{
    [&]() -> ::mlir::FailureOr<bool> {
      if (::mlir::succeeded($_parser.parseOptionalKeyword("true")))
        return true;
      if (::mlir::succeeded($_parser.parseOptionalKeyword("false")))
        return false;
      return $_parser.emitError($_parser.getCurrentLocation(),
                                "expected 'true' or 'false'");
    }()
  }];
}

/// An f32 parameter written as a float literal.
class MoE_F32Parameter<string default>
    : DefaultValuedParameter<"::llvm::APFloat", default> {
  let comparator = "$_lhs.bitwiseIsEqual($_rhs)";
  let parser = [{
    [&]() -> ::mlir::FailureOr<::llvm::APFloat> {
      double value;
      if (::mlir::failed($_parser.parseFloat(value)))
        return ::mlir::failure();
      return ::llvm::APFloat(static_cast<float>(value));
    }()
  }];
}

def MoE_LevelAttr : AttrDef<MoE_Dialect, "Level"> {
  let mnemonic = "level";
  let summary = "the token-choice routing of one inner level of a "
                "hierarchical layer";
  let description = [{
    In a hierarchical layer every routed expert is itself an MoE layer. A
    `#moe.level` describes how each expert of the level above routes a token
    among its own experts: SPEC §1 token-choice routing steps 1-6 with these
    parameters (the names and defaults of `moe.gate`'s attributes), always
    dropless. `router_bias` and `selection_bias` say whether the level has
    those biases; the level's number of experts is its router's.

    ```mlir
    #moe.level<top_k = 2, scoring = sigmoid, n_group = 4, topk_group = 2,
               selection_bias = true>
    ```
  }];
  let parameters = (ins
    "int64_t":$top_k,
    DefaultValuedParameter<"::mlir::moe::Scoring",
                           "::mlir::moe::Scoring::softmax">:$scoring,
    MoE_BoolParameter<"true">:$normalize_top_k,
    MoE_F32Parameter<"::llvm::APFloat(1.0f)">:$routed_scaling_factor,
    DefaultValuedParameter<"int64_t", "1">:$n_group,
    DefaultValuedParameter<"int64_t", "1">:$topk_group,
    DefaultValuedParameter<"::mlir::moe::GroupScore",
                           "::mlir::moe::GroupScore::top2_sum">:$group_score,
    MoE_BoolParameter<"false">:$router_bias,
    MoE_BoolParameter<"false">:$selection_bias,
    MoE_F32Parameter<"::llvm::APFloat(1.0f)">:$normalize_p,
    MoE_F32Parameter<"::llvm::APFloat(0.01f)">:$sparsemixer_eps
  );
  let assemblyFormat = "`<` struct(params) `>`";
}

//===----------------------------------------------------------------------===//
// Targets and lowering configs
//===----------------------------------------------------------------------===//

def MoE_CPUTargetAttr : AttrDef<MoE_Dialect, "CPUTarget"> {
  let mnemonic = "cpu_target";
  let summary = "the CPU a module is compiled for";
  let description = [{
    Set on the module as `moe.target` (moe-compile sets it from `--march`):
    the instruction-set features of the target CPU that the kernels' tiling
    depends on, by their LLVM names (`avx2`, `fma`, `avx512f`, `avx512bw`,
    `avx512vnni`, `avx512bf16`). The decompositions read it for the lanes
    they pack rows by, and `moe-configure-cpu` for the tiles.

    ```mlir
    module attributes {moe.target = #moe.cpu_target<features = ["avx2", "fma"]>} {}
    ```
  }];
  let parameters = (ins "::mlir::ArrayAttr":$features);
  let assemblyFormat = "`<` struct(params) `>`";
  let extraClassDeclaration = [{
    /// Whether the target has the feature named `name`.
    bool hasFeature(::llvm::StringRef name) const;
  }];
}

def MoE_TilingAttr : AttrDef<MoE_Dialect, "Tiling"> {
  let mnemonic = "tiling";
  let summary = "the tile sizes of one tensor op, per loop level";
  let description = [{
    The lowering config of an op of the linalg stage (a linalg contraction,
    an elementwise or gathering `linalg.generic`, or `moe.select`),
    attached as `lowering_config` by `moe-configure-cpu` or
    `moe-configure-gpu` and applied by `moe-tile-cpu` or `moe-tile-gpu`
    through upstream's TilingInterface drivers. Each level lists one tile
    size per loop of the op's iteration space, 0 leaving that loop whole:

    * `distribution`: the op is tiled by these sizes in an `scf.forall`
      whose tiles the threads share, and its linalg producers are fused
      into the tiles (`moe.select`'s tile of tokens, a contraction's
      columns); on a GPU, the tiles are the thread blocks;
    * `threads`: each block's tile is tiled again by these sizes in a nested
      `scf.forall`, one tile per GPU thread, its producers fused likewise;
    * `cache`: each tile is tiled again by these sizes, for the operands
      of a tile loop's body to stay in cache (a contraction's reduction in
      blocks, the result accumulated across them);
    * `registers`: the parallel loops' register tile;
    * `reduction`: the reduction loops' step. On the CPU the register tile
      keeps one partial sum per reduction element (a split reduction),
      merged after the loop; in a GPU thread, whose tile is its register
      tile (there is no `registers` level), a loop steps through the
      reduction carrying the tile's sums;
    * `interchange`: the order of the register tile's loops, outermost
      first (by default the op's own).

    The vector sizes are the register tile with the reduction step: a
    `[2, 4, 0]` register tile over a `[0, 0, 8]` reduction computes
    `vector<2x4x8xf32>` partial sums.

    ```mlir
    #moe.tiling<registers = [2, 4, 0], reduction = [0, 0, 8], interchange = [1, 0, 2]>
    ```
  }];
  let parameters = (ins
    OptionalArrayRefParameter<"int64_t">:$distribution,
    OptionalArrayRefParameter<"int64_t">:$threads,
    OptionalArrayRefParameter<"int64_t">:$cache,
    OptionalArrayRefParameter<"int64_t">:$registers,
    OptionalArrayRefParameter<"int64_t">:$reduction,
    OptionalArrayRefParameter<"int64_t">:$interchange
  );
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
}

def MoE_LevelArrayAttr
    : TypedArrayAttrBase<MoE_LevelAttr, "inner levels (#moe.level)">;

#endif // MOE_DIALECT_MOE_IR_MOEATTRS_TD

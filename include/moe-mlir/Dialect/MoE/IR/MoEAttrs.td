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
      I32EnumAttrCase<"sigmoid", 1>
    ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def MoE_ScoringAttr : MoE_EnumAttr<MoE_Scoring, "scoring">;

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
      I32EnumAttrCase<"relu", 3>
    ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def MoE_ActivationAttr : MoE_EnumAttr<MoE_Activation, "activation">;

#endif // MOE_DIALECT_MOE_IR_MOEATTRS_TD

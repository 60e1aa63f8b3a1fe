//===- MoEOps.cpp - Verifiers of the moe dialect's operations -------------===//
//
// Part of the moe-mlir project.
//
// Each check is a free function named after the rule it enforces, and its
// diagnostic names the operand or attribute that broke it; `moe.layer` and
// the stage ops share them so that a rule reads the same wherever it fails.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/TypeUtilities.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;

//===----------------------------------------------------------------------===//
// Shape and type rules
//===----------------------------------------------------------------------===//

/// Dimension `dim` of `name` must equal `expected` (`what` says what that
/// is); a dynamic size on either side is checked at run time instead.
static LogicalResult verifyDim(Operation *op, StringRef name, Value value,
                               unsigned dim, int64_t expected, StringRef what) {
  int64_t size = cast<RankedTensorType>(value.getType()).getDimSize(dim);
  if (ShapedType::isDynamic(size) || ShapedType::isDynamic(expected) ||
      size == expected)
    return success();
  return op->emitOpError() << "'" << name << "' dimension " << dim << " is "
                           << size << " but must equal " << what << " ("
                           << expected << ")";
}

/// Weights are compiled into the layer, so their shapes must be known.
static LogicalResult verifyStaticShape(Operation *op, StringRef name,
                                       Value value) {
  if (cast<RankedTensorType>(value.getType()).hasStaticShape())
    return success();
  return op->emitOpError() << "'" << name << "' must have a static shape";
}

/// Weights, biases and activations share one data type (SPEC §1, data types).
static LogicalResult verifyElementType(Operation *op, StringRef name,
                                       Value value, Type expected) {
  Type type = getElementTypeOrSelf(value.getType());
  if (type == expected)
    return success();
  return op->emitOpError() << "'" << name << "' element type " << type
                           << " must equal the input's element type "
                           << expected;
}

/// A weight operand: static shape, the input's data type.
static LogicalResult verifyWeight(Operation *op, StringRef name, Value value,
                                  Type dataType) {
  if (!value)
    return success();
  if (failed(verifyStaticShape(op, name, value)))
    return failure();
  return verifyElementType(op, name, value, dataType);
}

/// A projection weight: static, in any data type (bf16 weights with f32
/// activations, f32 weights a moe.dequantize stands for, ...).
static LogicalResult verifyProjection(Operation *op, StringRef name,
                                      Value value) {
  return value ? verifyStaticShape(op, name, value) : success();
}

static int64_t dimOf(Value value, unsigned dim) {
  return cast<RankedTensorType>(value.getType()).getDimSize(dim);
}

//===----------------------------------------------------------------------===//
// Routing rules (SPEC §1, routing steps 1-7 and expert choice)
//===----------------------------------------------------------------------===//

namespace {
/// The operands and attributes that `moe.layer` and `moe.gate` share.
struct RoutingOperands {
  Value input, router, routerBias, selectionBias;
};
} // namespace

/// SPEC §1 steps 4-6 at one level of `numExperts` experts: groups, `top_k`
/// and the scaling. `rules` is an op or a `#moe.level` (they share the
/// accessor names); `prefix` goes before the attribute names in diagnostics
/// (`levels[0].` for an inner level of `moe.layer`). Token choice only
/// checks `top_k` against the allowed experts. `selectionBias` says whether
/// the level has a selection bias.
template <typename RulesT>
static LogicalResult verifySelectionRules(Operation *op, RulesT rules,
                                          int64_t numExperts, bool tokenChoice,
                                          bool selectionBias,
                                          StringRef prefix = "") {
  auto name = [&](StringRef attribute) {
    return ("'" + prefix + attribute + "'").str();
  };
  int64_t topK = rules.getTopK();
  int64_t nGroup = rules.getNGroup();
  int64_t topkGroup = rules.getTopkGroup();
  // The ops' attribute constraints make these positive; a #moe.level
  // parameter is checked here.
  for (auto [attribute, value] :
       {std::pair<StringRef, int64_t>{"top_k", topK},
        {"n_group", nGroup},
        {"topk_group", topkGroup}})
    if (value < 1)
      return op->emitOpError() << name(attribute) << " (" << value
                               << ") must be positive";
  if (ShapedType::isDynamic(numExperts))
    return success();
  if (numExperts % nGroup != 0)
    return op->emitOpError() << name("n_group") << " (" << nGroup
                             << ") must divide the number of experts ("
                             << numExperts << ")";
  if (topkGroup > nGroup)
    return op->emitOpError() << name("topk_group") << " (" << topkGroup
                             << ") must not exceed " << name("n_group")
                             << " (" << nGroup << ")";
  int64_t groupSize = numExperts / nGroup;
  if (nGroup > 1 && rules.getGroupScore() == GroupScore::top2_sum &&
      groupSize < 2)
    return op->emitOpError() << name("group_score")
                             << " top2_sum needs at least 2 experts per "
                                "group, but groups have "
                             << groupSize;

  float scaling = rules.getRoutedScalingFactor().convertToFloat();
  if (!std::isfinite(scaling) || scaling <= 0)
    return op->emitOpError() << name("routed_scaling_factor") << " ("
                             << scaling << ") must be finite and positive";
  float p = rules.getNormalizeP().convertToFloat();
  if (!std::isfinite(p) || p <= 0)
    return op->emitOpError() << name("normalize_p") << " (" << p
                             << ") must be finite and positive";
  float eps = rules.getSparsemixerEps().convertToFloat();
  if (!std::isfinite(eps) || eps < 0)
    return op->emitOpError() << name("sparsemixer_eps") << " (" << eps
                             << ") must be finite and not negative";
  // Sparsemixer chooses by the logits and weighs by the experts near them.
  if (rules.getScoring() == Scoring::sparsemixer) {
    if (nGroup != 1)
      return op->emitOpError() << name("scoring")
                               << " sparsemixer does not take grouped "
                                  "routing ("
                               << name("n_group") << " must be 1)";
    if (selectionBias)
      return op->emitOpError() << name("scoring")
                               << " sparsemixer does not take a selection "
                                  "bias";
  }
  int64_t allowed = topkGroup * groupSize;
  if (tokenChoice && topK > allowed)
    return op->emitOpError()
           << name("top_k") << " (" << topK
           << ") must not exceed the experts routing may choose from ("
           << allowed << ")";
  return success();
}

template <typename OpTy>
static LogicalResult verifyChoiceRules(OpTy op, int64_t numExperts,
                                       bool hasSelectionBias);

template <typename OpTy>
static LogicalResult verifyRouting(OpTy op, const RoutingOperands &operands) {
  Operation *raw = op.getOperation();
  Type dataType = getElementTypeOrSelf(operands.input.getType());
  if (failed(verifyWeight(raw, "router", operands.router, dataType)) ||
      failed(verifyWeight(raw, "router_bias", operands.routerBias, dataType)) ||
      failed(verifyWeight(raw, "selection_bias", operands.selectionBias,
                          dataType)))
    return failure();

  int64_t hidden = dimOf(operands.input, 1);
  int64_t numExperts = dimOf(operands.router, 0);
  if (ShapedType::isDynamic(hidden))
    return op.emitOpError("'input' must have a static hidden size "
                          "(dimension 1)");
  if (failed(verifyDim(raw, "router", operands.router, 1, hidden,
                       "the hidden size")))
    return failure();
  if (operands.routerBias &&
      failed(verifyDim(raw, "router_bias", operands.routerBias, 0, numExperts,
                       "the number of experts")))
    return failure();
  if (operands.selectionBias &&
      failed(verifyDim(raw, "selection_bias", operands.selectionBias, 0,
                       numExperts, "the number of experts")))
    return failure();

  return verifyChoiceRules(op, numExperts, operands.selectionBias != nullptr);
}

/// The selection rules, the capacity and expert choice's restrictions.
template <typename OpTy>
static LogicalResult verifyChoiceRules(OpTy op, int64_t numExperts,
                                       bool hasSelectionBias) {
  bool tokenChoice = op.getRouting() == Routing::token_choice;
  if (failed(verifySelectionRules(op.getOperation(), op, numExperts,
                                  tokenChoice, hasSelectionBias)))
    return failure();
  double capacity = op.getCapacityFactor().convertToDouble();
  if (!std::isfinite(capacity) || capacity < 0)
    return op.emitOpError() << "'capacity_factor' (" << capacity
                            << ") must be finite and not negative";
  if (tokenChoice)
    return success();

  // Expert choice (Zhou et al. 2022) is defined for softmax scores over all
  // experts, with a capacity that sets how many tokens each expert takes.
  if (capacity <= 0)
    return op.emitOpError("'routing' expert_choice needs a positive "
                          "'capacity_factor'");
  if (op.getScoring() != Scoring::softmax)
    return op.emitOpError("'routing' expert_choice needs softmax 'scoring'");
  if (op.getNGroup() != 1)
    return op.emitOpError("'routing' expert_choice does not take grouped "
                          "routing ('n_group' must be 1)");
  if (hasSelectionBias)
    return op.emitOpError("'routing' expert_choice does not take a "
                          "'selection_bias'");
  return success();
}

/// The slots per token a gate produces: `top_k`, or every expert for expert
/// choice.
template <typename OpTy>
static int64_t slotsPerToken(OpTy op, int64_t numExperts) {
  return op.getRouting() == Routing::expert_choice ? numExperts
                                                   : op.getTopK();
}

//===----------------------------------------------------------------------===//
// Expert weight rules (SPEC §1, expert e)
//===----------------------------------------------------------------------===//

namespace {
struct ExpertWeights {
  Value gate, up, down;
  Value gateBias, upBias, downBias;
};
} // namespace

/// The activation's parameters, and clamped_swiglu's gate (an op that runs
/// FFNs: gated when `gated`).
template <typename OpTy>
static LogicalResult verifyActivation(OpTy op, bool gated) {
  if (op.getActivation() != Activation::clamped_swiglu)
    return success();
  if (!gated)
    return op.emitOpError("'activation' clamped_swiglu needs a gated FFN "
                          "('gate_proj')");
  float alpha = op.getSwigluAlpha().convertToFloat();
  float limit = op.getSwigluLimit().convertToFloat();
  if (!std::isfinite(alpha))
    return op.emitOpError() << "'swiglu_alpha' (" << alpha
                            << ") must be finite";
  if (!std::isfinite(limit) || limit <= 0)
    return op.emitOpError() << "'swiglu_limit' (" << limit
                            << ") must be finite and positive";
  float offset = op.getSwigluUpOffset().convertToFloat();
  if (!std::isfinite(offset))
    return op.emitOpError() << "'swiglu_up_offset' (" << offset
                            << ") must be finite";
  return success();
}

/// `gate`, `up`: [E, F, H]; `down`: [E, H, F], all in the input's type.
/// `experts` says what E is.
static LogicalResult verifyExpertWeights(Operation *op, const ExpertWeights &w,
                                         Value input, int64_t numExperts,
                                         StringRef experts =
                                             "the number of experts") {
  Type dataType = getElementTypeOrSelf(input.getType());
  StringRef gate = "gate_proj", up = "up_proj", down = "down_proj";
  if (failed(verifyProjection(op, gate, w.gate)) ||
      failed(verifyProjection(op, up, w.up)) ||
      failed(verifyProjection(op, down, w.down)))
    return failure();
  int64_t hidden = dimOf(input, 1);
  int64_t intermediate = dimOf(w.up, 1);
  if (failed(verifyDim(op, up, w.up, 0, numExperts, experts)) ||
      failed(verifyDim(op, up, w.up, 2, hidden, "the hidden size")) ||
      failed(verifyDim(op, down, w.down, 0, numExperts, experts)) ||
      failed(verifyDim(op, down, w.down, 1, hidden, "the hidden size")) ||
      failed(verifyDim(op, down, w.down, 2, intermediate,
                       "the intermediate size")))
    return failure();
  if (w.gate && w.gate.getType() != w.up.getType())
    return op->emitOpError() << "'" << gate << "' type " << w.gate.getType()
                             << " must equal '" << up << "' type "
                             << w.up.getType();

  // Biases: [E, F] for gate and up, [E, H] for down.
  if (failed(verifyWeight(op, "gate_bias", w.gateBias, dataType)) ||
      failed(verifyWeight(op, "up_bias", w.upBias, dataType)) ||
      failed(verifyWeight(op, "down_bias", w.downBias, dataType)))
    return failure();
  if (w.gateBias && !w.gate)
    return op->emitOpError("'gate_bias' needs a gated FFN ('gate_proj')");
  for (auto [name, bias, columns, what] :
       {std::tuple<StringRef, Value, int64_t, StringRef>{
            "gate_bias", w.gateBias, intermediate, "the intermediate size"},
        {"up_bias", w.upBias, intermediate, "the intermediate size"},
        {"down_bias", w.downBias, hidden, "the hidden size"}})
    if (bias && (failed(verifyDim(op, name, bias, 0, numExperts, experts)) ||
                 failed(verifyDim(op, name, bias, 1, columns, what))))
      return failure();
  return success();
}

namespace {
struct SharedExpertWeights {
  Value gate, up, down, expertGate;
};
} // namespace

/// `gate`, `up`: [Fs, H]; `down`: [H, Fs]; `expertGate`: [H].
static LogicalResult verifySharedWeights(Operation *op,
                                         const SharedExpertWeights &w,
                                         Value input, StringRef prefix) {
  Type dataType = getElementTypeOrSelf(input.getType());
  std::string gate = (prefix + "gate_proj").str();
  std::string up = (prefix + "up_proj").str();
  std::string down = (prefix + "down_proj").str();
  std::string expertGate =
      prefix.empty() ? "expert_gate" : (prefix + "expert_gate").str();
  if (failed(verifyProjection(op, gate, w.gate)) ||
      failed(verifyProjection(op, up, w.up)) ||
      failed(verifyProjection(op, down, w.down)) ||
      failed(verifyWeight(op, expertGate, w.expertGate, dataType)))
    return failure();
  int64_t hidden = dimOf(input, 1);
  int64_t intermediate = dimOf(w.up, 0);
  if (failed(verifyDim(op, up, w.up, 1, hidden, "the hidden size")) ||
      failed(verifyDim(op, down, w.down, 0, hidden, "the hidden size")) ||
      failed(verifyDim(op, down, w.down, 1, intermediate,
                       "the shared intermediate size")))
    return failure();
  if (w.gate && w.gate.getType() != w.up.getType())
    return op->emitOpError() << "'" << gate << "' type " << w.gate.getType()
                             << " must equal '" << up << "' type "
                             << w.up.getType();
  if (w.expertGate && failed(verifyDim(op, expertGate, w.expertGate, 0, hidden,
                                       "the hidden size")))
    return failure();
  return success();
}

/// Token-major results (`[T, ...]`) follow the input's token count.
static LogicalResult verifyTokens(Operation *op, StringRef name, Value value,
                                  Value input) {
  return verifyDim(op, name, value, 0, dimOf(input, 0),
                   "the number of tokens");
}

//===----------------------------------------------------------------------===//
// Hierarchical MoE rules (SPEC §1: experts that are MoE layers)
//===----------------------------------------------------------------------===//

/// A level's `[P, E]` bias: the router's first two dimensions.
static LogicalResult verifyLevelBias(Operation *op, StringRef name, Value bias,
                                     Value router, Type dataType) {
  if (failed(verifyWeight(op, name, bias, dataType)) ||
      failed(verifyDim(op, name, bias, 0, dimOf(router, 0),
                       "the number of experts of the level above")) ||
      failed(verifyDim(op, name, bias, 1, dimOf(router, 1),
                       "the number of experts of the level")))
    return failure();
  return success();
}

/// `router` of an inner level: `[parents, E, H]` in the input's type.
static LogicalResult verifyLevelRouter(Operation *op, StringRef name,
                                       Value router, Value input,
                                       int64_t parents) {
  if (failed(verifyWeight(op, name, router,
                          getElementTypeOrSelf(input.getType()))) ||
      failed(verifyDim(op, name, router, 0, parents,
                       "the number of experts of the level above")) ||
      failed(verifyDim(op, name, router, 2, dimOf(input, 1),
                       "the hidden size")))
    return failure();
  return success();
}

/// The inner levels of `moe.layer`: one router per `#moe.level`, the biases
/// the levels ask for, and each level's routing rules. Sets `leafExperts`
/// to the number of experts of the last level (all levels multiplied).
static LogicalResult verifyLevels(LayerOp op, int64_t &leafExperts) {
  ArrayAttr levels = op.getLevels();
  OperandRange routers = op.getLevelRouters();
  OperandRange routerBiases = op.getLevelRouterBiases();
  OperandRange selectionBiases = op.getLevelSelectionBiases();
  leafExperts = dimOf(op.getRouter(), 0);
  if (routers.size() != levels.size())
    return op.emitOpError() << "'level_routers' has " << routers.size()
                            << " operands but 'levels' describes "
                            << levels.size() << " inner levels";
  auto levelAt = [&](unsigned i) { return cast<LevelAttr>(levels[i]); };
  unsigned wantRouterBiases = 0, wantSelectionBiases = 0;
  for (unsigned i = 0; i < levels.size(); ++i) {
    wantRouterBiases += levelAt(i).getRouterBias();
    wantSelectionBiases += levelAt(i).getSelectionBias();
  }
  if (routerBiases.size() != wantRouterBiases)
    return op.emitOpError() << "'level_router_biases' has "
                            << routerBiases.size() << " operands but "
                            << wantRouterBiases
                            << " of 'levels' have a 'router_bias'";
  if (selectionBiases.size() != wantSelectionBiases)
    return op.emitOpError() << "'level_selection_biases' has "
                            << selectionBiases.size() << " operands but "
                            << wantSelectionBiases
                            << " of 'levels' have a 'selection_bias'";

  Type dataType = getElementTypeOrSelf(op.getInput().getType());
  unsigned routerBias = 0, selectionBias = 0;
  for (unsigned i = 0; i < levels.size(); ++i) {
    LevelAttr level = levelAt(i);
    Value router = routers[i];
    std::string index = "[" + std::to_string(i) + "]";
    if (failed(verifyLevelRouter(op, "level_routers" + index, router,
                                 op.getInput(), leafExperts)))
      return failure();
    if (level.getRouterBias() &&
        failed(verifyLevelBias(
            op, "level_router_biases[" + std::to_string(routerBias) + "]",
            routerBiases[routerBias], router, dataType)))
      return failure();
    routerBias += level.getRouterBias();
    if (level.getSelectionBias() &&
        failed(verifyLevelBias(
            op,
            "level_selection_biases[" + std::to_string(selectionBias) + "]",
            selectionBiases[selectionBias], router, dataType)))
      return failure();
    selectionBias += level.getSelectionBias();
    int64_t numExperts = dimOf(router, 1);
    if (failed(verifySelectionRules(op, level, numExperts,
                                    /*tokenChoice=*/true,
                                    level.getSelectionBias(),
                                    "levels" + index + ".")))
      return failure();
    leafExperts *= numExperts;
  }
  return success();
}

//===----------------------------------------------------------------------===//
// LayerOp
//===----------------------------------------------------------------------===//

LogicalResult LayerOp::verify() {
  if (failed(verifyRouting(*this, {getInput(), getRouter(), getRouterBias(),
                                   getSelectionBias()})))
    return failure();
  int64_t numExperts;
  if (failed(verifyLevels(*this, numExperts)))
    return failure();
  if (failed(verifyExpertWeights(
          *this,
          {getGateProj(), getUpProj(), getDownProj(), getGateBias(),
           getUpBias(), getDownBias()},
          getInput(), numExperts,
          getLevels().empty() ? "the number of experts"
                              : "the number of leaf experts")) ||
      failed(verifyActivation(*this, getGateProj() != nullptr)))
    return failure();
  Type dataType = getElementTypeOrSelf(getInput().getType());
  if (getOutputBias() &&
      (failed(verifyWeight(*this, "output_bias", getOutputBias(), dataType)) ||
       failed(verifyDim(*this, "output_bias", getOutputBias(), 0,
                        dimOf(getInput(), 1), "the hidden size"))))
    return failure();

  bool hasShared = getSharedUpProj() != nullptr;
  if (hasShared != (getSharedDownProj() != nullptr))
    return emitOpError("'shared_up_proj' and 'shared_down_proj' must be "
                       "given together");
  if (!hasShared && (getSharedGateProj() || getSharedExpertGate()))
    return emitOpError("'shared_gate_proj' and 'shared_expert_gate' need a "
                       "shared expert ('shared_up_proj')");
  if (hasShared && (getSharedGateProj() != nullptr) !=
                       (getGateProj() != nullptr))
    return emitOpError("the shared expert must be gated ('shared_gate_proj') "
                       "exactly when the routed experts are ('gate_proj')");
  if (hasShared &&
      failed(verifySharedWeights(*this,
                                 {getSharedGateProj(), getSharedUpProj(),
                                  getSharedDownProj(), getSharedExpertGate()},
                                 getInput(), "shared_")))
    return failure();

  if (getOutput().getType() != getInput().getType())
    return emitOpError() << "result type " << getOutput().getType()
                         << " must equal the input type "
                         << getInput().getType();
  return success();
}

/// The ids and weights of a gate or select: `[T, slots]` each, with the
/// token count of `tokens`; `unordered` never with a capacity.
template <typename OpTy>
static LogicalResult verifySelectionResults(OpTy op, Value tokens,
                                            int64_t numExperts) {
  Value ids = op.getIds();
  if (op.getIds().getType().getShape() != op.getWeights().getType().getShape())
    return op.emitOpError("'ids' and 'weights' must have the same shape");
  StringRef width = op.getRouting() == Routing::expert_choice
                        ? "the number of experts (expert choice)"
                        : "'top_k'";
  if (failed(verifyTokens(op, "ids", ids, tokens)) ||
      failed(verifyDim(op, "ids", ids, 1, slotsPerToken(op, numExperts),
                       width)))
    return failure();
  if (op.getUnordered() && op.getCapacityFactor().convertToDouble() > 0)
    return op.emitOpError("'unordered' cannot be set with a "
                          "'capacity_factor': capacity grants slots in "
                          "their order");
  return success();
}

//===----------------------------------------------------------------------===//
// GateOp
//===----------------------------------------------------------------------===//

LogicalResult GateOp::verify() {
  if (failed(verifyRouting(*this, {getInput(), getRouter(), getRouterBias(),
                                   getSelectionBias()})))
    return failure();
  return verifySelectionResults(*this, getInput(), dimOf(getRouter(), 0));
}

//===----------------------------------------------------------------------===//
// SelectOp
//===----------------------------------------------------------------------===//

LogicalResult SelectOp::verify() {
  Value logits = getLogits();
  int64_t numExperts = dimOf(logits, 1);
  if (ShapedType::isDynamic(numExperts))
    return emitOpError("'logits' must have a static number of experts "
                       "(dimension 1)");
  if (Value bias = getSelectionBias())
    if (failed(verifyStaticShape(*this, "selection_bias", bias)) ||
        failed(verifyDim(*this, "selection_bias", bias, 0, numExperts,
                         "the number of experts")))
      return failure();
  if (failed(verifyChoiceRules(*this, numExperts, getSelectionBias() != nullptr)))
    return failure();
  if (auto tiling = (*this)->getAttrOfType<TilingAttr>(kLoweringConfigAttrName))
    if (!tiling.getDistribution().empty() && !isTokenwise())
      return emitOpError("a 'lowering_config' that tiles the tokens needs "
                         "token choice without a capacity: expert choice and "
                         "capacity compare tokens with each other");
  if (getIdsInit().getType() != getIds().getType() ||
      getWeightsInit().getType() != getWeights().getType())
    return emitOpError("each result must have the type of its destination");
  return verifySelectionResults(*this, logits, numExperts);
}

SmallVector<utils::IteratorType> SelectOp::getLoopIteratorTypes() {
  return {utils::IteratorType::parallel};
}

SmallVector<Range> SelectOp::getIterationDomain(OpBuilder &b) {
  Location loc = getLoc();
  return {Range{b.getIndexAttr(0),
                tensor::getMixedSize(b, loc, getLogits(), 0),
                b.getIndexAttr(1)}};
}

/// Rows `[offset, offset + size)` of the 2-D tensor `value`.
static Value sliceRows(OpBuilder &b, Location loc, Value value,
                       OpFoldResult offset, OpFoldResult size) {
  return tensor::ExtractSliceOp::create(
      b, loc, value, {offset, b.getIndexAttr(0)},
      {size, tensor::getMixedSize(b, loc, value, 1)},
      {b.getIndexAttr(1), b.getIndexAttr(1)});
}

FailureOr<TilingResult>
SelectOp::getTiledImplementation(OpBuilder &b, ArrayRef<OpFoldResult> offsets,
                                 ArrayRef<OpFoldResult> sizes) {
  if (!isTokenwise())
    return emitOpError("expert choice and capacity compare tokens with each "
                       "other: only a token-choice select without a capacity "
                       "is tiled");
  Location loc = getLoc();
  SmallVector<Operation *> slices;
  auto slice = [&](Value value) {
    Value tile = sliceRows(b, loc, value, offsets[0], sizes[0]);
    slices.push_back(tile.getDefiningOp());
    return tile;
  };
  SmallVector<Value> operands = {slice(getLogits())};
  if (Value bias = getSelectionBias())
    operands.push_back(bias);
  operands.push_back(slice(getIdsInit()));
  operands.push_back(slice(getWeightsInit()));
  SmallVector<Type> resultTypes = {operands[operands.size() - 2].getType(),
                                   operands.back().getType()};
  Operation *tiled = mlir::clone(b, getOperation(), resultTypes, operands);
  return TilingResult{{tiled}, SmallVector<Value>(tiled->getResults()), slices};
}

LogicalResult SelectOp::getResultTilePosition(
    OpBuilder &b, unsigned resultNumber, ArrayRef<OpFoldResult> offsets,
    ArrayRef<OpFoldResult> sizes, SmallVector<OpFoldResult> &resultOffsets,
    SmallVector<OpFoldResult> &resultSizes) {
  resultOffsets = {offsets[0], b.getIndexAttr(0)};
  resultSizes = {sizes[0],
                 tensor::getMixedSize(b, getLoc(), getIds(), 1)};
  return success();
}

//===----------------------------------------------------------------------===//
// RefineOp
//===----------------------------------------------------------------------===//

/// The slots of an inner level (`moe.refine`, `moe.refine_select`): the
/// parents' ids and weights alike in shape, the results too, `top_k` of
/// them per parent slot, for the tokens of `tokens`.
template <typename OpTy>
static LogicalResult verifyRefinedSlots(OpTy op, Value tokens) {
  if (op.getParentIds().getType().getShape() !=
      op.getParentWeights().getType().getShape())
    return op.emitOpError(
        "'parent_ids' and 'parent_weights' must have the same shape");
  if (op.getIds().getType().getShape() != op.getWeights().getType().getShape())
    return op.emitOpError("'ids' and 'weights' must have the same shape");
  int64_t parentSlots = dimOf(op.getParentIds(), 1);
  int64_t slots = ShapedType::isDynamic(parentSlots)
                      ? parentSlots
                      : parentSlots * static_cast<int64_t>(op.getTopK());
  if (failed(verifyTokens(op, "parent_ids", op.getParentIds(), tokens)) ||
      failed(verifyTokens(op, "ids", op.getIds(), tokens)) ||
      failed(verifyDim(op, "ids", op.getIds(), 1, slots,
                       "'parent_ids' dimension 1 times 'top_k'")))
    return failure();
  return success();
}

LogicalResult RefineOp::verify() {
  Value input = getInput(), router = getRouter();
  if (ShapedType::isDynamic(dimOf(input, 1)))
    return emitOpError("'input' must have a static hidden size (dimension 1)");
  if (failed(verifyLevelRouter(*this, "router", router, input,
                               dimOf(router, 0))))
    return failure();
  Type dataType = getElementTypeOrSelf(input.getType());
  if ((getRouterBias() && failed(verifyLevelBias(*this, "router_bias",
                                                 getRouterBias(), router,
                                                 dataType))) ||
      (getSelectionBias() &&
       failed(verifyLevelBias(*this, "selection_bias", getSelectionBias(),
                              router, dataType))))
    return failure();
  if (failed(verifyRefinedSlots(*this, input)))
    return failure();
  return verifySelectionRules(*this, *this, dimOf(router, 1),
                              /*tokenChoice=*/true,
                              getSelectionBias() != nullptr);
}

//===----------------------------------------------------------------------===//
// RefineSelectOp
//===----------------------------------------------------------------------===//

LogicalResult RefineSelectOp::verify() {
  Value logits = getLogits();
  int64_t parents = dimOf(logits, 1), numExperts = dimOf(logits, 2);
  if (ShapedType::isDynamic(parents) || ShapedType::isDynamic(numExperts))
    return emitOpError("'logits' must have a static number of parents "
                       "(dimension 1) and of experts (dimension 2)");
  if (Value bias = getSelectionBias())
    if (failed(verifyStaticShape(*this, "selection_bias", bias)) ||
        failed(verifyDim(*this, "selection_bias", bias, 0, parents,
                         "the number of experts of the level above")) ||
        failed(verifyDim(*this, "selection_bias", bias, 1, numExperts,
                         "the number of experts of the level")))
      return failure();
  if (failed(verifyRefinedSlots(*this, logits)))
    return failure();
  return verifySelectionRules(*this, *this, numExperts, /*tokenChoice=*/true,
                              getSelectionBias() != nullptr);
}

//===----------------------------------------------------------------------===//
// DispatchOp
//===----------------------------------------------------------------------===//

LogicalResult DequantizeOp::verify() {
  auto packedType = cast<RankedTensorType>(getPacked().getType());
  auto scalesType = cast<RankedTensorType>(getScales().getType());
  auto resultType = cast<RankedTensorType>(getResult().getType());
  int64_t rank = resultType.getRank();
  if (rank < 2)
    return emitOpError() << "result must have a rank of at least 2, got "
                         << rank;
  for (auto [name, value] : {std::pair<StringRef, Value>{"packed", getPacked()},
                             {"scales", getScales()},
                             {"zeros", getZeros()},
                             {"result", getResult()}}) {
    if (!value)
      continue;
    if (cast<RankedTensorType>(value.getType()).getRank() != rank)
      return emitOpError() << "'" << name << "' must have the result's rank ("
                           << rank << ")";
    if (failed(verifyStaticShape(*this, name, value)))
      return failure();
  }
  if (getZeros() && getZeros().getType() !=
                        scalesType.clone(IntegerType::get(getContext(), 8)))
    return emitOpError("'zeros' must have the shape of 'scales'");
  if (getZeros() && getFormat() != WeightFormat::int4)
    return emitOpError("'zeros' are only for int4");
  Type scaleType = scalesType.getElementType();
  bool exponents = getFormat() == WeightFormat::f4e2m1;
  if (exponents != scaleType.isInteger(8))
    return emitOpError() << "'scales' must be "
                         << (exponents ? "i8 (e8m0 exponents)" : "f32")
                         << " for " << stringifyWeightFormat(getFormat())
                         << ", got " << scaleType;
  int64_t depth = resultType.getDimSize(rank - 1);
  int64_t group = getGroupSize();
  if (depth % group != 0)
    return emitOpError() << "'group_size' (" << group
                         << ") must divide the rows' length (" << depth << ")";
  if (getBits() == 4 && group % 2 != 0)
    return emitOpError() << "'group_size' (" << group
                         << ") must be even with 4-bit elements";
  SmallVector<int64_t> packedShape(resultType.getShape());
  packedShape.back() = depth * getBits() / 8;
  SmallVector<int64_t> scalesShape(resultType.getShape());
  scalesShape.back() = depth / group;
  if (packedType.getShape() != ArrayRef<int64_t>(packedShape))
    return emitOpError() << "'packed' type " << packedType
                         << " must hold the result's " << depth << " columns "
                         << "in " << packedShape.back() << " bytes a row";
  if (scalesType.getShape() != ArrayRef<int64_t>(scalesShape))
    return emitOpError() << "'scales' type " << scalesType
                         << " must hold one scale per group: "
                         << scalesShape.back() << " a row";
  if (Value perm = getPerm()) {
    auto permType = cast<RankedTensorType>(perm.getType());
    ArrayRef<int64_t> columns = resultType.getShape().drop_back(2);
    SmallVector<int64_t> permShape(columns);
    permShape.push_back(depth);
    if (permType.getShape() != ArrayRef<int64_t>(permShape))
      return emitOpError() << "'perm' type " << permType
                           << " must hold one index per column: the result's "
                              "leading dimensions and "
                           << depth;
  }
  return success();
}

LogicalResult DispatchOp::verify() {
  int64_t numExperts = getNumExperts();
  if (failed(verifyDim(*this, "counts", getCounts(), 0, numExperts,
                       "'num_experts'")) ||
      failed(verifyDim(*this, "offsets", getOffsets(), 0, numExperts + 1,
                       "'num_experts' + 1")))
    return failure();
  if (failed(mlir::verifyCompatibleShape(getSlotRows().getType(),
                                         getIds().getType())))
    return emitOpError() << "'slot_rows' type " << getSlotRows().getType()
                         << " must have the shape of 'ids' "
                         << getIds().getType();
  return success();
}

//===----------------------------------------------------------------------===//
// ExpertOp
//===----------------------------------------------------------------------===//

LogicalResult ExpertOp::verify() {
  int64_t numExperts = dimOf(getUpProj(), 0);
  if (ShapedType::isDynamic(dimOf(getInput(), 1)))
    return emitOpError("'input' must have a static hidden size (dimension 1)");
  if (failed(verifyExpertWeights(*this,
                                 {getGateProj(), getUpProj(), getDownProj(),
                                  getGateBias(), getUpBias(), getDownBias()},
                                 getInput(), numExperts)) ||
      failed(verifyActivation(*this, getGateProj() != nullptr)) ||
      (getInputWeights() &&
       (failed(verifyTokens(*this, "input_weights", getInputWeights(),
                            getInput())) ||
        failed(verifyDim(*this, "input_weights", getInputWeights(), 1,
                         getSlotsPerToken(), "'slots_per_token'")))) ||
      failed(verifyDim(*this, "offsets", getOffsets(), 0,
                       ShapedType::isDynamic(numExperts) ? numExperts
                                                         : numExperts + 1,
                       "the number of experts + 1")) ||
      failed(verifyDim(*this, "output", getOutput(), 0, dimOf(getSlots(), 0),
                       "the number of plan rows ('slots')")) ||
      failed(verifyDim(*this, "output", getOutput(), 1, dimOf(getInput(), 1),
                       "the hidden size")))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// LocalExpertsOp
//===----------------------------------------------------------------------===//

LogicalResult LocalExpertsOp::verify() {
  if (ShapedType::isDynamic(dimOf(getInput(), 1)))
    return emitOpError("'input' must have a static hidden size (dimension 1)");
  if (failed(verifyExpertWeights(*this,
                                 {getGateProj(), getUpProj(), getDownProj(),
                                  getGateBias(), getUpBias(), getDownBias()},
                                 getInput(), dimOf(getUpProj(), 0))) ||
      failed(verifyActivation(*this, getGateProj() != nullptr)) ||
      failed(verifyTokens(*this, "ids", getIds(), getInput())) ||
      failed(verifyDim(*this, "ids", getIds(), 1, 1, "one slot per row")) ||
      failed(verifyTokens(*this, "weights", getWeights(), getInput())) ||
      failed(verifyDim(*this, "weights", getWeights(), 1, 1,
                       "one slot per row")) ||
      failed(verifyTokens(*this, "output", getOutput(), getInput())) ||
      failed(verifyDim(*this, "output", getOutput(), 1, dimOf(getInput(), 1),
                       "the hidden size")))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// SharedExpertOp
//===----------------------------------------------------------------------===//

LogicalResult SharedExpertOp::verify() {
  if (ShapedType::isDynamic(dimOf(getInput(), 1)))
    return emitOpError("'input' must have a static hidden size (dimension 1)");
  if (failed(verifySharedWeights(*this,
                                 {getGateProj(), getUpProj(), getDownProj(),
                                  getExpertGate()},
                                 getInput(), "")) ||
      failed(verifyActivation(*this, getGateProj() != nullptr)) ||
      failed(verifyTokens(*this, "output", getOutput(), getInput())) ||
      failed(verifyDim(*this, "output", getOutput(), 1, dimOf(getInput(), 1),
                       "the hidden size")))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// CombineOp
//===----------------------------------------------------------------------===//

LogicalResult CombineOp::verify() {
  if (getWeights() &&
      failed(mlir::verifyCompatibleShape(getWeights().getType(),
                                         getSlotRows().getType())))
    return emitOpError() << "'weights' type " << getWeights().getType()
                         << " must have the shape of 'slot_rows' "
                         << getSlotRows().getType();
  int64_t hidden = dimOf(getOutput(), 1);
  if (failed(verifyDim(*this, "expert_output", getExpertOutput(), 1, hidden,
                       "the output's hidden size")) ||
      failed(verifyDim(*this, "slot_rows", getSlotRows(), 0,
                       dimOf(getOutput(), 0), "the number of output tokens")))
    return failure();
  if (getShared() &&
      failed(mlir::verifyCompatibleShape(getShared().getType(),
                                         getOutput().getType())))
    return emitOpError() << "'shared' type " << getShared().getType()
                         << " must have the shape of the result "
                         << getOutput().getType();
  if (Value bias = getBias()) {
    Type resultType = getElementTypeOrSelf(getOutput().getType());
    if (failed(verifyStaticShape(*this, "bias", bias)))
      return failure();
    if (getElementTypeOrSelf(bias.getType()) != resultType)
      return emitOpError() << "'bias' element type "
                           << getElementTypeOrSelf(bias.getType())
                           << " must equal the result's element type "
                           << resultType;
    if (failed(verifyDim(*this, "bias", bias, 0, hidden,
                         "the output's hidden size")))
      return failure();
  }
  return success();
}

#define GET_OP_CLASSES
#include "moe-mlir/Dialect/MoE/IR/MoEOps.cpp.inc"

//===- Expand.cpp - Split moe.layer into its stages -----------------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEEXPAND
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

/// The routed experts' stages of `op` (a moe.layer or moe.local_experts)
/// over its routing `ids` (`[T, slots]`): the plan, then every expert's
/// FFN over its segment, its input scaled by `inputWeights` when they are
/// given. Returns the expert rows and the plan's `slot_rows`, which combine
/// reads.
template <typename OpTy>
static std::pair<Value, Value>
createRoutedExperts(PatternRewriter &rewriter, OpTy op, Value ids,
                    Value inputWeights, int64_t numExperts,
                    int64_t slotsPerToken, int64_t rowTile) {
  Location loc = op.getLoc();
  // The plan indexes token slots with 64-bit integers: T·K may pass 2^31.
  Type i64 = rewriter.getI64Type();
  auto dispatch = DispatchOp::create(
      rewriter, loc, RankedTensorType::get({numExperts}, i64),
      RankedTensorType::get({numExperts + 1}, i64),
      RankedTensorType::get({ShapedType::kDynamic}, i64),
      cast<RankedTensorType>(ids.getType()).clone(i64), ids, numExperts,
      rowTile);
  int64_t hidden =
      cast<RankedTensorType>(op.getInput().getType()).getDimSize(1);
  auto experts = ExpertOp::create(
      rewriter, loc,
      RankedTensorType::get({ShapedType::kDynamic, hidden},
                            rewriter.getF32Type()),
      op.getInput(), dispatch.getSlots(), dispatch.getOffsets(),
      op.getGateProj(), op.getUpProj(), op.getDownProj(), op.getGateBias(),
      op.getUpBias(), op.getDownBias(), inputWeights,
      rewriter.getI64IntegerAttr(slotsPerToken),
      op.getActivationAttr(), op.getSwigluAlphaAttr(),
      op.getSwigluLimitAttr(), op.getSwigluUpOffsetAttr());
  return {experts.getOutput(), dispatch.getSlotRows()};
}

namespace {
struct ExpandLayer : OpRewritePattern<LayerOp> {
  ExpandLayer(MLIRContext *context, int64_t rowTile)
      : OpRewritePattern(context), rowTile(rowTile) {}

  LogicalResult matchAndRewrite(LayerOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto inputType = cast<RankedTensorType>(op.getInput().getType());
    int64_t numTokens = inputType.getDimSize(0);
    int64_t hidden = inputType.getDimSize(1);
    int64_t numExperts =
        cast<RankedTensorType>(op.getRouter().getType()).getDimSize(0);
    int64_t slotsPerToken = op.getRouting() == Routing::expert_choice
                                ? numExperts
                                : static_cast<int64_t>(op.getTopK());
    Type i32 = rewriter.getI32Type();
    Type f32 = rewriter.getF32Type();
    auto perSlot = [&](Type elementType) {
      return RankedTensorType::get({numTokens, slotsPerToken}, elementType);
    };

    // Combine sums over a token's slots, so their order is free unless
    // capacity grants them in order.
    bool slotOrderFree = op.getRouting() == Routing::token_choice &&
                         op.getCapacityFactor().convertToDouble() == 0;
    auto gate = GateOp::create(
        rewriter, loc, perSlot(i32), perSlot(f32), op.getInput(),
        op.getRouter(), op.getRouterBias(), op.getSelectionBias(),
        op.getTopKAttr(), op.getScoringAttr(), op.getNormalizeTopKAttr(),
        op.getRoutedScalingFactorAttr(), op.getNGroupAttr(),
        op.getTopkGroupAttr(), op.getGroupScoreAttr(), op.getNormalizePAttr(),
        op.getSparsemixerEpsAttr(), op.getRoutingAttr(),
        op.getCapacityFactorAttr(),
        slotOrderFree ? rewriter.getUnitAttr() : UnitAttr());
    Value ids = gate.getIds(), weights = gate.getWeights();

    // A hierarchy routes level by level down to its leaves; inner levels
    // are dropless, so their slot order is always free.
    unsigned routerBias = 0, selectionBias = 0;
    for (auto [levelAttr, router] :
         llvm::zip_equal(op.getLevels(), op.getLevelRouters())) {
      auto level = cast<LevelAttr>(levelAttr);
      Value levelRouterBias, levelSelectionBias;
      if (level.getRouterBias())
        levelRouterBias = op.getLevelRouterBiases()[routerBias++];
      if (level.getSelectionBias())
        levelSelectionBias = op.getLevelSelectionBiases()[selectionBias++];
      numExperts *= cast<RankedTensorType>(router.getType()).getDimSize(1);
      slotsPerToken *= level.getTopK();
      auto refine = RefineOp::create(
          rewriter, loc, perSlot(i32), perSlot(f32), op.getInput(), ids,
          weights, router, levelRouterBias, levelSelectionBias,
          level.getTopK(), level.getScoring(), level.getNormalizeTopK(),
          level.getRoutedScalingFactor(), level.getNGroup(),
          level.getTopkGroup(), level.getGroupScore(), level.getNormalizeP(),
          level.getSparsemixerEps(), /*unordered=*/true);
      ids = refine.getIds();
      weights = refine.getWeights();
    }

    // With the weights on the input, the experts' rows arrive weighted.
    bool onInput = op.getRouterWeightOnInput();
    auto [rows, slotRows] =
        createRoutedExperts(rewriter, op, ids, onInput ? weights : Value(),
                            numExperts, slotsPerToken, rowTile);

    Value shared;
    if (op.getSharedUpProj())
      shared = SharedExpertOp::create(
          rewriter, loc, RankedTensorType::get({numTokens, hidden}, f32),
          op.getInput(), op.getSharedGateProj(), op.getSharedUpProj(),
          op.getSharedDownProj(), op.getSharedExpertGate(),
          op.getActivationAttr(), op.getSwigluAlphaAttr(),
          op.getSwigluLimitAttr(), op.getSwigluUpOffsetAttr());

    rewriter.replaceOpWithNewOp<CombineOp>(op, inputType, rows, slotRows,
                                           onInput ? Value() : weights, shared,
                                           op.getOutputBias());
    return success();
  }

  int64_t rowTile;
};

/// A shard's experts as a flat layer with one slot per row: the rows are
/// already routed, so the plan comes straight from their ids, and combine
/// weights each row in place of summing a token's slots.
struct ExpandLocalExperts : OpRewritePattern<LocalExpertsOp> {
  ExpandLocalExperts(MLIRContext *context, int64_t rowTile)
      : OpRewritePattern(context), rowTile(rowTile) {}

  LogicalResult matchAndRewrite(LocalExpertsOp op,
                                PatternRewriter &rewriter) const override {
    int64_t numExperts =
        cast<RankedTensorType>(op.getUpProj().getType()).getDimSize(0);
    bool onInput = op.getRouterWeightOnInput();
    auto [rows, slotRows] = createRoutedExperts(
        rewriter, op, op.getIds(), onInput ? op.getWeights() : Value(),
        numExperts, /*slotsPerToken=*/1, rowTile);
    rewriter.replaceOpWithNewOp<CombineOp>(
        op, op.getOutput().getType(), rows, slotRows,
        onInput ? Value() : op.getWeights(), Value(), Value());
    return success();
  }

  int64_t rowTile;
};

struct MoEExpandPass : moe::impl::MoEExpandBase<MoEExpandPass> {
  using Base::Base;

  void runOnOperation() override {
    if (rowTile < 1) {
      getOperation()->emitError()
          << "moe-expand: 'row-tile' (" << rowTile.getValue()
          << ") must be positive";
      return signalPassFailure();
    }
    RewritePatternSet patterns(&getContext());
    patterns.add<ExpandLayer, ExpandLocalExperts>(&getContext(), rowTile);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

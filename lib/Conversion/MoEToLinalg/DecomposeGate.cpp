//===- DecomposeGate.cpp - moe.gate as a contraction and moe.select -------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "Contraction.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEDECOMPOSEGATE
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

/// `init + input · routerᵀ` for the `[N, H]` router rows, from the
/// `[N]` bias widened to f32 or from zero: logits of type `logitsType`
/// (`[T, N]` f32).
static Value buildRouterLogits(PatternRewriter &rewriter, Location loc,
                               Value input, Value router, Value bias,
                               RankedTensorType logitsType, Value numTokens) {
  Value empty = tensor::EmptyOp::create(
      rewriter, loc, logitsType,
      logitsType.isDynamicDim(0) ? ValueRange(numTokens) : ValueRange());
  Value init = buildBiasInit(rewriter, loc, empty, bias, {1});
  // logits[t, x] += Σ_h input[t, h] · router[x, h].
  return buildLinearContraction(rewriter, loc, input, router, init);
}

/// `op`'s attributes but its operand segments and lowering config: the
/// routing attributes, which carry over to the selection.
static SmallVector<NamedAttribute> routingAttributes(Operation *op) {
  SmallVector<NamedAttribute> attributes;
  for (NamedAttribute attribute : op->getAttrs())
    if (attribute.getName() != "operandSegmentSizes" &&
        attribute.getName() != kLoweringConfigAttrName)
      attributes.push_back(attribute);
  return attributes;
}

namespace {
struct DecomposeGate : OpRewritePattern<GateOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(GateOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = op.getInput(), router = op.getRouter();
    int64_t numExperts =
        cast<RankedTensorType>(router.getType()).getDimSize(0);
    auto logitsType = RankedTensorType::get(
        {cast<RankedTensorType>(input.getType()).getDimSize(0), numExperts},
        rewriter.getF32Type());
    // The input's token count, for every result whose own is dynamic (a
    // static input may still have dynamic ids and weights).
    Value numTokens = tensor::DimOp::create(rewriter, loc, input, 0);
    auto emptyOf = [&](RankedTensorType type) -> Value {
      return tensor::EmptyOp::create(rewriter, loc, type,
                                     type.isDynamicDim(0) ? ValueRange(numTokens)
                                                          : ValueRange());
    };
    Value logits = buildRouterLogits(rewriter, loc, input, router,
                                     op.getRouterBias(), logitsType, numTokens);

    auto idsType = cast<RankedTensorType>(op.getIds().getType());
    auto weightsType = cast<RankedTensorType>(op.getWeights().getType());
    SmallVector<Value> operands = {logits};
    if (Value bias = op.getSelectionBias())
      operands.push_back(bias);
    operands.append({emptyOf(idsType), emptyOf(weightsType)});
    auto select = SelectOp::create(rewriter, loc,
                                   TypeRange{idsType, weightsType}, operands,
                                   routingAttributes(op));
    rewriter.replaceOp(op, select.getResults());
    return success();
  }
};

/// moe.refine: the logits of every parent's router at once, `[T, P · E]`
/// from the stacked routers viewed as `[P · E, H]`, viewed as `[T, P, E]`
/// by the selection. A token computes P · E logits where its K parents
/// need K · E, a small price beside its experts' FFNs for one contraction
/// that upstream tiles like the gate's.
struct DecomposeRefine : OpRewritePattern<RefineOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(RefineOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value input = op.getInput();
    auto routerType = cast<RankedTensorType>(op.getRouter().getType());
    int64_t parents = routerType.getDimSize(0),
            numExperts = routerType.getDimSize(1);
    int64_t tokensDim = cast<RankedTensorType>(input.getType()).getDimSize(0);
    auto flatten = [&](Value stacked) -> Value {
      auto type = cast<RankedTensorType>(stacked.getType());
      SmallVector<ReassociationIndices> groups = {{0, 1}};
      for (int64_t dim = 2; dim < type.getRank(); ++dim)
        groups.push_back({dim});
      return tensor::CollapseShapeOp::create(rewriter, loc, stacked, groups);
    };
    Value bias = op.getRouterBias();
    Value logits = buildRouterLogits(
        rewriter, loc, input, flatten(op.getRouter()),
        bias ? flatten(bias) : Value(),
        RankedTensorType::get({tokensDim, parents * numExperts},
                              rewriter.getF32Type()),
        tensor::DimOp::create(rewriter, loc, input, 0));
    Value perParent = tensor::ExpandShapeOp::create(
        rewriter, loc,
        RankedTensorType::get({tokensDim, parents, numExperts},
                              rewriter.getF32Type()),
        logits, ArrayRef<ReassociationIndices>{{0}, {1, 2}});
    SmallVector<Value> operands = {perParent, op.getParentIds(),
                                   op.getParentWeights()};
    if (Value selectionBias = op.getSelectionBias())
      operands.push_back(selectionBias);
    auto select = RefineSelectOp::create(
        rewriter, loc,
        TypeRange{op.getIds().getType(), op.getWeights().getType()}, operands,
        routingAttributes(op));
    rewriter.replaceOp(op, select.getResults());
    return success();
  }
};

struct MoEDecomposeGatePass
    : moe::impl::MoEDecomposeGateBase<MoEDecomposeGatePass> {
  using Base::Base;

  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateDecomposeGatePatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

void moe::populateDecomposeGatePatterns(RewritePatternSet &patterns) {
  patterns.add<DecomposeGate, DecomposeRefine>(patterns.getContext());
}

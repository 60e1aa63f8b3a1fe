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

namespace {
struct DecomposeGate : OpRewritePattern<GateOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(GateOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    MLIRContext *context = op.getContext();
    Value input = op.getInput(), router = op.getRouter();
    int64_t numExperts =
        cast<RankedTensorType>(router.getType()).getDimSize(0);
    Type f32 = rewriter.getF32Type();
    auto logitsType = RankedTensorType::get(
        {cast<RankedTensorType>(input.getType()).getDimSize(0), numExperts},
        f32);
    // The input's token count, for every result whose own is dynamic (a
    // static input may still have dynamic ids and weights).
    Value numTokens = tensor::DimOp::create(rewriter, loc, input, 0);
    auto emptyOf = [&](RankedTensorType type) -> Value {
      return tensor::EmptyOp::create(rewriter, loc, type,
                                     type.isDynamicDim(0) ? ValueRange(numTokens)
                                                          : ValueRange());
    };

    // The logits start from the router bias, widened to f32, or from zero.
    Value init;
    if (Value bias = op.getRouterBias()) {
      Value empty = emptyOf(logitsType);
      auto broadcast = linalg::GenericOp::create(
          rewriter, loc, TypeRange{logitsType}, ValueRange{bias},
          ValueRange{empty},
          ArrayRef<AffineMap>{
              AffineMap::get(2, 0, {rewriter.getAffineDimExpr(1)}, context),
              AffineMap::getMultiDimIdentityMap(2, context)},
          ArrayRef<utils::IteratorType>{utils::IteratorType::parallel,
                                        utils::IteratorType::parallel},
          [&](OpBuilder &b, Location loc, ValueRange args) {
            Value widened = args[0];
            if (widened.getType() != f32)
              widened = arith::ExtFOp::create(b, loc, f32, widened);
            linalg::YieldOp::create(b, loc, widened);
          });
      init = broadcast.getResult(0);
    } else {
      init = buildZeros(rewriter, loc, logitsType.getDimSize(0), numExperts,
                        numTokens);
    }
    // logits[t, x] += Σ_h input[t, h] · router[x, h].
    Value logits = buildLinearContraction(rewriter, loc, input, router, init);

    auto idsType = cast<RankedTensorType>(op.getIds().getType());
    auto weightsType = cast<RankedTensorType>(op.getWeights().getType());
    Value ids = emptyOf(idsType);
    Value weights = emptyOf(weightsType);
    // Every routing attribute carries over; the operands are the select's.
    SmallVector<NamedAttribute> attributes;
    for (NamedAttribute attribute : op->getAttrs())
      if (attribute.getName() != op.getOperandSegmentSizesAttrName() &&
          attribute.getName() != kLoweringConfigAttrName)
        attributes.push_back(attribute);
    SmallVector<Value> operands = {logits};
    if (Value bias = op.getSelectionBias())
      operands.push_back(bias);
    operands.append({ids, weights});
    auto select = SelectOp::create(rewriter, loc,
                                   TypeRange{idsType, weightsType}, operands,
                                   attributes);
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
  patterns.add<DecomposeGate>(patterns.getContext());
}

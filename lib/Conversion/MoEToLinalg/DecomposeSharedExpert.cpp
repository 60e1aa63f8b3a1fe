//===- DecomposeSharedExpert.cpp - The shared expert as linalg ops --------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "FFN.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEDECOMPOSESHAREDEXPERT
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
struct DecomposeSharedExpert : OpRewritePattern<SharedExpertOp> {
  DecomposeSharedExpert(MLIRContext *context, int64_t vectorLanes)
      : OpRewritePattern(context), vectorLanes(vectorLanes) {}

  LogicalResult matchAndRewrite(SharedExpertOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Emitter e(rewriter, loc);
    Value input = op.getInput();
    auto resultType = cast<RankedTensorType>(op.getOutput().getType());
    int64_t tokensDim = resultType.getDimSize(0);
    Value numTokens = tensor::DimOp::create(rewriter, loc, input, 0);
    FFNBuilder ffn{op.getGateProj(), op.getUpProj(), op.getDownProj(),
                   Value(),          Value(),        Value(),
                   activationOf(op), numTokens,      tokensDim};
    int64_t lanes = targetLanes(op, vectorLanes);
    int64_t minRows = packedMinRows(op.getUpProj(), lanes);
    auto build = [&](Emitter &e, bool packed) {
      return packed ? ffn.unpack(e, ffn.packed(e, ffn.pack(e, input, lanes),
                                               lanes),
                                 lanes)
                    : ffn.rowwise(e, input);
    };
    Value output =
        ShapedType::isDynamic(tokensDim)
            ? e.ifElse(
                  e.cmpi(arith::CmpIPredicate::ult, numTokens,
                         e.index(minRows)),
                  [&](Emitter &e) { return build(e, /*packed=*/false); },
                  [&](Emitter &e) { return build(e, /*packed=*/true); })
            : build(e, tokensDim >= minRows);

    // Scaled by sigmoid(x_t · expert_gate), summed in f32.
    if (Value expertGate = op.getExpertGate()) {
      auto f32 = rewriter.getF32Type();
      Value logit = e.fill(
          e.f32(0), e.emptyTensor({tokensDim}, f32,
                                  ShapedType::isDynamic(tokensDim)
                                      ? ValueRange(numTokens)
                                      : ValueRange()));
      logit = e.generic({input, expertGate}, logit,
                        {e.map(2, {0, 1}), e.map(2, {1}), e.map(2, {0})},
                        {kParallel, kReduction},
                        [](Emitter &e, ValueRange args) {
                          return e.multiplyAdd(args[2], e.toF32(args[0]),
                                               e.toF32(args[1]));
                        });
      output = e.generic({logit}, output, {e.map(2, {0}), e.map(2, {0, 1})},
                         {kParallel, kParallel},
                         [](Emitter &e, ValueRange args) {
                           return e.mul(args[1], e.sigmoid(args[0]));
                         });
    }
    rewriter.replaceOp(op, output);
    return success();
  }

  int64_t vectorLanes;
};

struct MoEDecomposeSharedExpertPass
    : moe::impl::MoEDecomposeSharedExpertBase<MoEDecomposeSharedExpertPass> {
  using Base::Base;

  void runOnOperation() override {
    if (failed(checkVectorLanes(getOperation(), getArgument(), vectorLanes)))
      return signalPassFailure();
    RewritePatternSet patterns(&getContext());
    populateDecomposeSharedExpertPatterns(patterns, vectorLanes);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

void moe::populateDecomposeSharedExpertPatterns(RewritePatternSet &patterns,
                                                int64_t vectorLanes) {
  patterns.add<DecomposeSharedExpert>(patterns.getContext(), vectorLanes);
}

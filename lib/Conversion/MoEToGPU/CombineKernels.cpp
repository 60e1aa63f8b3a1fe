//===- CombineKernels.cpp - moe.combine as a GPU kernel -------------------===//
//
// Part of the moe-mlir project.
//
// One thread per (token, column) sums the shared row and the (weighted)
// expert rows in slot order, plus the output bias, rounded once. Combine
// reads each token's k expert rows instead of the down projection adding
// into the token's row: blocks of different experts would race for it,
// and atomics would make the sum's order, and so the bits, vary.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"

#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
/// moe.combine: a gather-reduction per output element, in slot order.
struct LowerCombineToKernels : KernelPattern<CombineOp> {
  using KernelPattern::KernelPattern;

  LogicalResult lower(CombineOp op, KernelBuilder &kernels,
                      PatternRewriter &rewriter) const override {
    Emitter e = kernels.host();
    Value rows = e.readBuffer(op.getExpertOutput());
    Value slotRows = e.readBuffer(op.getSlotRows());
    Value weights = e.readOptionalBuffer(op.getWeights());
    Value shared = e.readOptionalBuffer(op.getShared());
    Value bias = e.readOptionalBuffer(op.getBias());
    Value numTokens = memref::DimOp::create(rewriter, op.getLoc(), slotRows, 0);
    Value slotsPerToken =
        memref::DimOp::create(rewriter, op.getLoc(), slotRows, 1);
    auto resultType = cast<RankedTensorType>(op.getOutput().getType());
    int64_t hidden = resultType.getDimSize(1);
    Type element = resultType.getElementType();
    Value output = resultBuffer(rewriter, kernels, op.getOutput(),
                                dynamicSizes(resultType, {numTokens, {}}));

    kernels.launchForEach(
        "combine", e.mul(numTokens, e.index(hidden)),
        [&](Emitter &e, Value item) {
          Value token = e.divIndex(item, e.index(hidden));
          Value column = e.remIndex(item, e.index(hidden));
          Value init = shared ? e.load(shared, {token, column}) : e.f32(0);
          Value sum = e.forEachCarrying(
              e.index(0), slotsPerToken, ValueRange{init},
              [&](Emitter &e, Value slot,
                  ValueRange acc) -> SmallVector<Value> {
                Value row = e.toIndex(e.load(slotRows, {token, slot}));
                Value kept = e.cmpi(arith::CmpIPredicate::sge, row, e.index(0));
                Value value =
                    e.load(rows, {e.select(kept, row, e.index(0)), column});
                // Without weights the experts scaled their input.
                if (weights)
                  value = e.mul(e.load(weights, {token, slot}), value);
                return {e.select(kept, e.add(acc[0], value), acc[0])};
              })[0];
          if (bias)
            sum = e.add(sum, e.toF32(e.load(bias, column)));
          if (!element.isF32())
            sum = arith::TruncFOp::create(e.builder(), e.location(), element,
                                          sum);
          e.store(sum, output, {token, column});
        });
    rewriter.replaceOp(op, e.asTensor(output, resultType));
    return success();
  }
};
} // namespace

void mlir::moe::populateCombineKernelPatterns(
    RewritePatternSet &patterns, const GPULoweringOptions &options) {
  patterns.add<LowerCombineToKernels>(patterns.getContext(), options);
}

//===- LowerCombine.cpp - moe.combine to a gather-reduction ---------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "Combine.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"


namespace mlir::moe {
#define GEN_PASS_DEF_MOELOWERCOMBINE
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
struct LowerCombine : OpRewritePattern<CombineOp> {
  LowerCombine(MLIRContext *context, bool accumulateIntoShared)
      : OpRewritePattern(context), accumulateIntoShared(accumulateIntoShared) {}

  LogicalResult matchAndRewrite(CombineOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Emitter e(rewriter, loc);
    SmallVector<Value> dynamicTokens = combineDynamicTokens(e, op);
    Value init = buildCombineStart(e, op, dynamicTokens, accumulateIntoShared);

    Value expertOutput = op.getExpertOutput();
    // Without weights the expert rows arrive weighted.
    Value weights = op.getWeights();
    SmallVector<Value> inputs = {op.getSlotRows()};
    if (weights)
      inputs.push_back(weights);
    SmallVector<AffineMap> maps(inputs.size(), e.map(3, {0, 2}));
    maps.push_back(e.map(3, {0, 1}));
    Value sum = e.generic(
        inputs, init, maps, {kParallel, kParallel, kReduction},
        [&](Emitter &e, ValueRange args) -> Value {
          Value row = args[0], acc = args.back();
          Value weight = weights ? args[1] : Value();
          Value column = e.loopIndex(1);
          Value kept = e.cmpi(arith::CmpIPredicate::sge, row, e.i64(0));
          return e.ifElse(
              kept,
              [&](Emitter &e) {
                Value value = tensor::ExtractOp::create(
                    e.builder(), e.location(), expertOutput,
                    ValueRange{e.toIndex(row), column});
                return e.add(acc, weight ? e.mul(weight, value) : value);
              },
              [&](Emitter &) { return acc; });
        });

    Value result =
        buildCombineEnd(e, op, sum, dynamicTokens, !accumulateIntoShared);
    // On a GPU, the kernel this op ends.
    result.getDefiningOp()->setAttr(kKernelNameAttrName,
                                    rewriter.getStringAttr("combine"));
    rewriter.replaceOp(op, result);
    return success();
  }

  bool accumulateIntoShared;
};

struct MoELowerCombinePass
    : moe::impl::MoELowerCombineBase<MoELowerCombinePass> {
  using Base::Base;

  void runOnOperation() override {
    if (failed(applyLowering<LowerCombine>(getOperation(),
                                           bool(accumulateIntoShared))))
      signalPassFailure();
  }
};
} // namespace

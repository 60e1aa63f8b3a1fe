//===- LowerToGPU.cpp - The moe stage ops to GPU kernels ------------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOELOWERTOGPU
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
struct MoELowerToGPUPass : moe::impl::MoELowerToGPUBase<MoELowerToGPUPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    GPULoweringOptions options{emulate};
    RewritePatternSet patterns(&getContext());
    populateGateKernelPatterns(patterns, options);
    populatePlanKernelPatterns(patterns, options);
    if (failed(applyPatternsGreedily(module, std::move(patterns))))
      return signalPassFailure();
    WalkResult left = module.walk([&](Operation *op) {
      if (!isa<MoEDialect>(op->getDialect()))
        return WalkResult::advance();
      if (isa<ExpertOp, SharedExpertOp, CombineOp>(op))
        op->emitOpError("is lowered on the linalg stage: run "
                        "moe-decompose-grouped, moe-lower-combine, "
                        "moe-configure-gpu and moe-tile-gpu first");
      else
        op->emitOpError("has no GPU kernels: run moe-expand first");
      return WalkResult::interrupt();
    });
    if (left.wasInterrupted())
      return signalPassFailure();
    // splitAtBarriers said why it could not split an emulated block.
    WalkResult unsplit = module.walk([](Operation *op) {
      return op->hasAttr(kUnsplitBlockAttrName) ? WalkResult::interrupt()
                                                : WalkResult::advance();
    });
    if (unsplit.wasInterrupted())
      signalPassFailure();
  }
};
} // namespace

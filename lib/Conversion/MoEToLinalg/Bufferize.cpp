//===- Bufferize.cpp - One-Shot Bufferize with loop copies ----------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/Bufferization/Transforms/OneShotAnalysis.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEBUFFERIZE
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {
struct MoEBufferizePass : moe::impl::MoEBufferizeBase<MoEBufferizePass> {
  using Base::Base;

  void runOnOperation() override {
    bufferization::OneShotBufferizationOptions options;
    // A copy between strided buffers (a tile of a result) becomes loops:
    // memref.copy would call a runtime the library does not link.
    options.memCpyFn = [](OpBuilder &b, Location loc, Value from,
                          Value to) -> LogicalResult {
      auto identity = [](Value buffer) {
        auto type = dyn_cast<MemRefType>(buffer.getType());
        return type && type.getLayout().isIdentity();
      };
      if (identity(from) && identity(to))
        memref::CopyOp::create(b, loc, from, to);
      else
        linalg::CopyOp::create(b, loc, from, to);
      return success();
    };
    bufferization::BufferizationState state;
    if (failed(bufferization::runOneShotBufferize(getOperation(), options,
                                                  state)))
      signalPassFailure();
  }
};
} // namespace

//===- PlaceBuffers.cpp - Thread and device buffers of the linalg stage ---===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "Kernel.h"

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPLACEBUFFERS
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
struct MoEPlaceBuffersPass
    : moe::impl::MoEPlaceBuffersBase<MoEPlaceBuffersPass> {
  using Base::Base;

  void runOnOperation() override {
    func::FuncOp function = getOperation();
    SmallVector<memref::AllocOp> threadBuffers, hostBuffers;
    function.walk([&](memref::AllocOp alloc) {
      if (alloc->hasAttr(kWorkspaceAttrName))
        return;
      if (alloc->getParentOfType<scf::ForallOp>())
        threadBuffers.push_back(alloc);
      else if (alloc->getParentOp() == function)
        hostBuffers.push_back(alloc);
    });
    IRRewriter rewriter(&getContext());
    // A tile's buffer is the thread's own: the tiles of one thread never
    // share it.
    for (memref::AllocOp alloc : threadBuffers) {
      for (Operation *user : llvm::make_early_inc_range(alloc->getUsers()))
        if (isa<memref::DeallocOp>(user))
          rewriter.eraseOp(user);
      rewriter.setInsertionPoint(alloc);
      rewriter.replaceOpWithNewOp<memref::AllocaOp>(alloc, alloc.getType(),
                                                    alloc.getDynamicSizes(),
                                                    alloc.getAlignmentAttr());
    }
    for (memref::AllocOp alloc : hostBuffers) {
      rewriter.setInsertionPoint(alloc);
      KernelBuilder kernels(rewriter, alloc.getLoc(), emulate, "");
      Value buffer = kernels.deviceBuffer(alloc.getType().getShape(),
                                          alloc.getType().getElementType(),
                                          alloc.getDynamicSizes());
      rewriter.replaceOp(alloc, buffer);
    }
  }
};
} // namespace

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
    WalkResult result = function.walk([&](memref::AllocOp alloc) {
      if (alloc->hasAttr(kWorkspaceAttrName))
        return WalkResult::advance();
      auto block = alloc->getParentOfType<scf::ForallOp>();
      if (block && block->getParentOfType<scf::ForallOp>()) {
        threadBuffers.push_back(alloc);
      } else if (block) {
        alloc.emitOpError("in a block's tile but outside its threads': the "
                          "block's threads would share it");
        return WalkResult::interrupt();
      } else if (alloc->getParentOp() == function) {
        hostBuffers.push_back(alloc);
      }
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      return signalPassFailure();
    IRRewriter rewriter(&getContext());
    // A tile's buffer is the thread's own: the tiles of one thread never
    // share it. Emulated, it stays on the heap, freed at the end of its
    // block: OpenMP loops put their bodies in `memref.alloca_scope`s, which
    // upstream's lowering of the loops inside to branches does not accept.
    for (memref::AllocOp alloc : threadBuffers) {
      for (Operation *user : llvm::make_early_inc_range(alloc->getUsers()))
        if (isa<memref::DeallocOp>(user))
          rewriter.eraseOp(user);
      if (emulate) {
        rewriter.setInsertionPoint(alloc->getBlock()->getTerminator());
        memref::DeallocOp::create(rewriter, alloc.getLoc(), alloc);
        continue;
      }
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

//===- FreeWorkspace.cpp - Free the kernels' buffers at return ------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "Kernel.h"

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/SCF/IR/SCF.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFREEWORKSPACE
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
struct MoEFreeWorkspacePass
    : moe::impl::MoEFreeWorkspaceBase<MoEFreeWorkspacePass> {
  void runOnOperation() override {
    func::FuncOp function = getOperation();
    SmallVector<Operation *> buffers;
    bool kernels = false;
    function.walk([&](Operation *op) {
      if (op->hasAttr(kWorkspaceAttrName))
        buffers.push_back(op);
      kernels |= isa<gpu::LaunchOp>(op);
    });
    if (buffers.empty() && !kernels)
      return;
    // Host code of a GPU function must leave device memory to the kernels.
    // A thread's own buffer in a tile of the linalg stage (on the heap when
    // emulated) is the kernel's.
    WalkResult hostTouch = function.walk([&](Operation *op) {
      auto block = op->getParentOfType<scf::ForallOp>();
      bool threadBuffer = block && block->getParentOfType<scf::ForallOp>();
      bool strayAlloc = isa<memref::AllocOp>(op) && !threadBuffer &&
                        !op->hasAttr(kWorkspaceAttrName);
      if (!strayAlloc && !isa<memref::CopyOp>(op))
        return WalkResult::advance();
      op->emitOpError("in a function with GPU kernels: host code may not "
                      "allocate or copy buffers the kernels use");
      return WalkResult::interrupt();
    });
    if (hostTouch.wasInterrupted())
      return signalPassFailure();

    OpBuilder b(function.getContext());
    function.walk([&](func::ReturnOp ret) {
      b.setInsertionPoint(ret);
      for (Operation *buffer : buffers) {
        Value memref = buffer->getResult(0);
        if (isa<gpu::AllocOp>(buffer))
          gpu::DeallocOp::create(b, ret.getLoc(), Type(), ValueRange{},
                                 memref);
        else
          memref::DeallocOp::create(b, ret.getLoc(), memref);
      }
    });
    for (Operation *buffer : buffers)
      buffer->removeAttr(kWorkspaceAttrName);
  }
};
} // namespace

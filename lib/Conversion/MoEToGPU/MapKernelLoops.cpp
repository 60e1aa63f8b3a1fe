//===- MapKernelLoops.cpp - Tile loops onto blocks and threads ------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/ParallelLoopMapper.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEMAPKERNELLOOPS
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

/// Maps the loops of `loop` to `processors` in order, the loops past them
/// to sequential loops.
static void mapLoops(scf::ParallelOp loop, ArrayRef<gpu::Processor> processors,
                     bool reversed) {
  MLIRContext *context = loop.getContext();
  AffineMap identity = AffineMap::getMultiDimIdentityMap(1, context);
  size_t count = loop.getNumLoops();
  SmallVector<gpu::ParallelLoopDimMappingAttr> mapping;
  for (size_t dim = 0; dim < count; ++dim) {
    size_t rank = reversed ? count - 1 - dim : dim;
    gpu::Processor processor = rank < processors.size()
                                   ? processors[rank]
                                   : gpu::Processor::Sequential;
    mapping.push_back(gpu::ParallelLoopDimMappingAttr::get(context, processor,
                                                           identity, identity));
  }
  (void)gpu::setMappingAttr(loop, mapping);
}

namespace {
struct MoEMapKernelLoopsPass
    : moe::impl::MoEMapKernelLoopsBase<MoEMapKernelLoopsPass> {
  void runOnOperation() override {
    using gpu::Processor;
    getOperation().walk([](scf::ParallelOp loop) {
      auto outer = loop->getParentOfType<scf::ParallelOp>();
      if (!outer) {
        mapLoops(loop,
                 {Processor::BlockX, Processor::BlockY, Processor::BlockZ},
                 /*reversed=*/false);
      } else if (!outer->getParentOfType<scf::ParallelOp>()) {
        mapLoops(loop,
                 {Processor::ThreadX, Processor::ThreadY, Processor::ThreadZ},
                 /*reversed=*/true);
      } else {
        mapLoops(loop, {}, /*reversed=*/false);
      }
    });
  }
};
} // namespace

//===- TileGPU.cpp - GPU kernels' blocks and threads ----------------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "MMA.h"
#include "Tiling.h"

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Tensor/Transforms/Transforms.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Transforms/Passes.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOETILEGPU
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

/// Whether `op` is inside a thread's tile: two nested `scf.forall`s.
static bool inThreadTile(Operation *op) {
  auto block = op->getParentOfType<scf::ForallOp>();
  return block && block->getParentOfType<scf::ForallOp>();
}

/// Appends the name of the kernel `op` ends ("grouped" when it has none)
/// to its function's kernel names.
static void recordKernelName(Operation *op) {
  auto function = op->getParentOfType<FunctionOpInterface>();
  if (!function)
    return;
  Builder b(op->getContext());
  SmallVector<Attribute> names;
  if (auto known = function->getAttrOfType<ArrayAttr>(kKernelNamesAttrName))
    names.assign(known.begin(), known.end());
  auto name = op->getAttrOfType<StringAttr>(kKernelNameAttrName);
  names.push_back(name ? name : b.getStringAttr("grouped"));
  function->setAttr(kKernelNamesAttrName, b.getArrayAttr(names));
}

/// Fills each shared output of `loop` that a `linalg.fill` initializes
/// slice by slice inside it, so that a tile fills its own slice (the tile
/// loops fuse the producers a tile reads, not those of the loop's own
/// outputs). The tiles' slices cover a tile loop's output; an output read
/// other than through slices, or not read, is left as it is.
static void fuseOutputFills(RewriterBase &rewriter, scf::ForallOp loop) {
  for (auto [init, output] :
       llvm::zip(loop.getOutputsMutable(), loop.getRegionIterArgs())) {
    auto fill = init.get().getDefiningOp<linalg::FillOp>();
    if (!fill || !fill->hasOneUse())
      continue;
    SmallVector<tensor::ExtractSliceOp> slices;
    bool slicesOnly = llvm::all_of(output.getUses(), [&](OpOperand &use) {
      if (auto slice = dyn_cast<tensor::ExtractSliceOp>(use.getOwner())) {
        slices.push_back(slice);
        return true;
      }
      return isa<tensor::ParallelInsertSliceOp>(use.getOwner());
    });
    if (!slicesOnly || slices.empty())
      continue;
    for (tensor::ExtractSliceOp slice : slices) {
      rewriter.setInsertionPointAfter(slice);
      auto filled =
          linalg::FillOp::create(rewriter, fill.getLoc(), fill.getInputs(),
                                 ValueRange{slice.getResult()});
      rewriter.replaceAllUsesExcept(slice.getResult(), filled.getResult(0),
                                    filled);
    }
    init.set(fill.getOutputs()[0]);
    rewriter.eraseOp(fill);
  }
}

/// The GPU processors of a tile loop over `sizes`' tiled loops (blocks,
/// threads or warps x, y, z in order). They keep canonicalization from folding
/// a loop of one iteration away (one block of a static size, say), which would
/// take a tile out of its block or thread; moe-map-kernel-loops replaces them
/// once the loops are `scf.parallel`s.
static SmallVector<Attribute> processorsOf(MLIRContext *context,
                                           ArrayRef<int64_t> sizes,
                                           bool threads, bool warps) {
  SmallVector<Attribute> mapping;
  for (int64_t size : sizes) {
    if (size == 0)
      continue;
    auto dim = static_cast<gpu::MappingId>(mapping.size());
    if (warps)
      mapping.push_back(gpu::GPUWarpMappingAttr::get(context, dim));
    else if (threads)
      mapping.push_back(gpu::GPUThreadMappingAttr::get(context, dim));
    else
      mapping.push_back(gpu::GPUBlockMappingAttr::get(context, dim));
  }
  return mapping;
}

namespace {
struct MoETileGPUPass : moe::impl::MoETileGPUBase<MoETileGPUPass> {
  using Base::Base;

  void runOnOperation() override {
    Operation *root = getOperation();
    IRRewriter rewriter(&getContext());

    // Blocks, then each block's threads, their producers fused into both.
    for (bool threads : {false, true}) {
      auto level =
          threads ? &TilingAttr::getThreads : &TilingAttr::getDistribution;
      for (TilingInterface op : opsWithLevel(root, level)) {
        if (!threads)
          recordKernelName(op);
        ArrayRef<int64_t> sizes = (tilingOf(op).*level)();
        bool warps = threads && op->hasAttr(kMMAAttrName);
        if (failed(tileAndFuse(
                rewriter, op, sizes, /*distribution=*/true,
                processorsOf(&getContext(), sizes, threads, warps))))
          return signalPassFailure();
      }
      root->walk([&](scf::ForallOp loop) { fuseOutputFills(rewriter, loop); });
      if (failed(canonicalize()))
        return signalPassFailure();
    }

    // A thread's reductions step by step (`scf::tileUsingSCF` along their
    // reduction loops, the tile carried), then its ops, steps included, as
    // vector ops.
    SmallVector<TilingInterface> reductions;
    root->walk([&](TilingInterface op) {
      TilingAttr tiling = tilingOf(op);
      if (inThreadTile(op) && tiling && !tiling.getReduction().empty())
        reductions.push_back(op);
    });
    for (TilingInterface op : reductions)
      if (failed(tileBy(rewriter, op, tilingOf(op).getReduction())))
        return signalPassFailure();
    // A warp's projections and its last op stay whole for
    // moe-gpu-mma-sync.
    SmallVector<linalg::LinalgOp> tiles;
    root->walk([&](linalg::LinalgOp op) {
      if (inThreadTile(op) && !op->hasAttr(kMMAAttrName))
        tiles.push_back(op);
    });
    for (linalg::LinalgOp op : tiles) {
      if (op.getNumReductionLoops() > 0)
        allowContraction(op);
      (void)vectorizeTile(rewriter, op, /*gathers=*/true);
    }

    // As on the CPU: the sums stay in registers across the reduction loop,
    // and only a tile's intermediate results are allocated.
    RewritePatternSet patterns(&getContext());
    tensor::populateFoldTensorEmptyPatterns(patterns);
    if (failed(applyPatternsGreedily(root, std::move(patterns))) ||
        failed(canonicalize(/*hoist=*/true)))
      return signalPassFailure();

    // A tile's scratch tensor made outside the threads would be one buffer
    // that a block's threads share: each thread makes its own.
    root->walk([&](tensor::EmptyOp empty) {
      if (inThreadTile(empty))
        return;
      for (OpOperand &use : llvm::make_early_inc_range(empty->getUses())) {
        if (!inThreadTile(use.getOwner()))
          continue;
        rewriter.setInsertionPoint(use.getOwner());
        use.set(rewriter.clone(*empty)->getResult(0));
      }
      if (empty->use_empty())
        rewriter.eraseOp(empty);
    });

    WalkResult outside = root->walk([](linalg::LinalgOp op) {
      if (inThreadTile(op))
        return WalkResult::advance();
      op->emitOpError("was not tiled into GPU threads: no kernel of the "
                      "grouped form reads it");
      return WalkResult::interrupt();
    });
    if (outside.wasInterrupted())
      return signalPassFailure();
    root->walk([](Operation *op) {
      if (tilingOf(op))
        op->removeAttr(kLoweringConfigAttrName);
      op->removeAttr(kKernelNameAttrName);
    });
  }

  LogicalResult canonicalize(bool hoist = false) {
    OpPassManager pm(getOperation()->getName());
    addTileCleanup(pm, hoist);
    return runPipeline(pm, getOperation());
  }
};
} // namespace

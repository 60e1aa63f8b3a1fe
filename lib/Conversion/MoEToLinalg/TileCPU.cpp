//===- TileCPU.cpp - Each #moe.tiling by upstream's drivers ---------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "Contraction.h"
#include "Tiling.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/SCF/Transforms/TileUsingInterface.h"
#include "mlir/Dialect/SCF/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/Transforms/Transforms.h"
#include "mlir/Transforms/Passes.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOETILECPU
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

/// Marks the ops of a register tile between tiling and vectorization; the
/// peeled copies of a tile loop carry it too.
static constexpr llvm::StringLiteral kRegisterTileMarker = "moe.register_tile";

/// Peels the last, partial iteration off each loop of a tile loop nest, so
/// that every full tile has static sizes.
static void peelNest(RewriterBase &rewriter, scf::ForOp loop) {
  scf::ForOp partial;
  (void)scf::peelForLoopAndSimplifyBounds(rewriter, loop, partial);
  for (scf::ForOp copy : {loop, partial}) {
    if (!copy)
      continue;
    for (auto inner : llvm::to_vector(copy.getBody()->getOps<scf::ForOp>()))
      peelNest(rewriter, inner);
  }
}

/// Tiles `op`'s parallel loops by its `registers` sizes, peeling the
/// partial tiles off, and marks the tiles.
static LogicalResult tileRegisters(RewriterBase &rewriter, TilingInterface op,
                                   TilingAttr tiling) {
  FailureOr<scf::SCFTilingResult> tiled = tileBy(
      rewriter, op, tiling.getRegisters(), tiling.getInterchange());
  if (failed(tiled))
    return failure();
  tiled->tiledOps.back()->setAttr(kRegisterTileMarker,
                                  rewriter.getUnitAttr());
  if (!tiled->loops.empty())
    peelNest(rewriter, cast<scf::ForOp>(tiled->loops.front().getOperation()));
  return success();
}

/// Tiles the loops of `op` whose sizes are dynamic by one.
static LogicalResult tileDynamicLoopsByOne(RewriterBase &rewriter,
                                           linalg::LinalgOp op) {
  SmallVector<int64_t> sizes = llvm::map_to_vector(
      op.getStaticLoopRanges(),
      [](int64_t range) -> int64_t { return ShapedType::isDynamic(range); });
  return tileBy(rewriter, cast<TilingInterface>(op.getOperation()), sizes);
}

/// Splits a marked tile's reduction by its `reduction` steps (a partial sum
/// per step element, merged after the loop) and vectorizes every op that
/// results.
static LogicalResult reduceAndVectorize(RewriterBase &rewriter,
                                        linalg::LinalgOp op,
                                        TilingAttr tiling) {
  op->removeAttr(kRegisterTileMarker);
  SmallVector<Operation *> tiles = {op};
  if (llvm::any_of(tiling.getReduction(), [](int64_t s) { return s > 0; })) {
    rewriter.setInsertionPoint(op);
    FailureOr<scf::SCFTilingResult> split = scf::tileReductionUsingScf(
        rewriter, cast<PartialReductionOpInterface>(op.getOperation()),
        asFoldResults(rewriter, tiling.getReduction()));
    if (failed(split))
      return op->emitOpError("cannot split its reduction by its "
                             "lowering_config");
    rewriter.replaceOp(op, split->replacements);
    tiles.clear();
    for (Value init : split->initialValues)
      if (Operation *fill = init.getDefiningOp())
        tiles.push_back(fill);
    llvm::append_range(tiles, split->tiledOps);
    llvm::append_range(tiles, split->mergeOps);
  }
  // Products and sums may contract into FMAs. A tile the vectorizer does
  // not take stays a linalg op, which the scalar lowering still runs
  // correctly.
  for (Operation *tile : tiles) {
    allowContraction(tile);
    (void)vectorizeTile(rewriter, tile);
  }
  return success();
}

namespace {
struct MoETileCPUPass : moe::impl::MoETileCPUBase<MoETileCPUPass> {
  using Base::Base;

  void runOnOperation() override {
    Operation *root = getOperation();
    IRRewriter rewriter(&getContext());

    for (TilingInterface op : opsWithLevel(root, &TilingAttr::getDistribution))
      if (failed(tileAndFuse(rewriter, op, tilingOf(op).getDistribution(),
                             /*distribution=*/true)))
        return signalPassFailure();

    // A tile loop's bounds then no longer read the untiled producers, which
    // fold away.
    if (failed(canonicalize()))
      return signalPassFailure();

    // The packed form's relayouts, which no tile loop fuses, become a pad,
    // a reshape and a transpose, which bufferize.
    if (failed(lowerRelayouts(rewriter, root)))
      return signalPassFailure();

    // Cache blocks: the tile loops carry the result, which each block
    // accumulates into, and make the slices of the block's operands.
    for (TilingInterface op : opsWithLevel(root, &TilingAttr::getCache))
      if (failed(tileAndFuse(rewriter, op, tilingOf(op).getCache(),
                             /*distribution=*/false)))
        return signalPassFailure();
    if (failed(canonicalize()))
      return signalPassFailure();

    for (TilingInterface op : opsWithLevel(root, &TilingAttr::getRegisters))
      if (failed(tileRegisters(rewriter, op, tilingOf(op))))
        return signalPassFailure();

    // Peeled full tiles get their static shapes.
    if (failed(canonicalize()))
      return signalPassFailure();

    // A peeled partial tile is one loop iteration of a dynamic size below
    // the register tile's: tiled again by one along those loops, every
    // tile has a static shape and is vectorized without masks.
    SmallVector<linalg::LinalgOp> partial;
    root->walk([&](linalg::LinalgOp op) {
      if (op->hasAttr(kRegisterTileMarker) && op.hasDynamicShape())
        partial.push_back(op);
    });
    for (linalg::LinalgOp op : partial)
      if (failed(tileDynamicLoopsByOne(rewriter, op)))
        return signalPassFailure();
    if (failed(canonicalize()))
      return signalPassFailure();

    SmallVector<linalg::LinalgOp> tiles;
    root->walk([&](linalg::LinalgOp op) {
      if (op->hasAttr(kRegisterTileMarker))
        tiles.push_back(op);
    });
    for (linalg::LinalgOp op : tiles)
      if (failed(reduceAndVectorize(rewriter, op, tilingOf(op))))
        return signalPassFailure();

    // The partial sums of a reduction loop stay in registers: their
    // per-iteration read and write move out of the loop (upstream's
    // subset hoisting, once CSE has made their indices the same values).
    // A tile's slice of an empty tensor becomes an empty tensor of the
    // tile's size, so only a tile's intermediate results are allocated.
    RewritePatternSet patterns(&getContext());
    tensor::populateFoldTensorEmptyPatterns(patterns);
    if (failed(applyPatternsGreedily(root, std::move(patterns))) ||
        failed(canonicalize(/*hoist=*/true)))
      return signalPassFailure();

    // The tiles carry their op's config as clones do: applied, it goes, so
    // that the pass tiles nothing twice.
    root->walk([](Operation *op) {
      op->removeAttr(kRegisterTileMarker);
      if (tilingOf(op))
        op->removeAttr(kLoweringConfigAttrName);
    });
  }

  LogicalResult canonicalize(bool hoist = false) {
    OpPassManager pm(getOperation()->getName());
    addTileCleanup(pm, hoist);
    return runPipeline(pm, getOperation());
  }
};
} // namespace

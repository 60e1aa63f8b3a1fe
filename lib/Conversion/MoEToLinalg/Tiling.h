//===- Tiling.h - A #moe.tiling applied by upstream's drivers -*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// The steps `moe-tile-cpu` and `moe-tile-gpu` share: tile-and-fuse in
// `scf.forall` or `scf.for` loops, tile by sizes, vectorize a tile, and the
// cleanup between steps.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOLINALG_TILING_H
#define MOE_LIB_CONVERSION_MOETOLINALG_TILING_H

#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/SCF/Transforms/TileUsingInterface.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

namespace mlir::moe {

inline TilingAttr tilingOf(Operation *op) {
  return op->getAttrOfType<TilingAttr>(kLoweringConfigAttrName);
}

inline SmallVector<OpFoldResult> asFoldResults(OpBuilder &b,
                                               ArrayRef<int64_t> sizes) {
  return llvm::map_to_vector(sizes, [&](int64_t size) -> OpFoldResult {
    return b.getIndexAttr(size);
  });
}

/// Whether a tile loop fuses `producer`: a distribution loop fuses every
/// linalg op its op reads that is not distributed itself; a cache block
/// fuses, of those, the ones with a tiling of their own that are neither
/// contractions nor initial values (the widened weights), so that they are
/// made block by block. A relayout (the packed rows) is made once, outside.
inline std::optional<scf::SCFTileAndFuseOptions::ControlFnResult>
fusesInto(bool distribution, OpResult producer, bool isDestination) {
  auto linalgOp = dyn_cast<linalg::LinalgOp>(producer.getOwner());
  if (!linalgOp)
    return std::nullopt;
  TilingAttr tiling = tilingOf(linalgOp);
  bool fused = distribution ? !tiling || tiling.getDistribution().empty()
                            : tiling && !isDestination &&
                                  !linalg::isaContractionOpInterface(linalgOp);
  if (!fused)
    return std::nullopt;
  return scf::SCFTileAndFuseOptions::ControlFnResult{};
}

/// Tiles `op` by `sizes` with upstream's tile-and-fuse driver, in an
/// `scf.forall` whose tiles the threads share for the distribution level,
/// in `scf.for` loops for a cache level. A `mapping` is the forall's, one
/// attribute per tiled loop.
inline LogicalResult tileAndFuse(RewriterBase &rewriter, TilingInterface op,
                                 ArrayRef<int64_t> sizes, bool distribution,
                                 ArrayRef<Attribute> mapping = {}) {
  scf::SCFTileAndFuseOptions options;
  options.tilingOptions.setTileSizes(asFoldResults(rewriter, sizes));
  options.tilingOptions.setMapping(mapping);
  if (distribution)
    options.tilingOptions.setLoopType(
        scf::SCFTilingOptions::LoopType::ForallOp);
  options.setFusionControlFn([distribution](tensor::ExtractSliceOp,
                                            OpResult producer,
                                            bool isDestination) {
    return fusesInto(distribution, producer, isDestination);
  });
  rewriter.setInsertionPoint(op);
  FailureOr<scf::SCFTileAndFuseResult> tiled =
      scf::tileConsumerAndFuseProducersUsingSCF(rewriter, op, options);
  if (failed(tiled))
    return op->emitOpError("cannot be tiled by its lowering_config");
  for (OpResult result : op->getResults())
    if (Value replacement = tiled->replacements.lookup(result))
      rewriter.replaceAllUsesWith(result, replacement);
  rewriter.eraseOp(op);
  return success();
}

/// Tiles `op` by `sizes` in the loop order `interchange` (empty: its own)
/// with upstream's driver, replacing it by the tile loops.
inline FailureOr<scf::SCFTilingResult>
tileBy(RewriterBase &rewriter, TilingInterface op, ArrayRef<int64_t> sizes,
       ArrayRef<int64_t> interchange = {}) {
  scf::SCFTilingOptions options;
  options.setTileSizes(asFoldResults(rewriter, sizes));
  options.setInterchange(interchange);
  rewriter.setInsertionPoint(op);
  FailureOr<scf::SCFTilingResult> tiled =
      scf::tileUsingSCF(rewriter, op, options);
  if (failed(tiled))
    return op->emitOpError("cannot be tiled by its lowering_config");
  rewriter.replaceOp(op, tiled->replacements);
  return tiled;
}

/// Vectorizes a tile of static shape at that shape, with no masks; a tile
/// of dynamic shape is left to the scalar lowering. With `gathers`, a
/// `tensor.extract` of a tensor of any rank becomes a gather (or a load,
/// where its indices are contiguous).
inline LogicalResult vectorizeTile(RewriterBase &rewriter, Operation *op,
                                   bool gathers = false) {
  auto linalgOp = dyn_cast<linalg::LinalgOp>(op);
  if (!linalgOp || linalgOp.hasDynamicShape())
    return failure();
  rewriter.setInsertionPoint(op);
  FailureOr<linalg::VectorizationResult> vectorized =
      linalg::vectorize(rewriter, op, /*inputVectorSizes=*/{},
                        /*inputScalableVecDims=*/{}, gathers);
  if (failed(vectorized))
    return failure();
  if (op->getNumResults())
    rewriter.replaceOp(op, vectorized->replacements);
  else
    rewriter.eraseOp(op);
  return success();
}

/// Lets the products and sums of `tile` contract into FMAs.
inline void allowContraction(Operation *tile) {
  tile->walk([](arith::ArithFastMathInterface op) {
    arith::FastMathFlagsAttr flags = op.getFastMathFlagsAttr();
    op->setAttr(op.getFastMathAttrName(),
                arith::FastMathFlagsAttr::get(
                    op->getContext(),
                    (flags ? flags.getValue() : arith::FastMathFlags::none) |
                        arith::FastMathFlags::contract));
  });
}

/// The ops under `root` whose #moe.tiling has a `level` (e.g.
/// &TilingAttr::getCache), in walk order.
inline SmallVector<TilingInterface>
opsWithLevel(Operation *root, ArrayRef<int64_t> (TilingAttr::*level)() const) {
  SmallVector<TilingInterface> ops;
  root->walk([&](TilingInterface op) {
    if (TilingAttr tiling = tilingOf(op))
      if (!(tiling.*level)().empty())
        ops.push_back(op);
  });
  return ops;
}

/// Canonicalization between tiling steps; with `hoist`, CSE and upstream's
/// subset hoisting too.
inline void addTileCleanup(OpPassManager &pm, bool hoist) {
  pm.addPass(createCanonicalizerPass());
  if (!hoist)
    return;
  pm.addPass(createCSEPass());
  pm.addPass(createLoopInvariantSubsetHoistingPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOLINALG_TILING_H

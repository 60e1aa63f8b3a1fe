//===- ConfigureGPU.cpp - The grouped FFNs' block and thread tiles --------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOECONFIGUREGPU
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

/// A block's most columns, and the threads along each side of its tile.
static constexpr int64_t kBlockColumns = 64;
static constexpr int64_t kThreadSide = 16;

/// Whether a kernel ends at `op`: a linalg op must read its result along
/// a reduction loop (so all of it must exist first), or no linalg op reads
/// it.
static bool endsKernel(linalg::LinalgOp op) {
  for (Value result : op->getResults())
    for (OpOperand &use : result.getUses()) {
      auto user = dyn_cast<linalg::LinalgOp>(use.getOwner());
      if (!user)
        return true;
      AffineMap map = user.getMatchingIndexingMap(&use);
      for (AffineExpr expr : map.getResults())
        if (auto dim = dyn_cast<AffineDimExpr>(expr))
          if (user.getIteratorTypesArray()[dim.getPosition()] ==
              utils::IteratorType::reduction)
            return true;
    }
  return false;
}

namespace {
/// The tiles of an op over `(t, i, n[, k])`, `[tiles, rowTile, N]` rows.
struct GroupedTiles {
  SmallVector<int64_t> distribution, threads, registers, reduction;
};
} // namespace

/// The tiles of `op` if its loops are `(t, i, n)` or `(t, i, n, k)` with
/// `rowTile` rows and static `N`; none otherwise.
static std::optional<GroupedTiles> groupedTiles(linalg::LinalgOp op,
                                                int64_t rowTile) {
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  SmallVector<utils::IteratorType> iterators = op.getIteratorTypesArray();
  bool contraction = ranges.size() == 4;
  if ((ranges.size() != 3 && !contraction) || ranges[1] != rowTile ||
      ShapedType::isDynamic(ranges[2]) ||
      llvm::any_of(
          ArrayRef(iterators).take_front(3),
          [](auto type) { return type == utils::IteratorType::reduction; }) ||
      (contraction && iterators[3] != utils::IteratorType::reduction))
    return std::nullopt;
  // The largest power of two up to kBlockColumns that divides N, so that
  // every tile is whole.
  int64_t columns = kBlockColumns;
  while (ranges[2] % columns != 0)
    columns /= 2;
  int64_t perThread = std::max<int64_t>(1, columns / kThreadSide);
  GroupedTiles tiles{{1, rowTile, columns},
                     {1, rowTile / kThreadSide, perThread},
                     {1, rowTile / kThreadSide, perThread},
                     {0, 0, 0}};
  if (contraction) {
    for (SmallVector<int64_t> *level :
         {&tiles.distribution, &tiles.threads, &tiles.registers})
      level->push_back(0);
    tiles.reduction.push_back(1);
  }
  return tiles;
}

/// A tiling that steps through `op`'s reduction loops one element at a
/// time, its parallel loops whole.
static TilingAttr reductionSteps(linalg::LinalgOp op) {
  SmallVector<int64_t> registers(op.getNumLoops(), 0), reduction;
  for (utils::IteratorType type : op.getIteratorTypesArray())
    reduction.push_back(type == utils::IteratorType::reduction ? 1 : 0);
  return TilingAttr::get(op->getContext(), {}, {}, {}, registers, reduction,
                         {});
}

namespace {
struct MoEConfigureGPUPass
    : moe::impl::MoEConfigureGPUBase<MoEConfigureGPUPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (rowTile < kThreadSide || rowTile % kThreadSide != 0) {
      module.emitError() << "moe-configure-gpu: 'row-tile' ("
                         << rowTile.getValue() << ") must be a multiple of "
                         << kThreadSide;
      return signalPassFailure();
    }
    WalkResult result = module.walk([&](linalg::LinalgOp op) {
      if (op->hasAttr(kLoweringConfigAttrName))
        return WalkResult::advance();
      bool end = endsKernel(op);
      std::optional<GroupedTiles> tiles = groupedTiles(op, rowTile);
      MLIRContext *context = op->getContext();
      if (end && !tiles) {
        op->emitOpError("ends a GPU kernel but its loops are not a grouped "
                        "FFN's (t, i, n) over ")
            << rowTile.getValue() << "-row tiles";
        return WalkResult::interrupt();
      }
      // Any other reduction fused into a thread's tile (a tile's expert,
      // the shared expert's gate) is vectorized one reduction step at a
      // time, so that its sums stay in registers.
      if (!tiles) {
        if (!end && op.getNumReductionLoops() > 0)
          op->setAttr(kLoweringConfigAttrName, reductionSteps(op));
        return WalkResult::advance();
      }
      // A contraction is vectorized as the register tile of its thread; an
      // elementwise op fused into a thread's tile is vectorized whole.
      bool contraction = tiles->distribution.size() == 4;
      if (!end && !contraction)
        return WalkResult::advance();
      SmallVector<int64_t> none;
      op->setAttr(kLoweringConfigAttrName,
                  TilingAttr::get(context, end ? tiles->distribution : none,
                                  end ? tiles->threads : none, {},
                                  contraction ? tiles->registers : none,
                                  contraction ? tiles->reduction : none, {}));
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};
} // namespace

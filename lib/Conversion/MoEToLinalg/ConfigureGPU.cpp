//===- ConfigureGPU.cpp - The grouped FFNs' block and thread tiles --------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "MMA.h"

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
/// A token-wise kernel's threads a block, one element each.
static constexpr int64_t kTokenwiseThreads = 256;

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
/// A kernel's tiles, one size per loop: its blocks and its threads.
struct KernelTiles {
  SmallVector<int64_t> blocks, threads;
};
} // namespace

/// The largest power of two up to `most` that divides `size`.
static int64_t largestDividingPowerOfTwo(int64_t size, int64_t most) {
  int64_t tile = most;
  while (size % tile != 0)
    tile /= 2;
  return tile;
}

/// The tiles of `op` if it is a kernel of the grouped form or a token-wise
/// one; none otherwise:
/// * loops `(t, i, n)` (or `(t, i, n, k)`) of `rowTile` rows and static N
///   (an FFN's): a row tile × the most columns up to 64 that divide N (so
///   that every tile is whole) a block, 16 threads along the rows and up
///   to 16 along the columns;
/// * loops `(t, n)` (or `(t, n, j)`) over the tokens and static N
///   (combine's): the most columns up to 256 that divide N, C, × 256 / C
///   tokens a block, one element a thread (the last block's tokens may be
///   fewer: a thread's tile is whole all the same).
static std::optional<KernelTiles> kernelTiles(linalg::LinalgOp op,
                                              int64_t rowTile) {
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  SmallVector<utils::IteratorType> iterators = op.getIteratorTypesArray();
  auto reduces = [](utils::IteratorType type) {
    return type == utils::IteratorType::reduction;
  };
  unsigned parallel = op.getNumParallelLoops();
  if ((parallel != 2 && parallel != 3) || ranges.size() > parallel + 1 ||
      llvm::any_of(ArrayRef(iterators).take_front(parallel), reduces) ||
      ShapedType::isDynamic(ranges[parallel - 1]))
    return std::nullopt;
  int64_t columns = ranges[parallel - 1];
  KernelTiles tiles;
  if (parallel == 3) {
    if (ranges[1] != rowTile)
      return std::nullopt;
    int64_t perBlock = largestDividingPowerOfTwo(columns, kBlockColumns);
    tiles = {{1, rowTile, perBlock},
             {1, rowTile / kThreadSide,
              std::max<int64_t>(1, perBlock / kThreadSide)}};
  } else {
    int64_t perBlock = largestDividingPowerOfTwo(columns, kTokenwiseThreads);
    tiles = {{kTokenwiseThreads / perBlock, perBlock}, {1, 1}};
  }
  if (ranges.size() > parallel) {
    tiles.blocks.push_back(0);
    tiles.threads.push_back(0);
  }
  return tiles;
}

/// Steps of one along `op`'s reduction loops, none along the others; empty
/// without reduction loops.
static SmallVector<int64_t> reductionSteps(linalg::LinalgOp op) {
  if (op.getNumReductionLoops() == 0)
    return {};
  return llvm::map_to_vector(op.getIteratorTypesArray(),
                             [](utils::IteratorType type) -> int64_t {
                               return type == utils::IteratorType::reduction;
                             });
}

/// The tensor-core projections `op` reads (through the identity map) if it
/// ends a kernel of the grouped form whose every projection is one, all of
/// one 16-bit type; none otherwise.
static SmallVector<linalg::LinalgOp> mmaProjections(linalg::LinalgOp op,
                                                    int64_t rowTile) {
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  if (op.getNumLoops() != 3 || op.getNumParallelLoops() != 3 ||
      ranges[1] != rowTile || ShapedType::isDynamic(ranges[2]) ||
      ranges[2] % kMMAShape[1] != 0)
    return {};
  SmallVector<linalg::LinalgOp> projections;
  FloatType element;
  for (OpOperand *input : op.getDpsInputOperands()) {
    auto producer = input->get().getDefiningOp<linalg::LinalgOp>();
    if (!producer || producer.getNumReductionLoops() == 0)
      continue;
    std::optional<MMAContraction> contraction = matchMMAContraction(producer);
    // The warp's fragments are of one 16-bit type.
    if (!contraction || (element && contraction->element != element) ||
        !op.getMatchingIndexingMap(input).isIdentity())
      return {};
    element = contraction->element;
    projections.push_back(producer);
  }
  return projections;
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
    MLIRContext *context = &getContext();
    auto mmaShape = DenseI64ArrayAttr::get(context, kMMAShape);
    if (tensorCores) {
      module.walk([&](linalg::LinalgOp op) {
        if (!endsKernel(op))
          return;
        SmallVector<linalg::LinalgOp> projections = mmaProjections(op, rowTile);
        std::optional<KernelTiles> tiles = kernelTiles(op, rowTile);
        if (projections.empty() || !tiles)
          return;
        // A block's tile as on SIMT, each warp's 16 rows and up to 32
        // columns of it.
        int64_t perBlock = tiles->blocks[2];
        op->setAttr(
            kLoweringConfigAttrName,
            TilingAttr::get(context, tiles->blocks,
                            {1, kMMAShape[0], std::min<int64_t>(perBlock, 32)},
                            {}, {}, {}, {}));
        op->setAttr(kMMAAttrName, mmaShape);
        for (linalg::LinalgOp projection : projections)
          projection->setAttr(kMMAAttrName, mmaShape);
      });
    }
    WalkResult result = module.walk([&](linalg::LinalgOp op) {
      if (op->hasAttr(kLoweringConfigAttrName) || op->hasAttr(kMMAAttrName))
        return WalkResult::advance();
      // A reduction (a projection, a tile's expert, the shared expert's
      // gate) is stepped through one element at a time in a thread, its
      // sums in registers.
      SmallVector<int64_t> steps = reductionSteps(op);
      if (!endsKernel(op)) {
        if (!steps.empty())
          op->setAttr(kLoweringConfigAttrName,
                      TilingAttr::get(context, {}, {}, {}, {}, steps, {}));
        return WalkResult::advance();
      }
      std::optional<KernelTiles> tiles = kernelTiles(op, rowTile);
      if (!tiles) {
        op->emitOpError("ends a GPU kernel but its loops are neither a "
                        "grouped FFN's (t, i, n) over ")
            << rowTile.getValue() << "-row tiles nor a token-wise op's (t, n)";
        return WalkResult::interrupt();
      }
      op->setAttr(kLoweringConfigAttrName,
                  TilingAttr::get(context, tiles->blocks, tiles->threads, {},
                                  {}, steps, {}));
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};
} // namespace

//===- ConfigureCPU.cpp - Each op's CPU tiling from the target ------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "Dequantize.h"
#include "Target.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOECONFIGURECPU
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

/// A row-wise contraction's register tile: 2 rows by 4 weight rows, with
/// one f32 vector of partial sums each along the reduction.
static constexpr int64_t kContractionRows = 2;
static constexpr int64_t kContractionColumns = 4;

/// A packed contraction's register tile: 6 broadcast weight rows by 2
/// groups (vectors) of rows with AVX2's 16 vector registers, 12 with
/// AVX-512's 32: 12 or 24 accumulators, the two groups and one broadcast.
static constexpr int64_t kPackedGroups = 2;
static int64_t packedColumns(int64_t lanes) { return lanes >= 16 ? 12 : 6; }

/// A packed contraction runs in cache blocks of this many rows, each of
/// which widens its slice of bf16 or f16 weights (moe-tile-cpu fuses the
/// widening into it). The reduction is not blocked, so that each weight
/// row is read as one long run, which the prefetchers follow. Both choices
/// were measured against the alternative (docs/PERFORMANCE.md).
static constexpr int64_t kBlockRows = 256;

/// A distributed contraction's columns are split into at most this many
/// tiles, which the threads share.
static constexpr int64_t kColumnTiles = 64;

/// The tiling of a contraction with one static K loop, null for any other
/// op:
/// * row-wise (one M loop, one N loop): a `[rows, columns]` register tile
///   over a split reduction of up to `lanes` partial sums, the columns'
///   loop outermost;
/// * row-wise over streamed weight rows (N loops (s, j)): the same, a tile
///   taking one row of each of the s streams;
/// * packed (M loops (g, l), the rows of a group innermost with one
///   vector's lanes): a register tile of outer products of `lanes` wide
///   groups of rows and broadcast weights over the reduction, one step at
///   a time, in cache blocks of rows.
static TilingAttr chooseContractionTiling(linalg::LinalgOp op,
                                          int64_t lanes) {
  FailureOr<linalg::ContractionDimensions> dims = contractionDims(op);
  if (failed(dims) || dims->n.empty() || dims->n.size() > 2 ||
      dims->k.empty() || !dims->batch.empty())
    return {};
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  // A reduction split into groups (quantized weights) steps its outer
  // loops one at a time and vectorizes the innermost.
  int64_t n = dims->n.back(), k = dims->k.back();
  int64_t depth = ranges[k];
  if (ShapedType::isDynamic(depth))
    return {};
  SmallVector<int64_t> registers(op.getNumLoops(), 0),
      reduction(op.getNumLoops(), 0);
  // A reduction loop that the weight does not index (a 4-bit contraction's
  // nibble loop, whose two halves come from one byte) stays whole inside
  // each step, so that the byte is loaded once for both.
  for (unsigned outer : dims->k)
    reduction[outer] = 1;
  auto orderedFirst = [&](ArrayRef<int64_t> first) {
    SmallVector<int64_t> order(first);
    for (int64_t loop = 0, e = op.getNumLoops(); loop < e; ++loop)
      if (!llvm::is_contained(first, loop))
        order.push_back(loop);
    return order;
  };
  if (dims->m.size() == 2 && dims->n.size() == 1) {
    // The rows of a group are the lanes the decomposition packed by.
    int64_t g = dims->m[0], l = dims->m[1];
    lanes = ranges[l];
    if (ShapedType::isDynamic(lanes))
      return {};
    registers[g] = kPackedGroups;
    registers[n] = packedColumns(lanes);
    registers[l] = lanes;
    reduction[k] = 1;
    SmallVector<int64_t> cache(op.getNumLoops(), 0);
    cache[g] = kBlockRows / lanes;
    // The groups' tile loop is outside the columns', so that a tile of
    // groups stays in L1 while the columns' weights pass.
    return TilingAttr::get(op->getContext(), {}, {}, cache, registers,
                           reduction, orderedFirst({g, n}));
  }
  if (dims->m.size() != 1)
    return {};
  // The reduction's step divides it, so that no partial step needs masks.
  int64_t step = lanes;
  while (depth % step != 0)
    step /= 2;
  registers[dims->m[0]] = kContractionRows;
  reduction[k] = step;
  if (dims->n.size() == 2) {
    // Streamed weight rows: one row of each stream a tile.
    int64_t stream = dims->n[0];
    if (ShapedType::isDynamic(ranges[stream]))
      return {};
    registers[stream] = ranges[stream];
    registers[n] = 1;
  } else {
    registers[n] = kContractionColumns;
  }
  // A tile of weight rows is the outer loop, so its rows stay in L1 while
  // the rows of the input pass.
  return TilingAttr::get(op->getContext(), {}, {}, {}, registers, reduction,
                         orderedFirst({n}));
}

/// Whether `op` is an elementwise linalg.generic: parallel loops and
/// identity maps only.
static bool isElementwise(Operation *op) {
  auto generic = dyn_cast<linalg::GenericOp>(op);
  return generic && generic.getNumLoops() == generic.getNumParallelLoops() &&
         llvm::all_of(generic.getIndexingMapsArray(),
                      [](AffineMap map) { return map.isIdentity(); });
}

/// Vectorizes the widening or dequantization of a packed contraction's
/// weights, which moe-tile-cpu fuses into each cache block of rows: a
/// register tile of `lanes` elements along the innermost loop.
static void vectorizeWidenedWeights(linalg::LinalgOp op, int64_t lanes) {
  auto widen = op.getDpsInputOperand(1)->get().getDefiningOp<linalg::GenericOp>();
  if (!widen || widen.getNumLoops() != widen.getNumParallelLoops() ||
      widen->hasAttr(kLoweringConfigAttrName))
    return;
  SmallVector<int64_t> registers(widen.getNumLoops(), 1);
  registers.back() = lanes;
  widen->setAttr(
      kLoweringConfigAttrName,
      TilingAttr::get(op->getContext(), {}, {}, {}, registers, {}, {}));
}

/// A distribution of `op`'s loop `loop` in at most kColumnTiles tiles of
/// whole multiples of `step`, over `columns`.
static SmallVector<int64_t> columnDistribution(int64_t numLoops, int64_t loop,
                                               int64_t columns, int64_t step) {
  SmallVector<int64_t> distribution(numLoops, 0);
  distribution[loop] =
      step * llvm::divideCeil(llvm::divideCeil(columns, kColumnTiles), step);
  return distribution;
}

/// Splits a configured contraction's columns across threads: its column
/// loop is distributed in at most kColumnTiles tiles of whole register
/// tiles. With `fuseActivation`, an elementwise consumer (the activation)
/// is distributed in its place and the contraction fused into its tiles;
/// without it the consumer is distributed on its own. A router contraction
/// is fused into its moe.select's tiles instead. A linalg op that makes the
/// contraction's rows (the rows gathered through the plan) is distributed
/// along its columns on its own, so that the column tiles, which each read
/// every row, do not each make it again.
static void distributeColumns(linalg::LinalgOp op, TilingAttr tiling,
                              bool fuseActivation) {
  Value result = op->getResult(0);
  if (llvm::any_of(result.getUsers(),
                   [](Operation *user) { return isa<SelectOp>(user); }))
    return;
  MLIRContext *context = op->getContext();
  auto rows = op.getDpsInputOperand(0)->get().getDefiningOp<linalg::LinalgOp>();
  if (rows && !rows->hasAttr(kLoweringConfigAttrName) &&
      !linalg::isaContractionOpInterface(rows) && rows.getNumLoops() >= 2) {
    int64_t columns = rows.getStaticLoopRanges()[1];
    if (!ShapedType::isDynamic(columns))
      rows->setAttr(
          kLoweringConfigAttrName,
          TilingAttr::get(context,
                          columnDistribution(rows.getNumLoops(), 1, columns, 1),
                          {}, {}, {}, {}, {}));
  }

  int64_t n = contractionDims(op)->n.back();
  int64_t columns = op.getStaticLoopRanges()[n];
  int64_t perTile = tiling.getRegisters()[n];
  // The position of the column loop among the result's dimensions.
  AffineMap resultMap = op.getIndexingMapMatchingResult(cast<OpResult>(result));
  int64_t column = *resultMap.getResultPosition(
      getAffineDimExpr(n, op->getContext()));

  Operation *user = result.hasOneUse() ? *result.getUsers().begin() : nullptr;
  if (user && isElementwise(user) && !user->hasAttr(kLoweringConfigAttrName))
    user->setAttr(kLoweringConfigAttrName,
                  TilingAttr::get(context,
                                  columnDistribution(resultMap.getNumResults(),
                                                     column, columns, perTile),
                                  {}, {}, {}, {}, {}));
  if (user && isElementwise(user) && fuseActivation)
    return;
  op->setAttr(
      kLoweringConfigAttrName,
      TilingAttr::get(context,
                      columnDistribution(op.getNumLoops(), n, columns, perTile),
                      {}, tiling.getCache(), tiling.getRegisters(),
                      tiling.getReduction(), tiling.getInterchange()));
}

namespace {
struct MoEConfigureCPUPass
    : moe::impl::MoEConfigureCPUBase<MoEConfigureCPUPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (tokenTile < 0) {
      module.emitError() << "moe-configure-cpu: 'token-tile' ("
                         << tokenTile.getValue() << ") must not be negative";
      return signalPassFailure();
    }
    if (failed(checkVectorLanes(module, getArgument(), vectorLanes)))
      return signalPassFailure();
    Attribute attr = module->getAttr(kTargetAttrName);
    if (!attr)
      return;
    auto target = dyn_cast<CPUTargetAttr>(attr);
    if (!target) {
      module.emitError() << "moe-configure-cpu: '" << kTargetAttrName
                         << "' must be a #moe.cpu_target, got " << attr;
      return signalPassFailure();
    }
    int64_t lanes = targetLanes(target, vectorLanes);
    module.walk([&](Operation *op) {
      if (op->hasAttr(kLoweringConfigAttrName))
        return;
      if (auto select = dyn_cast<SelectOp>(op)) {
        if (select.isTokenwise() && tokenTile > 0)
          op->setAttr(kLoweringConfigAttrName,
                      TilingAttr::get(op->getContext(), {tokenTile}, {}, {}, {},
                                      {}, {}));
        return;
      }
      auto linalgOp = dyn_cast<linalg::LinalgOp>(op);
      if (!linalgOp || !isContraction(linalgOp))
        return;
      if (TilingAttr tiling = chooseContractionTiling(linalgOp, lanes)) {
        op->setAttr(kLoweringConfigAttrName, tiling);
        distributeColumns(linalgOp, tiling, fuseActivation);
        if (!tiling.getCache().empty())
          vectorizeWidenedWeights(linalgOp, lanes);
      }
    });
  }
};
} // namespace

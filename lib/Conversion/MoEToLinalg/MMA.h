//===- MMA.h - Grouped projections on tensor cores --------------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// A grouped projection whose multiplicands are 16-bit floats runs on the
// tensor cores of sm_80 and newer as `mma.sync.m16n8k16` with f32 sums: each
// warp of a block computes a tile of 16-row by 8-column fragments.
// `moe-configure-gpu` picks such kernels and marks them, `moe-tile-gpu`
// tiles them into warps instead of threads, and `moe-gpu-mma-sync` writes
// the warps' lane code after bufferization.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOLINALG_MMA_H
#define MOE_LIB_CONVERSION_MOETOLINALG_MMA_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"

#include "llvm/ADT/SmallBitVector.h"

namespace mlir::moe {

/// Marks a kernel's ops that run on tensor cores (the projections and the
/// op that ends the kernel): the instruction's `[M, N, K]`.
inline constexpr llvm::StringLiteral kMMAAttrName = "moe.mma_sync";
inline constexpr int64_t kMMAShape[3] = {16, 8, 16};

/// Threads a warp.
inline constexpr int64_t kWarpLanes = 32;

/// Marks the `scf.forall` over `(warp, lane)` that `moe-gpu-mma-sync`
/// makes, its last loop the 32 lanes of a warp.
inline constexpr llvm::StringLiteral kWarpLanesAttrName = "moe.warp_lanes";

/// A grouped projection `out(t, i, n) += lhs(t, i, k) · rhs(t, n, k)` over
/// loops `(t, i, n, k)`, its body's multiplicands f32: `rhs` a 16-bit float
/// widened, `lhs` the same or f32 (rounded to it on tensor cores).
struct MMAContraction {
  Value lhs, rhs;
  FloatType element;
};

/// The loops `value` of `op`'s body depends on: those of the operands it
/// reads and the `linalg.index`es it uses. Sets `readsOutput` when it reads
/// the op's output.
inline llvm::SmallBitVector loopsOf(linalg::LinalgOp op, Value value,
                                    bool &readsOutput) {
  llvm::SmallBitVector loops(op.getNumLoops());
  Block *body = op.getBlock();
  SmallVector<Value> work = {value};
  llvm::DenseSet<Value> seen;
  while (!work.empty()) {
    Value next = work.pop_back_val();
    if (!seen.insert(next).second)
      continue;
    if (auto arg = dyn_cast<BlockArgument>(next)) {
      if (arg.getOwner() != body)
        continue;
      OpOperand *operand = op.getMatchingOpOperand(arg);
      if (op.isDpsInit(operand))
        readsOutput = true;
      for (AffineExpr expr : op.getMatchingIndexingMap(operand).getResults())
        for (unsigned dim = 0; dim < op.getNumLoops(); ++dim)
          if (expr.isFunctionOfDim(dim))
            loops.set(dim);
      continue;
    }
    Operation *def = next.getDefiningOp();
    if (!def || def->getBlock() != body)
      continue;
    if (auto index = dyn_cast<linalg::IndexOp>(def))
      loops.set(index.getDim());
    llvm::append_range(work, def->getOperands());
  }
  return loops;
}

/// `op` as a tensor-core projection, if it is one: loops `(t, i, n, k)`
/// (`k` the reduction, static and not empty), static `n` a multiple of 8,
/// its output at `(t, i, n)`, a body `out + lhs ·
/// rhs` whose multiplicands read no output and span `(t, i, k)` and
/// `(t, n, k)`.
inline std::optional<MMAContraction> matchMMAContraction(linalg::LinalgOp op) {
  if (op.getNumLoops() != 4 || op.getNumDpsInits() != 1 ||
      op.getNumReductionLoops() != 1 ||
      op.getIteratorTypesArray()[3] != utils::IteratorType::reduction)
    return std::nullopt;
  SmallVector<int64_t> ranges = op.getStaticLoopRanges();
  AffineMap outputMap = op.getMatchingIndexingMap(op.getDpsInitOperand(0));
  if (ShapedType::isDynamic(ranges[2]) || ranges[2] % kMMAShape[1] != 0 ||
      ShapedType::isDynamic(ranges[3]) || ranges[3] == 0 ||
      outputMap != AffineMap::getMultiDimIdentityMap(4, op.getContext())
                       .getMajorSubMap(3))
    return std::nullopt;
  auto yield = cast<linalg::YieldOp>(op.getBlock()->getTerminator());
  auto add = yield.getValues().size() == 1
                 ? yield.getValues()[0].getDefiningOp<arith::AddFOp>()
                 : arith::AddFOp();
  if (!add)
    return std::nullopt;
  Value output = op.getMatchingBlockArgument(op.getDpsInitOperand(0));
  Value product = add.getLhs() == output ? add.getRhs() : add.getLhs();
  auto mul = product.getDefiningOp<arith::MulFOp>();
  if (!mul || (add.getLhs() != output && add.getRhs() != output))
    return std::nullopt;
  auto widened = [](Value value) -> FloatType {
    auto ext = value.getDefiningOp<arith::ExtFOp>();
    auto type = ext ? dyn_cast<FloatType>(ext.getIn().getType()) : FloatType();
    return type && (type.isBF16() || type.isF16()) ? type : FloatType();
  };
  for (auto [lhs, rhs] : {std::pair(mul.getLhs(), mul.getRhs()),
                          std::pair(mul.getRhs(), mul.getLhs())}) {
    bool readsOutput = false;
    llvm::SmallBitVector lhsLoops = loopsOf(op, lhs, readsOutput);
    llvm::SmallBitVector rhsLoops = loopsOf(op, rhs, readsOutput);
    if (readsOutput || lhsLoops.test(2) || rhsLoops.test(1) ||
        !lhs.getType().isF32())
      continue;
    FloatType element = widened(rhs);
    FloatType lhsElement = widened(lhs);
    if (!element || (lhsElement && lhsElement != element))
      continue;
    return MMAContraction{lhs, rhs, element};
  }
  return std::nullopt;
}

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOLINALG_MMA_H

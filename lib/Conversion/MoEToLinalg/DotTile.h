//===- DotTile.h - Register-tiled dot products in the vector dialect -*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// The expert projections multiply rows by rows: x_rows · W^T with W in
// nn.Linear layout, both contiguous along the reduction. A tile of M input
// rows and N weight rows keeps M·N vector accumulators in registers, loads
// each of the M + N rows once per step along k, and issues M·N fused
// multiply-adds; the lanes are summed once at the end.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOLINALG_DOTTILE_H
#define MOE_LIB_CONVERSION_MOETOLINALG_DOTTILE_H

#include "Emitter.h"

#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace mlir::moe {

/// One row operand: `buffer[prefix..., k - origin]` for k in [0, length)
/// (`origin` 0 where null); the last dimension of `buffer` is contiguous.
struct DotRow {
  Value buffer;
  SmallVector<Value> prefix;
  Value origin;
};

/// The indices of element `k` of `row`.
inline SmallVector<Value> rowIndices(Emitter &e, const DotRow &row, Value k) {
  SmallVector<Value> indices(row.prefix);
  indices.push_back(row.origin ? e.sub(k, row.origin) : k);
  return indices;
}

inline VectorType dotAccumulatorType(OpBuilder &b, int64_t lanes) {
  return VectorType::get({lanes}, b.getF32Type());
}

inline Value dotZero(Emitter &e, int64_t lanes) {
  OpBuilder &b = e.builder();
  return arith::ConstantOp::create(
      b, e.location(),
      DenseElementsAttr::get(dotAccumulatorType(b, lanes),
                             b.getF32FloatAttr(0)));
}

/// Adds `lhs[m][k] · rhs[n][k]` for k in [begin, end), whole steps of
/// `lanes`, to the f32 vector accumulators `init[m * rhs.size() + n]`.
inline SmallVector<Value> emitDotSteps(Emitter &e, ArrayRef<DotRow> lhs,
                                       ArrayRef<DotRow> rhs, Value begin,
                                       Value end, ValueRange init,
                                       int64_t lanes) {
  auto accumulatorType = dotAccumulatorType(e.builder(), lanes);
  auto loadRow = [&](Emitter &e, const DotRow &row, Value k) -> Value {
    Type element = cast<MemRefType>(row.buffer.getType()).getElementType();
    Value loaded = vector::LoadOp::create(
        e.builder(), e.location(), VectorType::get({lanes}, element),
        row.buffer, rowIndices(e, row, k));
    if (element.isF32())
      return loaded;
    return arith::ExtFOp::create(e.builder(), e.location(), accumulatorType,
                                 loaded);
  };
  return e.forEachCarryingStep(
      begin, end, e.index(lanes), init,
      [&](Emitter &e, Value k, ValueRange carried) -> SmallVector<Value> {
        SmallVector<Value> left, right, next;
        for (const DotRow &row : lhs)
          left.push_back(loadRow(e, row, k));
        for (const DotRow &row : rhs)
          right.push_back(loadRow(e, row, k));
        for (size_t m = 0; m < lhs.size(); ++m)
          for (size_t n = 0; n < rhs.size(); ++n)
            next.push_back(vector::FMAOp::create(
                e.builder(), e.location(), left[m], right[n],
                carried[m * rhs.size() + n]));
        return next;
      });
}

/// The sums of `accumulators`' lanes plus the scalar products for k in
/// [tailBegin, length), the part of the reduction too short for a step.
inline SmallVector<Value> emitDotSums(Emitter &e, ArrayRef<DotRow> lhs,
                                      ArrayRef<DotRow> rhs,
                                      ValueRange accumulators,
                                      Value tailBegin, Value length) {
  SmallVector<Value> sums;
  for (Value accumulator : accumulators)
    sums.push_back(vector::ReductionOp::create(
        e.builder(), e.location(), vector::CombiningKind::ADD, accumulator,
        arith::FastMathFlags::reassoc));
  return e.forEachCarrying(
      tailBegin, length, sums,
      [&](Emitter &e, Value k, ValueRange carried) -> SmallVector<Value> {
        SmallVector<Value> left, right, next;
        auto loadScalar = [&](const DotRow &row) {
          return e.toF32(e.load(row.buffer, rowIndices(e, row, k)));
        };
        for (const DotRow &row : lhs)
          left.push_back(loadScalar(row));
        for (const DotRow &row : rhs)
          right.push_back(loadScalar(row));
        for (size_t m = 0; m < lhs.size(); ++m)
          for (size_t n = 0; n < rhs.size(); ++n)
            next.push_back(e.add(carried[m * rhs.size() + n],
                                 e.mul(left[m], right[n])));
        return next;
      });
}

/// `sums[m * rhs.size() + n] = Σ_k lhs[m][k] · rhs[n][k]` in f32, for
/// k in [0, length): vector steps, then a scalar tail.
inline SmallVector<Value> emitDotTile(Emitter &e, ArrayRef<DotRow> lhs,
                                      ArrayRef<DotRow> rhs, int64_t length,
                                      int64_t lanes) {
  int64_t vectorLength = length / lanes * lanes;
  SmallVector<Value> init(lhs.size() * rhs.size(), dotZero(e, lanes));
  SmallVector<Value> accumulators =
      emitDotSteps(e, lhs, rhs, e.index(0), e.index(vectorLength), init, lanes);
  return emitDotSums(e, lhs, rhs, accumulators, e.index(vectorLength),
                     e.index(length));
}

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOLINALG_DOTTILE_H

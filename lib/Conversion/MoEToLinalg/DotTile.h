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

/// Lanes of one accumulator: 16 f32 fill a 512-bit register.
inline constexpr int64_t kDotLanes = 16;

/// One row operand: `buffer[prefix..., k]` for k in [0, length); the last
/// dimension of `buffer` is contiguous.
struct DotRow {
  Value buffer;
  SmallVector<Value> prefix;
};

/// `sums[m * rhs.size() + n] = Σ_k lhs[m][k] · rhs[n][k]` in f32, for
/// k in [0, length): a vector loop over whole steps of kDotLanes, then a
/// scalar tail.
inline SmallVector<Value> emitDotTile(Emitter &e, ArrayRef<DotRow> lhs,
                                      ArrayRef<DotRow> rhs, Value length) {
  OpBuilder &b = e.builder();
  Location loc = e.location();
  Type f32 = b.getF32Type();
  auto accumulatorType = VectorType::get({kDotLanes}, f32);
  auto loadRow = [&](Emitter &e, const DotRow &row, Value k) -> Value {
    Type element = cast<MemRefType>(row.buffer.getType()).getElementType();
    SmallVector<Value> indices(row.prefix);
    indices.push_back(k);
    Value loaded = vector::LoadOp::create(
        e.builder(), e.location(), VectorType::get({kDotLanes}, element),
        row.buffer, indices);
    if (element.isF32())
      return loaded;
    return arith::ExtFOp::create(e.builder(), e.location(), accumulatorType,
                                 loaded);
  };

  Value lanes = e.index(kDotLanes);
  Value vectorLength =
      e.mul(arith::DivUIOp::create(b, loc, length, lanes), lanes);
  Value zero = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(accumulatorType, b.getF32FloatAttr(0)));
  SmallVector<Value> init(lhs.size() * rhs.size(), zero);
  SmallVector<Value> accumulators = e.forEachCarryingStep(
      e.index(0), vectorLength, lanes, init,
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

  SmallVector<Value> sums;
  for (Value accumulator : accumulators)
    sums.push_back(vector::ReductionOp::create(
        b, loc, vector::CombiningKind::ADD, accumulator,
        arith::FastMathFlags::reassoc));
  return e.forEachCarrying(
      vectorLength, length, sums,
      [&](Emitter &e, Value k, ValueRange carried) -> SmallVector<Value> {
        SmallVector<Value> left, right, next;
        auto loadScalar = [&](const DotRow &row) {
          SmallVector<Value> indices(row.prefix);
          indices.push_back(k);
          return e.toF32(e.load(row.buffer, indices));
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

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOLINALG_DOTTILE_H

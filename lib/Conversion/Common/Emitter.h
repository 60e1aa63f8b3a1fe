//===- Emitter.h - Scalar loops and constants for the lowerings -*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// The routing lowerings are index-heavy loop nests (selection, counting
// sort, capacity grants). This wraps the builder calls they repeat so that
// each algorithm reads close to its pseudo-code.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_COMMON_EMITTER_H
#define MOE_LIB_CONVERSION_COMMON_EMITTER_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {

inline constexpr utils::IteratorType kParallel = utils::IteratorType::parallel;
inline constexpr utils::IteratorType kReduction =
    utils::IteratorType::reduction;

/// Runs lowering patterns to a fixed point under `root`: each moe lowering
/// pass is its patterns and nothing else.
template <typename... Patterns, typename... Args>
LogicalResult applyLowering(Operation *root, Args &&...args) {
  RewritePatternSet patterns(root->getContext());
  patterns.add<Patterns...>(root->getContext(), std::forward<Args>(args)...);
  return applyPatternsGreedily(root, std::move(patterns));
}

/// Emits scalar code at one location through a builder it does not own.
class Emitter {
public:
  Emitter(OpBuilder &builder, Location loc) : b(builder), loc(loc) {}

  OpBuilder &builder() { return b; }
  Location location() { return loc; }

  Value index(int64_t value) {
    return arith::ConstantIndexOp::create(b, loc, value);
  }
  Value i32(int64_t value) {
    return arith::ConstantIntOp::create(b, loc, b.getI32Type(), value);
  }
  Value i64(int64_t value) {
    return arith::ConstantIntOp::create(b, loc, b.getI64Type(), value);
  }
  Value f32(double value) {
    return arith::ConstantFloatOp::create(b, loc, b.getF32Type(),
                                          APFloat(static_cast<float>(value)));
  }
  Value f64(double value) {
    return arith::ConstantFloatOp::create(b, loc, b.getF64Type(),
                                          APFloat(value));
  }
  Value boolean(bool value) {
    return arith::ConstantIntOp::create(b, loc, b.getI1Type(), value);
  }

  Value load(Value memref, ValueRange indices) {
    return memref::LoadOp::create(b, loc, memref, indices);
  }
  void store(Value value, Value memref, ValueRange indices) {
    memref::StoreOp::create(b, loc, value, memref, indices);
  }

  /// Widens bf16/f16 data to the f32 the math runs in.
  Value toF32(Value value) {
    if (value.getType().isF32())
      return value;
    return arith::ExtFOp::create(b, loc, b.getF32Type(), value);
  }
  Value toIndex(Value value) {
    return arith::IndexCastOp::create(b, loc, b.getIndexType(), value);
  }
  Value toI32(Value value) {
    return arith::IndexCastOp::create(b, loc, b.getI32Type(), value);
  }
  Value toI64(Value value) {
    return arith::IndexCastOp::create(b, loc, b.getI64Type(), value);
  }

  Value add(Value lhs, Value rhs) {
    if (isa<FloatType>(lhs.getType()))
      return arith::AddFOp::create(b, loc, lhs, rhs);
    return arith::AddIOp::create(b, loc, lhs, rhs);
  }
  Value mul(Value lhs, Value rhs) {
    if (isa<FloatType>(lhs.getType()))
      return arith::MulFOp::create(b, loc, lhs, rhs);
    return arith::MulIOp::create(b, loc, lhs, rhs);
  }
  /// `1 / (1 + exp(-v))`.
  Value sigmoid(Value v) {
    Value negated = arith::NegFOp::create(b, loc, v);
    Value denominator = add(f32(1), math::ExpOp::create(b, loc, negated));
    return arith::DivFOp::create(b, loc, f32(1), denominator);
  }
  /// `acc + f32(lhs) * f32(rhs)`: the body of every contraction.
  Value multiplyAdd(Value acc, Value lhs, Value rhs) {
    return add(acc, mul(toF32(lhs), toF32(rhs)));
  }
  Value select(Value cond, Value lhs, Value rhs) {
    return arith::SelectOp::create(b, loc, cond, lhs, rhs);
  }
  Value cmpi(arith::CmpIPredicate predicate, Value lhs, Value rhs) {
    return arith::CmpIOp::create(b, loc, predicate, lhs, rhs);
  }
  Value cmpf(arith::CmpFPredicate predicate, Value lhs, Value rhs) {
    return arith::CmpFOp::create(b, loc, predicate, lhs, rhs);
  }
  Value andi(Value lhs, Value rhs) {
    return arith::AndIOp::create(b, loc, lhs, rhs);
  }
  Value ori(Value lhs, Value rhs) {
    return arith::OrIOp::create(b, loc, lhs, rhs);
  }

  /// `for (i = lower; i < upper; ++i) body(i)`.
  void forEach(Value lower, Value upper,
               function_ref<void(Emitter &, Value)> body) {
    forEachStep(lower, upper, index(1), body);
  }
  /// `for (i = lower; i < upper; i += step) body(i)`.
  void forEachStep(Value lower, Value upper, Value step,
                   function_ref<void(Emitter &, Value)> body) {
    scf::ForOp::create(b, loc, lower, upper, step, ValueRange{},
                       [&](OpBuilder &nested, Location nestedLoc, Value iv,
                           ValueRange) {
                         Emitter inner(nested, nestedLoc);
                         body(inner, iv);
                         scf::YieldOp::create(nested, nestedLoc);
                       });
  }

  /// A loop carrying `init` through `body`, which returns the next values.
  SmallVector<Value>
  forEachCarrying(Value lower, Value upper, ValueRange init,
                  function_ref<SmallVector<Value>(Emitter &, Value, ValueRange)>
                      body) {
    return forEachCarryingStep(lower, upper, index(1), init, body);
  }
  SmallVector<Value> forEachCarryingStep(
      Value lower, Value upper, Value step, ValueRange init,
      function_ref<SmallVector<Value>(Emitter &, Value, ValueRange)> body) {
    auto loop = scf::ForOp::create(
        b, loc, lower, upper, step, init,
        [&](OpBuilder &nested, Location nestedLoc, Value iv,
            ValueRange carried) {
          Emitter inner(nested, nestedLoc);
          scf::YieldOp::create(nested, nestedLoc, body(inner, iv, carried));
        });
    return SmallVector<Value>(loop.getResults());
  }

  void ifThen(Value cond, function_ref<void(Emitter &)> thenBody) {
    scf::IfOp::create(b, loc, cond, [&](OpBuilder &nested, Location l) {
      Emitter inner(nested, l);
      thenBody(inner);
      scf::YieldOp::create(nested, l);
    });
  }
  void ifThenElse(Value cond, function_ref<void(Emitter &)> thenBody,
                  function_ref<void(Emitter &)> elseBody) {
    scf::IfOp::create(
        b, loc, cond,
        [&](OpBuilder &nested, Location l) {
          Emitter inner(nested, l);
          thenBody(inner);
          scf::YieldOp::create(nested, l);
        },
        [&](OpBuilder &nested, Location l) {
          Emitter inner(nested, l);
          elseBody(inner);
          scf::YieldOp::create(nested, l);
        });
  }
  /// `cond ? thenValue() : elseValue()` as an `scf.if`, of the type of
  /// what the branches yield.
  Value ifElse(Value cond, function_ref<Value(Emitter &)> thenValue,
               function_ref<Value(Emitter &)> elseValue) {
    auto branch = scf::IfOp::create(
        b, loc, cond,
        [&](OpBuilder &nested, Location l) {
          Emitter inner(nested, l);
          scf::YieldOp::create(nested, l, thenValue(inner));
        },
        [&](OpBuilder &nested, Location l) {
          Emitter inner(nested, l);
          scf::YieldOp::create(nested, l, elseValue(inner));
        });
    return branch.getResult(0);
  }

  /// A buffer for a result tensor of `type`; `dynamicSizes` gives its
  /// dynamic dimensions in order.
  Value alloc(RankedTensorType type, ValueRange dynamicSizes) {
    return memref::AllocOp::create(
        b, loc, MemRefType::get(type.getShape(), type.getElementType()),
        dynamicSizes);
  }
  /// Scratch space for one iteration of a loop nest, on the stack.
  Value stackAlloc(ArrayRef<int64_t> shape, Type elementType) {
    return memref::AllocaOp::create(b, loc,
                                    MemRefType::get(shape, elementType));
  }
  /// Reads a tensor operand through its buffer.
  Value readBuffer(Value tensor) {
    auto type = cast<RankedTensorType>(tensor.getType());
    return bufferization::ToBufferOp::create(
        b, loc, MemRefType::get(type.getShape(), type.getElementType()),
        tensor, /*read_only=*/true);
  }
  /// readBuffer of an optional operand; null when it is absent.
  Value readOptionalBuffer(Value tensor) {
    return tensor ? readBuffer(tensor) : Value();
  }
  /// Hands a buffer this lowering filled back to tensor code.
  Value asTensor(Value buffer, Type tensorType) {
    return bufferization::ToTensorOp::create(b, loc, tensorType, buffer,
                                             b.getUnitAttr(), b.getUnitAttr());
  }

  /// `(d0, ..., d{numDims-1}) -> (d{dims[0]}, d{dims[1]}, ...)`; a
  /// negative entry stands for the constant 0 (a unit dimension).
  AffineMap map(unsigned numDims, ArrayRef<int> dims) {
    SmallVector<AffineExpr> exprs;
    for (int dim : dims)
      exprs.push_back(dim < 0 ? b.getAffineConstantExpr(0)
                              : b.getAffineDimExpr(dim));
    return AffineMap::get(numDims, 0, exprs, b.getContext());
  }
  /// `value` as `type` (a tensor type that differs at most in which sizes
  /// are static).
  Value castTo(Value value, Type type) {
    if (value.getType() == type)
      return value;
    return tensor::CastOp::create(b, loc, type, value);
  }
  Value emptyTensor(ArrayRef<int64_t> shape, Type elementType,
                    ValueRange dynamicSizes) {
    return tensor::EmptyOp::create(b, loc, shape, elementType, dynamicSizes);
  }
  Value fill(Value value, Value tensor) {
    return linalg::FillOp::create(b, loc, ValueRange{value}, ValueRange{tensor})
        .getResult(0);
  }
  Value loopIndex(unsigned dim) { return linalg::IndexOp::create(b, loc, dim); }
  /// A `linalg.generic` with one tensor result written into `output`;
  /// `body` maps the block arguments (inputs, then the output) to the value
  /// it yields.
  Value generic(ValueRange inputs, Value output, ArrayRef<AffineMap> maps,
                ArrayRef<utils::IteratorType> iterators,
                function_ref<Value(Emitter &, ValueRange)> body) {
    auto op = linalg::GenericOp::create(
        b, loc, TypeRange{output.getType()}, inputs, ValueRange{output}, maps,
        iterators, [&](OpBuilder &nested, Location nestedLoc, ValueRange args) {
          Emitter inner(nested, nestedLoc);
          linalg::YieldOp::create(nested, nestedLoc, body(inner, args));
        });
    return op.getResult(0);
  }

  /// A `linalg.generic` on buffers: it writes `output` in place.
  void genericInPlace(ValueRange inputs, Value output, ArrayRef<AffineMap> maps,
                      ArrayRef<utils::IteratorType> iterators,
                      function_ref<Value(Emitter &, ValueRange)> body) {
    linalg::GenericOp::create(
        b, loc, inputs, ValueRange{output}, maps, iterators,
        [&](OpBuilder &nested, Location nestedLoc, ValueRange args) {
          Emitter inner(nested, nestedLoc);
          linalg::YieldOp::create(nested, nestedLoc, body(inner, args));
        });
  }
  /// `source[offsets...][sizes...]` with unit strides.
  Value subview(Value source, ArrayRef<OpFoldResult> offsets,
                ArrayRef<OpFoldResult> sizes) {
    SmallVector<OpFoldResult> strides(offsets.size(), b.getIndexAttr(1));
    return memref::SubViewOp::create(b, loc, source, offsets, sizes, strides);
  }
  /// Offsets, sizes and strides of the slice at `index` of dimension 0 of
  /// `type` (whose other dimensions must be static).
  struct Slice {
    SmallVector<OpFoldResult> offsets, sizes, strides;
  };
  Slice sliceBounds(ShapedType type, Value index) {
    Slice slice{SmallVector<OpFoldResult>(type.getRank(), b.getIndexAttr(0)),
                {b.getIndexAttr(1)},
                SmallVector<OpFoldResult>(type.getRank(), b.getIndexAttr(1))};
    slice.offsets[0] = index;
    for (int64_t size : type.getShape().drop_front())
      slice.sizes.push_back(b.getIndexAttr(size));
    return slice;
  }
  /// `source[index]`: the slice at `index` of dimension 0, one rank less
  /// (the other dimensions must be static), of a memref or a tensor.
  Value sliceAt(Value source, Value index) {
    auto type = cast<ShapedType>(source.getType());
    Slice slice = sliceBounds(type, index);
    if (isa<RankedTensorType>(type))
      return tensor::ExtractSliceOp::create(
          b, loc,
          RankedTensorType::get(type.getShape().drop_front(),
                                type.getElementType()),
          source, slice.offsets, slice.sizes, slice.strides);
    MemRefType sliceType = memref::SubViewOp::inferRankReducedResultType(
        type.getShape().drop_front(), cast<MemRefType>(type), slice.offsets,
        slice.sizes, slice.strides);
    return memref::SubViewOp::create(b, loc, sliceType, source, slice.offsets,
                                     slice.sizes, slice.strides);
  }
  /// `dest` with `slice` in place of `dest[index]`, the tensor slice that
  /// sliceAt reads.
  Value insertAt(Value slice, Value dest, Value index) {
    Slice bounds = sliceBounds(cast<ShapedType>(dest.getType()), index);
    return tensor::InsertSliceOp::create(b, loc, slice, dest, bounds.offsets,
                                         bounds.sizes, bounds.strides);
  }
  Value minIndex(Value lhs, Value rhs) {
    return arith::MinUIOp::create(b, loc, lhs, rhs);
  }
  Value divIndex(Value lhs, Value rhs) {
    return arith::DivUIOp::create(b, loc, lhs, rhs);
  }
  Value remIndex(Value lhs, Value rhs) {
    return arith::RemUIOp::create(b, loc, lhs, rhs);
  }
  Value ceilDivIndex(Value lhs, Value rhs) {
    return arith::CeilDivUIOp::create(b, loc, lhs, rhs);
  }
  Value sub(Value lhs, Value rhs) {
    if (isa<FloatType>(lhs.getType()))
      return arith::SubFOp::create(b, loc, lhs, rhs);
    return arith::SubIOp::create(b, loc, lhs, rhs);
  }

  /// An f32 `[T, H]` accumulator rounded once to `resultType`'s element
  /// type (to nearest even); f32 passes through.
  Value roundTo(Value accumulator, RankedTensorType resultType,
                ValueRange dynamicSizes) {
    Type element = resultType.getElementType();
    if (element.isF32())
      return accumulator;
    Value output = emptyTensor(resultType.getShape(), element, dynamicSizes);
    return generic(accumulator, output, {map(2, {0, 1}), map(2, {0, 1})},
                   {kParallel, kParallel},
                   [&](Emitter &e, ValueRange args) -> Value {
                     return arith::TruncFOp::create(e.builder(), e.location(),
                                                    element, args[0]);
                   });
  }

  /// The index in `[0, count)` whose `valueAt` is largest among those for
  /// which `isCandidate` holds: the lower index wins ties, a NaN never beats
  /// a number, and -1 means no candidate.
  Value argMax(Value count, function_ref<Value(Emitter &, Value)> valueAt,
               function_ref<Value(Emitter &, Value)> isCandidate) {
    SmallVector<Value> best = forEachCarrying(
        index(0), count, ValueRange{index(-1), f32(0)},
        [&](Emitter &e, Value i, ValueRange carried) -> SmallVector<Value> {
          Value bestIndex = carried[0], bestValue = carried[1];
          Value value = valueAt(e, i);
          Value noneYet =
              e.cmpi(arith::CmpIPredicate::slt, bestIndex, e.index(0));
          Value greater = e.cmpf(arith::CmpFPredicate::OGT, value, bestValue);
          Value replacesNaN =
              e.andi(e.cmpf(arith::CmpFPredicate::UNO, bestValue, bestValue),
                     e.cmpf(arith::CmpFPredicate::ORD, value, value));
          Value better = e.andi(isCandidate(e, i),
                                e.ori(noneYet, e.ori(greater, replacesNaN)));
          return {e.select(better, i, bestIndex),
                  e.select(better, value, bestValue)};
        });
    return best[0];
  }

private:
  OpBuilder &b;
  Location loc;
};

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_COMMON_EMITTER_H

//===- Dequantize.h - Quantized weights inside the contractions -*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// A projection weight that a moe.dequantize stands for is never stored
// dequantized: each contraction reads its integers and scales and
// dequantizes in its body (the row-wise forms), or through a producer that
// the tiling fuses into each cache block (the packed form). The reduction
// over K runs as loops over groups and within them, (kg, kb) for 8 bits and
// (kg, h, kb) for 4 bits, where h picks a byte's nibble: every operand is
// then read through a projected permutation, which the vectorizer takes.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOLINALG_DEQUANTIZE_H
#define MOE_LIB_CONVERSION_MOETOLINALG_DEQUANTIZE_H

#include "../Common/Emitter.h"

#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>
#include <numeric>

namespace mlir::moe {

/// The quantized elements, scales and zero points of a `[N, K]`
/// projection weight.
struct QuantizedWeight {
  DequantizeOp op;
  Value packed, scales, zeros, perm;
  WeightFormat format;
  int64_t groupSize;

  /// `weight`'s moe.dequantize operands, or nothing for a dense weight.
  static std::optional<QuantizedWeight> of(Value weight) {
    auto op = weight ? weight.getDefiningOp<DequantizeOp>() : DequantizeOp();
    if (!op)
      return std::nullopt;
    return QuantizedWeight{op,
                           op.getPacked(),
                           op.getScales(),
                           op.getZeros(),
                           op.getPerm(),
                           op.getFormat(),
                           static_cast<int64_t>(op.getGroupSize())};
  }

  /// Bits an element takes: 4 or 8.
  int64_t bits() const { return DequantizeOp(op).getBits(); }

  int64_t rows() const { return shape()[0]; }
  int64_t depth() const { return shape()[1] * 8 / bits(); }
  int64_t groups() const { return depth() / groupSize; }
  /// The loops within a group: (kb) for 8 bits, (h, kb) for 4.
  SmallVector<int64_t> inGroup() const {
    if (bits() == 8)
      return {groupSize};
    return {2, groupSize / 2};
  }
  /// The reduction loops, (kg, kb) or (kg, h, kb).
  unsigned depthLoops() const { return 1 + inGroup().size(); }

private:
  ArrayRef<int64_t> shape() const {
    return cast<RankedTensorType>(packed.getType()).getShape();
  }
};

/// `stacked[index]` for a weight stacked along dimension 0: a dense weight
/// sliced, or the moe.dequantize of its integers', scales' and zero
/// points' slices.
inline Value sliceWeight(Emitter &e, Value stacked, Value index) {
  if (!stacked)
    return Value();
  std::optional<QuantizedWeight> q = QuantizedWeight::of(stacked);
  if (!q)
    return e.sliceAt(stacked, index);
  auto type = cast<RankedTensorType>(stacked.getType());
  return DequantizeOp::create(
      e.builder(), e.location(),
      RankedTensorType::get(type.getShape().drop_front(),
                            type.getElementType()),
      e.sliceAt(q->packed, index), e.sliceAt(q->scales, index),
      q->zeros ? e.sliceAt(q->zeros, index) : Value(),
      q->perm ? e.sliceAt(q->perm, index) : Value(), q->format, q->groupSize);
}

/// `value` (`[..., K, ...]`, K at `dim`) read in the weight's column order,
/// `result[..., k, ...] = value[..., perm[k], ...]`, or `value` itself for
/// a weight in input order. A copy of the rows, not of the weight: every
/// weight element is still read once and in order.
inline Value permuteColumns(Emitter &e, Value value, unsigned dim,
                            const QuantizedWeight &q) {
  if (!q.perm)
    return value;
  OpBuilder &b = e.builder();
  auto type = cast<RankedTensorType>(value.getType());
  unsigned rank = type.getRank();
  Value empty = tensor::EmptyOp::create(
      b, e.location(), tensor::getMixedSizes(b, e.location(), value),
      type.getElementType());
  return e.generic(
      {q.perm}, empty,
      {e.map(rank, {int(dim)}),
       AffineMap::getMultiDimIdentityMap(rank, b.getContext())},
      SmallVector<utils::IteratorType>(rank, kParallel),
      [&](Emitter &e, ValueRange args) -> Value {
        SmallVector<Value> indices;
        for (unsigned d = 0; d < rank; ++d)
          indices.push_back(d == dim ? e.toIndex(args[0]) : e.loopIndex(d));
        return tensor::ExtractOp::create(e.builder(), e.location(), value,
                                         indices);
      });
}

/// `value` (`[..., K, ...]`, K at `dim`) with K split as the reduction
/// loops split it: `[..., K / g, g, ...]` or `[..., K / g, 2, g / 2, ...]`.
inline Value splitDepth(Emitter &e, Value value, unsigned dim,
                        const QuantizedWeight &q) {
  OpBuilder &b = e.builder();
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<int64_t> inner = {q.groups()};
  llvm::append_range(inner, q.inGroup());
  SmallVector<int64_t> shape;
  SmallVector<OpFoldResult> sizes;
  SmallVector<ReassociationIndices> groups;
  for (unsigned d = 0; d < type.getRank(); ++d) {
    ArrayRef<int64_t> split =
        d == dim ? ArrayRef<int64_t>(inner) : type.getShape().slice(d, 1);
    ReassociationIndices group;
    for (int64_t size : split) {
      group.push_back(shape.size());
      shape.push_back(size);
      sizes.push_back(ShapedType::isDynamic(size)
                          ? tensor::getMixedSize(b, e.location(), value, d)
                          : OpFoldResult(b.getIndexAttr(size)));
    }
    groups.push_back(group);
  }
  return tensor::ExpandShapeOp::create(
      b, e.location(), RankedTensorType::get(shape, type.getElementType()),
      value, groups, sizes);
}

/// The integers viewed by group, `[N, K / g, bytes of a group]`, and the
/// scales and zero points, `[N, K / g]`, with N split into
/// `[streams, N / streams]` when `streams` > 1.
inline SmallVector<Value> groupedOperands(Emitter &e, const QuantizedWeight &q,
                                          int64_t streams) {
  OpBuilder &b = e.builder();
  int64_t bytes = q.groupSize * q.bits() / 8;
  SmallVector<int64_t> rows = {q.rows()};
  SmallVector<ReassociationIndices> rowGroups = {{0}};
  if (streams > 1) {
    rows = {streams, q.rows() / streams};
    rowGroups = {{0, 1}};
  }
  auto expand = [&](Value value, ArrayRef<int64_t> tail,
                    ReassociationIndices last) {
    SmallVector<int64_t> shape(rows);
    llvm::append_range(shape, tail);
    SmallVector<ReassociationIndices> groups(rowGroups);
    groups.push_back(last);
    auto type = cast<RankedTensorType>(value.getType());
    return tensor::ExpandShapeOp::create(
        b, e.location(), RankedTensorType::get(shape, type.getElementType()),
        value, groups);
  };
  unsigned r = rows.size();
  SmallVector<Value> operands = {
      expand(q.packed, {q.groups(), bytes}, {r, r + 1})};
  for (Value value : {q.scales, q.zeros})
    if (value)
      operands.push_back(streams > 1 ? expand(value, {q.groups()}, {r})
                                     : value);
  return operands;
}

/// The shifts of a byte's two nibbles, which a 4-bit contraction reads
/// along its h loop: an operand rather than the loop's index, which the
/// split-reduction tiling does not offset. int4 shifts a nibble down to
/// bits 3-0 of an i32 (0, 4); f4e2m1 up to bits 15-12 of an i16 (12, 8).
inline Value nibbleShifts(Emitter &e, const QuantizedWeight &q) {
  OpBuilder &b = e.builder();
  bool up = q.format == WeightFormat::f4e2m1;
  auto type = RankedTensorType::get({2}, b.getIntegerType(up ? 16 : 32));
  static constexpr int32_t down32[] = {0, 4};
  static constexpr int16_t up16[] = {12, 8};
  return arith::ConstantOp::create(
      b, e.location(), type,
      up ? DenseElementsAttr::get(type, ArrayRef<int16_t>(up16))
         : DenseElementsAttr::get(type, ArrayRef<int32_t>(down32)));
}

/// `bits` as the float it holds, in f32, times `scale` · 2^`exponent`: how a
/// small float's sign, exponent and mantissa, placed where f32 (`bits` i32)
/// or f16 (i16) keeps them, become its value. The power of two rebiases the
/// exponent. In f32's layout the small float's subnormals are f32
/// subnormals, which the multiply takes slowly; in f16's they are f16
/// subnormals, which the widening (vcvtph2ps on x86) makes exact f32
/// normals at the cost of one conversion: e2m1's one subnormal, 0.5, is an
/// eighth of its codes and takes f16's layout, e4m3's are rare in real
/// weights and take f32's. The scale and the power of two multiply first:
/// both are the group's; their product overflows for scales above
/// 2^(127 - exponent) (docs/QUANTIZATION.md), where multiplying each
/// element by the power of two first would cost a multiply an element.
inline Value floatFromBits(Emitter &e, Value bits, int exponent, Value scale) {
  OpBuilder &b = e.builder();
  Location loc = e.location();
  Value value;
  if (bits.getType().isInteger(16)) {
    Value half = arith::BitcastOp::create(b, loc, b.getF16Type(), bits);
    value = arith::ExtFOp::create(b, loc, b.getF32Type(), half);
  } else {
    value = arith::BitcastOp::create(b, loc, b.getF32Type(), bits);
  }
  return e.mul(value, e.mul(scale, e.f32(std::ldexp(1.0f, exponent))));
}

/// The dequantized weight element in f32 from its block arguments: the
/// byte, the scale, the zero point if any and, for 4 bits, the nibble's
/// shift. A byte is widened first, since x86 has no 8-bit vector shifts:
/// to a 32-bit lane, which widens to f32 anyway, or for e2m1, which takes
/// f16's layout, to a 16-bit lane.
inline Value dequantizeElement(Emitter &e, const QuantizedWeight &q,
                               ValueRange args) {
  OpBuilder &b = e.builder();
  Location loc = e.location();
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  auto i32Constant = [&](uint32_t value) {
    return arith::ConstantIntOp::create(b, loc, i32,
                                        static_cast<int32_t>(value));
  };
  auto i16Constant = [&](uint16_t value) {
    return arith::ConstantIntOp::create(b, loc, b.getI16Type(),
                                        static_cast<int16_t>(value));
  };
  Value byte = args[0], scale = args[1];
  switch (q.format) {
  case WeightFormat::int8:
    return e.mul(arith::SIToFPOp::create(b, loc, f32, byte), scale);
  case WeightFormat::int4: {
    Value nibble = arith::AndIOp::create(
        b, loc,
        arith::ShRUIOp::create(
            b, loc, arith::ExtUIOp::create(b, loc, i32, byte), args.back()),
        i32Constant(15));
    Value zero = q.zeros ? Value(arith::UIToFPOp::create(b, loc, f32, args[2]))
                         : e.f32(8);
    // (q - z) · s as q · s - z · s: a fused multiply-add an element, z · s
    // the group's.
    return arith::SubFOp::create(
        b, loc, e.mul(arith::SIToFPOp::create(b, loc, f32, nibble), scale),
        e.mul(zero, scale));
  }
  case WeightFormat::f8e4m3: {
    // s eeee mmm, sign-extended and shifted left by 20: the exponent and
    // mantissa land in bits 26-20 and the sign in 31 (and 30-27, cleared).
    Value bits = arith::AndIOp::create(
        b, loc,
        arith::ShLIOp::create(b, loc, arith::ExtSIOp::create(b, loc, i32, byte),
                              i32Constant(20)),
        i32Constant(0x87F00000u));
    return floatFromBits(e, bits, 127 - 7, scale);
  }
  case WeightFormat::f4e2m1: {
    // s ee m shifted up to bits 15-12, then arithmetically down by 3: the
    // exponent and mantissa land in bits 11-9 and the sign in 15 (and
    // 14-12, cleared with the other nibble's bits). The e8m0 scale's byte
    // is f32's exponent field.
    Type i16 = b.getI16Type();
    Value top = arith::ShLIOp::create(
        b, loc, arith::ExtUIOp::create(b, loc, i16, byte), args.back());
    Value bits = arith::AndIOp::create(
        b, loc, arith::ShRSIOp::create(b, loc, top, i16Constant(3)),
        i16Constant(0x8E00u));
    Value exponent = arith::ShLIOp::create(
        b, loc, arith::ExtUIOp::create(b, loc, i32, scale), i32Constant(23));
    return floatFromBits(e, bits, 15 - 1,
                         arith::BitcastOp::create(b, loc, f32, exponent));
  }
  }
  llvm_unreachable("unknown weight format");
}

/// `init[rows..., columns...] += Σ_k lhs[rows..., perm[k]] · w[n, k]` (perm
/// the identity without one) with `w` dequantized in the body: `lhs` is `[M,
/// K]` and `init` `[M, N]`, or
/// `[M, S, N / S]` with `streams` S > 1, whose weight rows are read as
/// S streams (buildStreamedContraction). Loops: (m, n, kg, [h,] kb) or
/// (m, s, j, kg, [h,] kb).
inline Value buildDequantizingContraction(Emitter &e, Value lhs,
                                          const QuantizedWeight &q, Value init,
                                          int64_t streams) {
  unsigned columns = streams > 1 ? 2 : 1;
  unsigned depth = q.depthLoops();
  unsigned loops = 1 + columns + depth;
  SmallVector<int> lhsDims = {0}, byteDims, groupDims, outDims = {0};
  for (unsigned c = 0; c < columns; ++c) {
    byteDims.push_back(1 + c);
    groupDims.push_back(1 + c);
    outDims.push_back(1 + c);
  }
  for (unsigned d = 0; d < depth; ++d)
    lhsDims.push_back(1 + columns + d);
  groupDims.push_back(1 + columns);
  byteDims.push_back(1 + columns);
  byteDims.push_back(loops - 1);
  SmallVector<Value> inputs = {
      splitDepth(e, permuteColumns(e, lhs, 1, q), 1, q)};
  llvm::append_range(inputs, groupedOperands(e, q, streams));
  SmallVector<AffineMap> maps = {e.map(loops, lhsDims), e.map(loops, byteDims)};
  for (size_t i = 2; i < inputs.size(); ++i)
    maps.push_back(e.map(loops, groupDims));
  if (q.bits() == 4) {
    inputs.push_back(nibbleShifts(e, q));
    maps.push_back(e.map(loops, {int(1 + columns + 1)}));
  }
  maps.push_back(e.map(loops, outDims));
  SmallVector<utils::IteratorType> iterators(1 + columns, kParallel);
  iterators.append(depth, kReduction);
  return e.generic(
      inputs, init, maps, iterators, [&](Emitter &e, ValueRange args) {
        Value weight = dequantizeElement(e, q, args.drop_front().drop_back());
        return e.multiplyAdd(args.back(), args[0], weight);
      });
}

/// The weight dequantized in f32 by a `linalg.generic`, laid out as the
/// reduction loops split K: `[N, K / g, g]` or `[N, K / g, 2, g / 2]`.
/// The packed form's tiling fuses it into each cache block.
inline Value buildDequantized(Emitter &e, const QuantizedWeight &q) {
  unsigned loops = 1 + q.depthLoops();
  SmallVector<int64_t> shape = {q.rows(), q.groups()};
  llvm::append_range(shape, q.inGroup());
  Value empty = e.emptyTensor(shape, e.builder().getF32Type(), {});
  SmallVector<Value> inputs = groupedOperands(e, q, 1);
  SmallVector<AffineMap> maps = {e.map(loops, {0, 1, int(loops) - 1})};
  for (size_t i = 1; i < inputs.size(); ++i)
    maps.push_back(e.map(loops, {0, 1}));
  if (q.bits() == 4) {
    inputs.push_back(nibbleShifts(e, q));
    maps.push_back(e.map(loops, {2}));
  }
  SmallVector<int> identity(loops);
  std::iota(identity.begin(), identity.end(), 0);
  maps.push_back(e.map(loops, identity));
  return e.generic(inputs, empty, maps,
                   SmallVector<utils::IteratorType>(loops, kParallel),
                   [&](Emitter &e, ValueRange args) {
                     return dequantizeElement(e, q, args.drop_back());
                   });
}

/// `init[g, n, l] += Σ_k packed[g, perm[k], l] · w[n, k]` over rows packed in
/// groups of L (buildPackedContraction) with `w` dequantized by
/// buildDequantized. Loops: (n, g, kg, [h,] kb, l).
inline Value buildDequantizedPackedContraction(Emitter &e, Value packed,
                                               const QuantizedWeight &q,
                                               Value init) {
  unsigned depth = q.depthLoops();
  unsigned loops = 3 + depth;
  SmallVector<int> packedDims = {1}, weightDims = {0};
  for (unsigned d = 0; d < depth; ++d) {
    packedDims.push_back(2 + d);
    weightDims.push_back(2 + d);
  }
  packedDims.push_back(loops - 1);
  SmallVector<utils::IteratorType> iterators = {kParallel, kParallel};
  iterators.append(depth, kReduction);
  iterators.push_back(kParallel);
  return e.generic({splitDepth(e, permuteColumns(e, packed, 1, q), 1, q),
                    buildDequantized(e, q)},
                   init,
                   {e.map(loops, packedDims), e.map(loops, weightDims),
                    e.map(loops, {1, 0, int(loops) - 1})},
                   iterators, [](Emitter &e, ValueRange args) {
                     return e.multiplyAdd(args[2], args[0], args[1]);
                   });
}

/// The m, n and k loops of a contraction, read off its first two inputs
/// and its output, so that a dequantizing contraction's scales and zero
/// points do not count.
inline FailureOr<linalg::ContractionDimensions>
contractionDims(linalg::LinalgOp op) {
  if (op.getNumDpsInputs() < 2 || op.getNumDpsInits() != 1)
    return failure();
  return linalg::inferContractionDims(
      {op.getMatchingIndexingMap(op.getDpsInputOperand(0)),
       op.getMatchingIndexingMap(op.getDpsInputOperand(1)),
       op.getMatchingIndexingMap(op.getDpsInitOperand(0))});
}

/// Whether `op` is a contraction (ContractionOpInterface), or one that
/// buildDequantizingContraction built: more inputs, an m, n and k, and a
/// body that ends in `out + a · b`.
inline bool isContraction(linalg::LinalgOp op) {
  if (linalg::isaContractionOpInterface(op))
    return true;
  auto generic = dyn_cast<linalg::GenericOp>(op.getOperation());
  if (!generic || generic.getNumDpsInputs() < 3 || failed(contractionDims(op)))
    return false;
  auto yield = cast<linalg::YieldOp>(generic.getBody()->getTerminator());
  auto add = yield.getValues()[0].getDefiningOp<arith::AddFOp>();
  Value out = generic.getBody()->getArguments().back();
  return add && (add.getLhs() == out || add.getRhs() == out) &&
         (add.getLhs().getDefiningOp<arith::MulFOp>() ||
          add.getRhs().getDefiningOp<arith::MulFOp>());
}

/// Fails, on the op, if a moe.dequantize under `root` is left: no expert
/// op that `pass` decomposed read it, so it would be stored dequantized.
inline LogicalResult checkDequantizeConsumed(Operation *root, StringRef pass,
                                             StringRef reason) {
  WalkResult walk = root->walk([&](DequantizeOp op) {
    op.emitOpError() << "is left after " << pass << ": " << reason;
    return WalkResult::interrupt();
  });
  return failure(walk.wasInterrupted());
}

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOLINALG_DEQUANTIZE_H

//===- Contraction.h - The linalg stage's contractions ----------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOLINALG_CONTRACTION_H
#define MOE_LIB_CONVERSION_MOETOLINALG_CONTRACTION_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

namespace mlir::moe {

/// `init + lhs · rhsᵀ` as a `linalg.matmul`: `lhs` is `[M, K]`, `rhs`
/// `[N, K]` (a weight in its `nn.Linear` layout) and `init` `[M, N]` in
/// f32, which the products are widened to.
inline Value buildLinearContraction(OpBuilder &b, Location loc, Value lhs,
                                    Value rhs, Value init) {
  MLIRContext *context = b.getContext();
  AffineExpr m, n, k;
  bindDims(context, m, n, k);
  ArrayAttr maps = b.getAffineMapArrayAttr(
      {AffineMap::get(3, 0, {m, k}, context),
       AffineMap::get(3, 0, {n, k}, context),
       AffineMap::get(3, 0, {m, n}, context)});
  return linalg::MatmulOp::create(b, loc, TypeRange{init.getType()},
                                  ValueRange{lhs, rhs}, ValueRange{init},
                                  {b.getNamedAttr("indexing_maps", maps)})
      .getResult(0);
}

/// `init[out] += Σ lhs[lhsMap] · rhs[rhsMap]` over `iterators` as a
/// `linalg.generic`, the operands widened to f32 in its body.
inline Value buildMulAddContraction(OpBuilder &b, Location loc, Value lhs,
                                   Value rhs, Value init,
                                   ArrayRef<AffineMap> maps,
                                   ArrayRef<utils::IteratorType> iterators) {
  Type f32 = b.getF32Type();
  auto widen = [&](OpBuilder &b, Location loc, Value v) -> Value {
    return v.getType() == f32 ? v : arith::ExtFOp::create(b, loc, f32, v);
  };
  return linalg::GenericOp::create(
             b, loc, TypeRange{init.getType()}, ValueRange{lhs, rhs},
             ValueRange{init}, maps, iterators,
             [&](OpBuilder &b, Location loc, ValueRange args) {
               Value product = arith::MulFOp::create(
                   b, loc, widen(b, loc, args[0]), widen(b, loc, args[1]));
               linalg::YieldOp::create(
                   b, loc, arith::AddFOp::create(b, loc, args[2], product)
                               .getResult());
             })
      .getResult(0);
}

/// The streams a row-wise contraction's weight rows are read in.
inline constexpr int64_t kWeightStreams = 4;

/// `init + lhs · rhsᵀ` with the rows of `rhs` (`[N, K]`) taken as
/// kWeightStreams streams of N / kWeightStreams consecutive rows:
/// `init[m, s, j] += Σ_k lhs[m, k] · rhs[s · N / S + j, k]`, with `init`
/// `[M, S, N / S]` in f32, laid out as `[M, N]`. A register tile of one row
/// of each stream reads S rows N / S apart, and consecutive tiles read on
/// along the same S sequential streams. Its loops are (m, s, j, k).
inline Value buildStreamedContraction(OpBuilder &b, Location loc, Value lhs,
                                      Value rhs, Value init) {
  MLIRContext *context = b.getContext();
  auto rhsType = cast<RankedTensorType>(rhs.getType());
  int64_t rows = rhsType.getDimSize(0), depth = rhsType.getDimSize(1);
  Value streams = tensor::ExpandShapeOp::create(
      b, loc,
      RankedTensorType::get({kWeightStreams, rows / kWeightStreams, depth},
                            rhsType.getElementType()),
      rhs, ArrayRef<ReassociationIndices>{{0, 1}, {2}});
  AffineExpr m, s, j, k;
  bindDims(context, m, s, j, k);
  return buildMulAddContraction(
      b, loc, lhs, streams, init,
      {AffineMap::get(4, 0, {m, k}, context),
       AffineMap::get(4, 0, {s, j, k}, context),
       AffineMap::get(4, 0, {m, s, j}, context)},
      {utils::IteratorType::parallel, utils::IteratorType::parallel,
       utils::IteratorType::parallel, utils::IteratorType::reduction});
}

/// `init + packed · weightᵀ` over rows packed in groups of `L`:
/// `init[g, n, l] += Σ_k packed[g, k, l] · weight[n, k]`, with `packed`
/// `[G, K, L]`, `weight` `[N, K]` and `init` `[G, N, L]`, all f32. Its
/// loops are (n, g, k, l): a vectorized tile's elementwise ops then unroll
/// column by column, so that one broadcast weight at a time is live.
inline Value buildPackedContraction(OpBuilder &b, Location loc, Value packed,
                                    Value weight, Value init) {
  MLIRContext *context = b.getContext();
  AffineExpr n, g, k, l;
  bindDims(context, n, g, k, l);
  return buildMulAddContraction(
      b, loc, packed, weight, init,
      {AffineMap::get(4, 0, {g, k, l}, context),
       AffineMap::get(4, 0, {n, k}, context),
       AffineMap::get(4, 0, {g, n, l}, context)},
      {utils::IteratorType::parallel, utils::IteratorType::parallel,
       utils::IteratorType::reduction, utils::IteratorType::parallel});
}

/// `value` widened to f32 elementwise by a `linalg.generic`, or `value`
/// itself when it is f32 already.
inline Value buildWidened(OpBuilder &b, Location loc, Value value) {
  auto type = cast<RankedTensorType>(value.getType());
  Type f32 = b.getF32Type();
  if (type.getElementType() == f32)
    return value;
  SmallVector<Value> dynamicSizes;
  for (int64_t dim = 0; dim < type.getRank(); ++dim)
    if (type.isDynamicDim(dim))
      dynamicSizes.push_back(tensor::DimOp::create(b, loc, value, dim));
  Value empty =
      tensor::EmptyOp::create(b, loc, type.getShape(), f32, dynamicSizes);
  AffineMap identity =
      AffineMap::getMultiDimIdentityMap(type.getRank(), b.getContext());
  return linalg::GenericOp::create(
             b, loc, TypeRange{empty.getType()}, ValueRange{value},
             ValueRange{empty}, ArrayRef<AffineMap>{identity, identity},
             SmallVector<utils::IteratorType>(type.getRank(),
                                              utils::IteratorType::parallel),
             [&](OpBuilder &b, Location loc, ValueRange args) {
               linalg::YieldOp::create(
                   b, loc, arith::ExtFOp::create(b, loc, f32, args[0])
                               .getResult());
             })
      .getResult(0);
}

/// The initial value of a contraction's f32 result `empty`: `bias` widened
/// to f32 and broadcast along the result dimensions `biasDims` (one per
/// dimension of `bias`), or zeros without a bias.
inline Value buildBiasInit(OpBuilder &b, Location loc, Value empty,
                           Value bias, ArrayRef<unsigned> biasDims) {
  if (!bias) {
    Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
    return linalg::FillOp::create(b, loc, ValueRange{zero}, ValueRange{empty})
        .getResult(0);
  }
  unsigned rank = cast<RankedTensorType>(empty.getType()).getRank();
  MLIRContext *context = b.getContext();
  AffineMap biasMap = AffineMap::getMultiDimMapWithTargets(rank, biasDims,
                                                           context);
  Type f32 = b.getF32Type();
  return linalg::GenericOp::create(
             b, loc, TypeRange{empty.getType()}, ValueRange{bias},
             ValueRange{empty},
             ArrayRef<AffineMap>{biasMap,
                                 AffineMap::getMultiDimIdentityMap(rank,
                                                                   context)},
             SmallVector<utils::IteratorType>(rank,
                                              utils::IteratorType::parallel),
             [&](OpBuilder &b, Location loc, ValueRange args) {
               Value widened = args[0];
               if (widened.getType() != f32)
                 widened = arith::ExtFOp::create(b, loc, f32, widened);
               linalg::YieldOp::create(b, loc, widened);
             })
      .getResult(0);
}

/// Every `linalg.pack` and `linalg.unpack` under `root` as a pad, a
/// reshape and a transpose (upstream's lowerPack and lowerUnPack), which
/// bufferize; a failure is reported on the op.
inline LogicalResult lowerRelayouts(RewriterBase &rewriter, Operation *root) {
  SmallVector<Operation *> relayouts;
  root->walk([&](Operation *op) {
    if (isa<linalg::PackOp, linalg::UnPackOp>(op))
      relayouts.push_back(op);
  });
  for (Operation *op : relayouts) {
    rewriter.setInsertionPoint(op);
    bool lowered =
        isa<linalg::PackOp>(op)
            ? succeeded(linalg::lowerPack(rewriter, cast<linalg::PackOp>(op)))
            : succeeded(
                  linalg::lowerUnPack(rewriter, cast<linalg::UnPackOp>(op)));
    if (!lowered)
      return op->emitOpError("cannot be lowered to a pad, a reshape and a "
                             "transpose");
  }
  return success();
}

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOLINALG_CONTRACTION_H

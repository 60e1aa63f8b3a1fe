//===- FFN.h - One expert's FFN as linalg contractions ----------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOLINALG_FFN_H
#define MOE_LIB_CONVERSION_MOETOLINALG_FFN_H

#include "../Common/Activation.h"
#include "../Common/Emitter.h"
#include "Contraction.h"
#include "Dequantize.h"
#include "Target.h"

#include <numeric>

namespace mlir::moe {

/// The fewest rows the packed form takes: packing pays from one vector of
/// rows on, two when the weights are bf16 or f16, whose widening once per
/// cache block one vector of rows does not repay. Quantized weights take
/// it from one vector on: the row-wise form dequantizes a weight again for
/// every two rows, which costs more than widening.
inline int64_t packedMinRows(Value weight, int64_t lanes) {
  bool widened = !getElementTypeOrSelf(weight.getType()).isF32() &&
                 !QuantizedWeight::of(weight);
  return widened ? 2 * lanes : lanes;
}

/// One expert's FFN over `numRows` rows (`rowsDim`, static or dynamic):
/// weights `[F, H]` (gate, up) and `[H, F]` (down) in `nn.Linear` layout,
/// gate and the biases (`[F]`, `[F]`, `[H]`) optional. The products are in
/// f32; each projection starts from its bias, broadcast, or from zeros.
struct FFNBuilder {
  Value gate, up, down;
  Value gateBias, upBias, downBias;
  FFNActivation activation;
  Value numRows;
  int64_t rowsDim;

  int64_t hidden() const {
    return cast<RankedTensorType>(up.getType()).getDimSize(1);
  }
  int64_t intermediate() const {
    return cast<RankedTensorType>(up.getType()).getDimSize(0);
  }
  ValueRange dynamicRows(int64_t dim) const {
    return ShapedType::isDynamic(dim) ? ValueRange(numRows) : ValueRange();
  }

  /// act(gate) · up, or act(up), elementwise over `projections` (up, then
  /// gate) of any shape.
  Value activate(Emitter &e, ArrayRef<Value> projections, Value init) const {
    bool gated = projections.size() == 2;
    unsigned rank = cast<RankedTensorType>(init.getType()).getRank();
    return e.generic(
        projections, init,
        SmallVector<AffineMap>(
            projections.size() + 1,
            AffineMap::getMultiDimIdentityMap(rank, e.builder().getContext())),
        SmallVector<utils::IteratorType>(rank, kParallel),
        [&](Emitter &e, ValueRange args) {
          return gated ? applyGatedActivation(e, activation, args[1], args[0])
                       : applyActivation(e, activation.kind, args[0]);
        });
  }

  /// `empty` filled with `bias` (viewed as `biasShape`) along the
  /// dimensions `columns` (buildBiasInit), or with zeros without a bias.
  static Value initial(Emitter &e, Value empty, Value bias,
                       ArrayRef<int64_t> biasShape,
                       ArrayRef<unsigned> columns) {
    auto biasType = bias ? cast<RankedTensorType>(bias.getType())
                         : RankedTensorType();
    if (biasType && biasType.getShape() != biasShape) {
      ReassociationIndices all(biasShape.size());
      std::iota(all.begin(), all.end(), 0);
      bias = tensor::ExpandShapeOp::create(
          e.builder(), e.location(),
          RankedTensorType::get(biasShape, biasType.getElementType()), bias,
          ArrayRef<ReassociationIndices>{all});
    }
    return buildBiasInit(e.builder(), e.location(), empty, bias, columns);
  }

  /// Rows as they are (`input`, `[rows, H]`): each projection a contraction
  /// whose weight rows are read as kWeightStreams streams
  /// (buildStreamedContraction), or a `linalg.matmul` where the streams do
  /// not divide them. Returns `[rows, H]`.
  Value rowwise(Emitter &e, Value input) const {
    OpBuilder &b = e.builder();
    Location loc = e.location();
    int64_t F = intermediate(), H = hidden();
    Type f32 = b.getF32Type();
    if (F % kWeightStreams != 0 || H % kWeightStreams != 0) {
      auto empty = [&](int64_t columns) {
        return e.emptyTensor({rowsDim, columns}, f32, dynamicRows(rowsDim));
      };
      auto init = [&](int64_t columns, Value bias) {
        return initial(e, empty(columns), bias, {columns}, {1});
      };
      auto linear = [&](Value lhs, Value weight, Value init) {
        if (std::optional<QuantizedWeight> q = QuantizedWeight::of(weight))
          return buildDequantizingContraction(e, lhs, *q, init, 1);
        return buildLinearContraction(b, loc, lhs, weight, init);
      };
      SmallVector<Value> projections = {linear(input, up, init(F, upBias))};
      if (gate)
        projections.push_back(linear(input, gate, init(F, gateBias)));
      Value activated = activate(e, projections, empty(F));
      return linear(activated, down, init(H, downBias));
    }
    auto empty = [&](int64_t columns) {
      return e.emptyTensor({rowsDim, kWeightStreams, columns / kWeightStreams},
                           f32, dynamicRows(rowsDim));
    };
    auto init = [&](int64_t columns, Value bias) {
      return initial(e, empty(columns), bias,
                     {kWeightStreams, columns / kWeightStreams}, {1, 2});
    };
    // `[T, S, N / S]` back to the `[T, N]` it lays out.
    auto rows = [&](Value streams) -> Value {
      return tensor::CollapseShapeOp::create(
          b, loc, streams, ArrayRef<ReassociationIndices>{{0}, {1, 2}});
    };
    auto streamed = [&](Value lhs, Value weight, Value init) {
      if (std::optional<QuantizedWeight> q = QuantizedWeight::of(weight))
        return buildDequantizingContraction(e, lhs, *q, init, kWeightStreams);
      return buildStreamedContraction(b, loc, lhs, weight, init);
    };
    SmallVector<Value> projections = {streamed(input, up, init(F, upBias))};
    if (gate)
      projections.push_back(streamed(input, gate, init(F, gateBias)));
    Value activated = rows(activate(e, projections, empty(F)));
    return rows(streamed(activated, down, init(H, downBias)));
  }

  /// The rows packed `lanes` at a time, `[⌈rows / lanes⌉, H, lanes]`
  /// (`linalg.pack` of `input` widened to f32, zero rows padding the last
  /// group).
  Value pack(Emitter &e, Value input, int64_t lanes) const {
    OpBuilder &b = e.builder();
    Value widened = buildWidened(b, e.location(), input);
    return linalg::PackOp::create(b, e.location(), widened,
                                  packedEmpty(e, hidden(), lanes),
                                  ArrayRef<int64_t>{0},
                                  ArrayRef<OpFoldResult>{b.getIndexAttr(lanes)},
                                  std::optional<Value>(e.f32(0)))
        .getResult();
  }

  /// An empty `[⌈rows / lanes⌉, columns, lanes]` f32 tensor.
  Value packedEmpty(Emitter &e, int64_t columns, int64_t lanes) const {
    int64_t groupsDim = ShapedType::isDynamic(rowsDim)
                            ? ShapedType::kDynamic
                            : llvm::divideCeil(rowsDim, lanes);
    Value groups = arith::CeilDivUIOp::create(e.builder(), e.location(),
                                              numRows, e.index(lanes));
    return e.emptyTensor({groupsDim, columns, lanes}, e.builder().getF32Type(),
                         ShapedType::isDynamic(groupsDim) ? ValueRange(groups)
                                                          : ValueRange());
  }

  /// Rows packed `lanes` at a time (`rows`, `[⌈rows / lanes⌉, H, lanes]`
  /// f32), so that a vector holds one element of `lanes` rows: the
  /// contractions are outer products of a broadcast weight and vectors of
  /// rows, and the activation's packed result is the down projection's
  /// packed input. bf16 and f16 weights are widened by a generic that the
  /// tiling fuses into each cache block, so that a weight is widened once a
  /// block of rows, not once per group of rows. Returns the packed
  /// `[⌈rows / lanes⌉, H, lanes]`.
  Value packed(Emitter &e, Value rows, int64_t lanes) const {
    OpBuilder &b = e.builder();
    Location loc = e.location();
    int64_t F = intermediate(), H = hidden();
    auto init = [&](int64_t columns, Value bias) {
      return initial(e, packedEmpty(e, columns, lanes), bias, {columns}, {1});
    };
    auto contract = [&](Value lhs, Value weight, Value init) {
      if (std::optional<QuantizedWeight> q = QuantizedWeight::of(weight))
        return buildDequantizedPackedContraction(e, lhs, *q, init);
      return buildPackedContraction(b, loc, lhs, buildWidened(b, loc, weight),
                                    init);
    };
    SmallVector<Value> projections = {contract(rows, up, init(F, upBias))};
    if (gate)
      projections.push_back(contract(rows, gate, init(F, gateBias)));
    Value activated = activate(e, projections, packedEmpty(e, F, lanes));
    return contract(activated, down, init(H, downBias));
  }

  /// The packed `[⌈rows / lanes⌉, H, lanes]` f32 rows back as `[rows, H]`.
  Value unpack(Emitter &e, Value packedRows, int64_t lanes) const {
    OpBuilder &b = e.builder();
    Value output = e.emptyTensor({rowsDim, hidden()}, b.getF32Type(),
                                 dynamicRows(rowsDim));
    return linalg::UnPackOp::create(
               b, e.location(), packedRows, output, ArrayRef<int64_t>{0},
               ArrayRef<OpFoldResult>{b.getIndexAttr(lanes)})
        .getResult();
  }
};

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOLINALG_FFN_H

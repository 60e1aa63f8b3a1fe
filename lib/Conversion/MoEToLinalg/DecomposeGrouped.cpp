//===- DecomposeGrouped.cpp - Experts as grouped contractions -------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "../Common/Activation.h"
#include "../Common/Emitter.h"
#include "../Common/Routing.h"
#include "Dequantize.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEDECOMPOSEGROUPED
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
/// The rows of a grouped FFN, `[tiles, rowTile]`: row `(t, i)` reads input
/// row `token[t, i]` (i64, -1 for none: it reads row 0 and its result is
/// zero) with the weights of expert `expert[t]` (index; null when the
/// weights are not stacked), its input scaled by `scale[t, i]` (f32) when
/// given.
struct GroupedRows {
  Value tiles;
  int64_t rowTile;
  Value token, expert, scale;
};

/// An FFN over grouped rows, each projection one `linalg.generic`
/// contraction over `(t, i, n, k)` whose body reads its input row and its
/// expert's weights with `tensor.extract`, so that no row and no expert's
/// weights are copied; the activation and the down projection's epilogue
/// are elementwise generics over `(t, i, n)`.
struct GroupedFFN {
  /// Its kernels are `<name>_up` and `<name>_down`.
  StringRef name;
  GroupedRows rows;
  Value input;
  Value gate, up, down;
  Value gateBias, upBias, downBias;
  FFNActivation activation;

  static int64_t columnsOf(Value weight) {
    auto type = cast<RankedTensorType>(weight.getType());
    return type.getDimSize(type.getRank() - 2);
  }

  Value empty(Emitter &e, ArrayRef<int64_t> inner, Type element) const {
    SmallVector<int64_t> shape = {ShapedType::kDynamic, rows.rowTile};
    llvm::append_range(shape, inner);
    return e.emptyTensor(shape, element, rows.tiles);
  }

  /// The row's input row, clamped to 0 where it has none.
  static Value tokenIndex(Emitter &e, Value token) {
    return e.toIndex(
        arith::MaxSIOp::create(e.builder(), e.location(), token, e.i64(0)));
  }

  /// `tensor[expert?, index...]` in f32.
  static Value elementAt(Emitter &e, Value tensor, Value expert,
                         ValueRange index) {
    SmallVector<Value> at;
    if (expert)
      at.push_back(expert);
    llvm::append_range(at, index);
    return e.toF32(
        tensor::ExtractOp::create(e.builder(), e.location(), tensor, at));
  }

  /// `out[t, i, n] = Σ_k lhs(t, i, k) · weight[expert[t], n, k]`, lhs the
  /// rows' input (`lhs` null) or `lhs` (`[tiles, rowTile, K]`). Where
  /// neither operand spans `k` (a gathered input row, stacked weights), an
  /// empty `[K]` tensor gives its extent, as a pooling's window does.
  Value project(Emitter &e, Value lhs, Value weight) const {
    auto weightType = cast<RankedTensorType>(weight.getType());
    int64_t depth = weightType.getDimSize(weightType.getRank() - 1);
    Type f32 = e.builder().getF32Type();
    SmallVector<Value> inputs = {lhs ? lhs : rows.token};
    SmallVector<AffineMap> maps = {lhs ? e.map(4, {0, 1, 3})
                                       : e.map(4, {0, 1})};
    inputs.push_back(rows.expert ? rows.expert : weight);
    maps.push_back(rows.expert ? e.map(4, {0}) : e.map(4, {2, 3}));
    if (!lhs && rows.expert) {
      inputs.push_back(e.emptyTensor({depth}, f32, {}));
      maps.push_back(e.map(4, {3}));
    }
    maps.push_back(e.map(4, {0, 1, 2}));
    Value init = e.fill(e.f32(0), empty(e, {columnsOf(weight)}, f32));
    return e.generic(
        inputs, init, maps, {kParallel, kParallel, kParallel, kReduction},
        [&](Emitter &e, ValueRange args) {
          Value k = e.loopIndex(3);
          Value x =
              lhs ? args[0]
                  : elementAt(e, input, Value(), {tokenIndex(e, args[0]), k});
          Value w = rows.expert
                        ? elementAt(e, weight, args[1], {e.loopIndex(2), k})
                        : args[1];
          return e.multiplyAdd(args.back(), x, w);
        });
  }

  /// The operands an epilogue over `(t, i, n)` reads besides its sums: the
  /// expert where a bias needs it, and more row values `extra` (`[tiles,
  /// rowTile]`). Returns the positions of the expert and of the first
  /// extra value among the inputs (-1: absent).
  std::pair<int, int> epilogueOperands(Emitter &e, bool biased,
                                       ArrayRef<Value> extra,
                                       SmallVector<Value> &inputs,
                                       SmallVector<AffineMap> &maps) const {
    int expert = -1, first = -1;
    if (biased && rows.expert) {
      expert = inputs.size();
      inputs.push_back(rows.expert);
      maps.push_back(e.map(3, {0}));
    }
    for (Value value : extra) {
      if (first < 0)
        first = inputs.size();
      inputs.push_back(value);
      maps.push_back(e.map(3, {0, 1}));
    }
    return {expert, first};
  }

  /// act(gate, up) over the projections' sums, each scaled by the row's
  /// scale and plus its bias first. Returns `[tiles, rowTile, F]` f32.
  Value activate(Emitter &e, Value upSum, Value gateSum) const {
    SmallVector<Value> inputs = {upSum};
    if (gateSum)
      inputs.push_back(gateSum);
    SmallVector<AffineMap> maps(inputs.size(), e.map(3, {0, 1, 2}));
    SmallVector<Value> extra;
    if (rows.scale)
      extra.push_back(rows.scale);
    std::pair<int, int> at =
        epilogueOperands(e, upBias || gateBias, extra, inputs, maps);
    int expertAt = at.first, scaleAt = at.second;
    maps.push_back(e.map(3, {0, 1, 2}));
    Type f32 = e.builder().getF32Type();
    return e.generic(
        inputs, empty(e, {columnsOf(up)}, f32), maps,
        {kParallel, kParallel, kParallel}, [&](Emitter &e, ValueRange args) {
          Value expert = expertAt >= 0 ? args[expertAt] : Value();
          auto projection = [&](Value sum, Value bias) {
            if (scaleAt >= 0)
              sum = e.mul(sum, args[scaleAt]);
            return bias ? e.add(sum,
                                elementAt(e, bias, expert, {e.loopIndex(2)}))
                        : sum;
          };
          Value upValue = projection(args[0], upBias);
          return gateSum ? applyGatedActivation(e, activation,
                                                projection(args[1], gateBias),
                                                upValue)
                         : applyActivation(e, activation.kind, upValue);
        });
  }

  /// The down projection's sums plus its bias, times sigmoid(`logit`) when
  /// given, zero for a row without input. Returns `[tiles, rowTile, H]`.
  Value finish(Emitter &e, Value downSum, Value logit) const {
    SmallVector<Value> inputs = {downSum};
    SmallVector<AffineMap> maps = {e.map(3, {0, 1, 2})};
    SmallVector<Value> extra = {rows.token};
    if (logit)
      extra.push_back(logit);
    std::pair<int, int> at =
        epilogueOperands(e, downBias != nullptr, extra, inputs, maps);
    int expertAt = at.first, tokenAt = at.second;
    maps.push_back(e.map(3, {0, 1, 2}));
    Type f32 = e.builder().getF32Type();
    return e.generic(
        inputs, empty(e, {columnsOf(down)}, f32), maps,
        {kParallel, kParallel, kParallel}, [&](Emitter &e, ValueRange args) {
          Value value = args[0];
          if (downBias)
            value = e.add(value, elementAt(e, downBias, args[expertAt],
                                           {e.loopIndex(2)}));
          if (logit)
            value = e.mul(value, e.sigmoid(args[tokenAt + 1]));
          Value real =
              e.cmpi(arith::CmpIPredicate::sge, args[tokenAt], e.i64(0));
          return e.select(real, value, e.f32(0));
        });
  }

  /// The whole FFN, `[tiles · rowTile, H]` f32, with an optional logit per
  /// row that scales the result.
  Value build(Emitter &e, Value logit = Value()) const {
    Value upSum = project(e, Value(), up);
    Value gateSum = gate ? project(e, Value(), gate) : Value();
    Value hidden = activate(e, upSum, gateSum);
    Value rowsOut = finish(e, project(e, hidden, down), logit);
    OpBuilder &b = e.builder();
    hidden.getDefiningOp()->setAttr(kKernelNameAttrName,
                                    b.getStringAttr(name + "_up"));
    rowsOut.getDefiningOp()->setAttr(kKernelNameAttrName,
                                     b.getStringAttr(name + "_down"));
    return tensor::CollapseShapeOp::create(
        e.builder(), e.location(), rowsOut,
        ArrayRef<ReassociationIndices>{{0, 1}, {2}});
  }
};

/// A `[tiles, rowTile]` generic over `(t, i)` of `element` type, reading
/// `inputs` through `maps`.
Value rowGeneric(Emitter &e, const GroupedRows &rows, Type element,
                 ValueRange inputs, ArrayRef<AffineMap> maps,
                 function_ref<Value(Emitter &, ValueRange)> body) {
  SmallVector<AffineMap> all(maps);
  all.push_back(e.map(2, {0, 1}));
  return e.generic(
      inputs,
      e.emptyTensor({ShapedType::kDynamic, rows.rowTile}, element, rows.tiles),
      all, {kParallel, kParallel}, body);
}

/// Casts `value` to `type` where only static sizes differ.
/// moe.expert over the plan's rows, whose segments the plan pads to whole
/// row tiles: a tile's expert is the number of segments that end at or
/// before its first row.
struct DecomposeExpert : OpRewritePattern<ExpertOp> {
  DecomposeExpert(MLIRContext *context, int64_t rowTile)
      : OpRewritePattern(context), rowTile(rowTile) {}

  LogicalResult matchAndRewrite(ExpertOp op,
                                PatternRewriter &rewriter) const override {
    Emitter e(rewriter, op.getLoc());
    Type i64 = rewriter.getI64Type();
    // The plan pads every segment to whole row tiles of its own row_tile,
    // which must be the tiles', and its rows are a whole number of tiles.
    if (auto dispatch = op.getSlots().getDefiningOp<DispatchOp>();
        dispatch && dispatch.getRowTile() != rowTile)
      return rewriter.notifyMatchFailure(op, "the plan's row tile differs");
    auto planType = RankedTensorType::get({ShapedType::kDynamic}, i64);
    Value plan = e.castTo(op.getSlots(), planType);
    Value planRows = tensor::DimOp::create(rewriter, op.getLoc(), plan, 0);
    GroupedRows rows{
        e.divIndex(planRows, e.index(rowTile)), rowTile, {}, {}, {}};
    Value slots = tensor::ExpandShapeOp::create(
        rewriter, op.getLoc(),
        RankedTensorType::get({ShapedType::kDynamic, rowTile}, i64), plan,
        ArrayRef<ReassociationIndices>{{0, 1}},
        ArrayRef<OpFoldResult>{rows.tiles, rewriter.getIndexAttr(rowTile)});
    Value perToken = e.i64(op.getSlotsPerToken());
    rows.token = rowGeneric(e, rows, i64, slots, {e.map(2, {0, 1})},
                            [&](Emitter &e, ValueRange args) {
                              Value real = e.cmpi(arith::CmpIPredicate::sge,
                                                  args[0], e.i64(0));
                              Value token = arith::DivSIOp::create(
                                  e.builder(), e.location(), args[0], perToken);
                              return e.select(real, token, e.i64(-1));
                            });
    if (Value weights = op.getInputWeights())
      rows.scale =
          rowGeneric(e, rows, rewriter.getF32Type(), slots, {e.map(2, {0, 1})},
                     [&](Emitter &e, ValueRange args) {
                       Value real =
                           e.cmpi(arith::CmpIPredicate::sge, args[0], e.i64(0));
                       auto [token, slot] =
                           planSlotOf(e, args[0], op.getSlotsPerToken());
                       Value weight = tensor::ExtractOp::create(
                           e.builder(), e.location(), weights,
                           ValueRange{token, slot});
                       return e.select(real, weight, e.f32(0));
                     });

    int64_t numExperts =
        cast<RankedTensorType>(op.getUpProj().getType()).getDimSize(0);
    rows.expert =
        e.fill(e.index(0), e.emptyTensor({ShapedType::kDynamic},
                                         rewriter.getIndexType(), rows.tiles));
    if (numExperts > 1) {
      Value ends = tensor::ExtractSliceOp::create(
          rewriter, op.getLoc(), op.getOffsets(),
          ArrayRef<OpFoldResult>{rewriter.getIndexAttr(1)},
          ArrayRef<OpFoldResult>{rewriter.getIndexAttr(numExperts - 1)},
          ArrayRef<OpFoldResult>{rewriter.getIndexAttr(1)});
      rows.expert = e.generic(
          ends, rows.expert, {e.map(2, {1}), e.map(2, {0})},
          {kParallel, kReduction}, [&](Emitter &e, ValueRange args) {
            Value firstRow = e.mul(e.loopIndex(0), e.index(rowTile));
            Value ended =
                e.cmpi(arith::CmpIPredicate::ule, e.toIndex(args[0]), firstRow);
            return e.add(args[1], e.select(ended, e.index(1), e.index(0)));
          });
    }

    GroupedFFN ffn{"expert",         rows,           op.getInput(),
                   op.getGateProj(), op.getUpProj(), op.getDownProj(),
                   op.getGateBias(), op.getUpBias(), op.getDownBias(),
                   activationOf(op)};
    rewriter.replaceOp(op, e.castTo(ffn.build(e), op.getOutput().getType()));
    return success();
  }

  int64_t rowTile;
};

/// moe.shared_expert over the tokens in whole row tiles, the rows past
/// the last token reading none.
struct DecomposeSharedExpert : OpRewritePattern<SharedExpertOp> {
  DecomposeSharedExpert(MLIRContext *context, int64_t rowTile)
      : OpRewritePattern(context), rowTile(rowTile) {}

  LogicalResult matchAndRewrite(SharedExpertOp op,
                                PatternRewriter &rewriter) const override {
    Emitter e(rewriter, op.getLoc());
    Type i64 = rewriter.getI64Type();
    Value numTokens =
        tensor::DimOp::create(rewriter, op.getLoc(), op.getInput(), 0);
    GroupedRows rows{
        e.ceilDivIndex(numTokens, e.index(rowTile)), rowTile, {}, {}, {}};
    rows.token = rowGeneric(e, rows, i64, {}, {}, [&](Emitter &e, ValueRange) {
      Value row =
          e.add(e.mul(e.loopIndex(0), e.index(rowTile)), e.loopIndex(1));
      Value real = e.cmpi(arith::CmpIPredicate::ult, row, numTokens);
      return e.select(real, e.toI64(row), e.i64(-1));
    });
    GroupedFFN ffn{"shared",         rows,           op.getInput(),
                   op.getGateProj(), op.getUpProj(), op.getDownProj(),
                   Value(),          Value(),        Value(),
                   activationOf(op)};

    // sigmoid(x_t · expert_gate) scales the rows, the dot product in f32.
    Value logit;
    if (Value expertGate = op.getExpertGate()) {
      Value init =
          e.fill(e.f32(0), e.emptyTensor({ShapedType::kDynamic, rowTile},
                                         rewriter.getF32Type(), rows.tiles));
      logit = e.generic(
          {rows.token, expertGate}, init,
          {e.map(3, {0, 1}), e.map(3, {2}), e.map(3, {0, 1})},
          {kParallel, kParallel, kReduction}, [&](Emitter &e, ValueRange args) {
            Value x = GroupedFFN::elementAt(
                e, op.getInput(), Value(),
                {GroupedFFN::tokenIndex(e, args[0]), e.loopIndex(2)});
            return e.multiplyAdd(args[2], x, args[1]);
          });
    }
    Value output = ffn.build(e, logit);
    auto resultType = cast<RankedTensorType>(op.getOutput().getType());
    SmallVector<OpFoldResult> offsets(2, rewriter.getIndexAttr(0));
    SmallVector<OpFoldResult> sizes = {
        numTokens, rewriter.getIndexAttr(resultType.getDimSize(1))};
    SmallVector<OpFoldResult> strides(2, rewriter.getIndexAttr(1));
    output = tensor::ExtractSliceOp::create(rewriter, op.getLoc(), output,
                                            offsets, sizes, strides);
    rewriter.replaceOp(op, e.castTo(output, resultType));
    return success();
  }

  int64_t rowTile;
};

struct MoEDecomposeGroupedPass
    : moe::impl::MoEDecomposeGroupedBase<MoEDecomposeGroupedPass> {
  using Base::Base;

  void runOnOperation() override {
    if (rowTile < 1) {
      getOperation()->emitError() << "moe-decompose-grouped: 'row-tile' ("
                                  << rowTile.getValue() << ") must be positive";
      return signalPassFailure();
    }
    WalkResult planTiles = getOperation()->walk([&](DispatchOp op) {
      if (op.getRowTile() == rowTile)
        return WalkResult::advance();
      op.emitOpError("row_tile (")
          << op.getRowTile() << ") must be the grouped form's row tile ("
          << rowTile.getValue() << "): run moe-expand with the same row-tile";
      return WalkResult::interrupt();
    });
    if (planTiles.wasInterrupted() ||
        failed(checkDequantizeConsumed(getOperation(), getArgument(),
                                       "the grouped form takes no quantized "
                                       "weights yet")))
      return signalPassFailure();
    RewritePatternSet patterns(&getContext());
    populateDecomposeGroupedPatterns(patterns, rowTile);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

void moe::populateDecomposeGroupedPatterns(RewritePatternSet &patterns,
                                           int64_t rowTile) {
  patterns.add<DecomposeExpert, DecomposeSharedExpert>(patterns.getContext(),
                                                       rowTile);
}

//===- DecomposeExperts.cpp - The routed experts as linalg ops ------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "../Common/Routing.h"
#include "Combine.h"
#include "FFN.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEDECOMPOSEEXPERTS
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
/// Reads row `r` of a segment's FFN output as `[H]`.
using RowOf = function_ref<Value(Emitter &, Value)>;
/// Receives the value carried from expert to expert and an expert's FFN
/// output over its segment `[start, start + count)`, by row (`rowOf`) or
/// whole (`rows`, `[count, H]`, which unpacks the packed form); returns the
/// value carried on.
using SegmentEpilogue =
    function_ref<Value(Emitter &, Value carried, Value start, Value count,
                       RowOf rowOf, function_ref<Value(Emitter &)> rows)>;

/// The routed experts of a `moe.expert`, one plan segment at a time: each
/// segment's rows are gathered through the plan, and its FFN built by
/// FFNBuilder in the row-wise or the packed form.
struct ExpertSegments {
  ExpertOp op;
  bool fuseGather;
  int64_t lanes;

  int64_t hidden() {
    return cast<RankedTensorType>(op.getUpProj().getType()).getDimSize(2);
  }

  /// The token and the slot within it that plan row `row` serves; a
  /// padding row (-1) computes on slot 0 of token 0, and its output is
  /// zeroed or skipped.
  std::pair<Value, Value> slotOf(Emitter &e, Value row) {
    Value slot = tensor::ExtractOp::create(e.builder(), e.location(),
                                           op.getSlots(), ValueRange{row});
    return planSlotOf(e, slot, op.getSlotsPerToken());
  }

  /// Element `h` of plan row `row`'s input in f32, scaled by its routing
  /// weight with `input_weights`.
  Value inputAt(Emitter &e, Value row, Value h) {
    auto [token, slot] = slotOf(e, row);
    Value value = e.toF32(tensor::ExtractOp::create(
        e.builder(), e.location(), op.getInput(), ValueRange{token, h}));
    if (Value weights = op.getInputWeights())
      value = e.mul(value, tensor::ExtractOp::create(e.builder(), e.location(),
                                                     weights,
                                                     ValueRange{token, slot}));
    return value;
  }

  /// The segment's input rows, `[count, H]` f32.
  Value gatherRows(Emitter &e, Value start, Value count) {
    Value empty = e.emptyTensor({ShapedType::kDynamic, hidden()},
                                e.builder().getF32Type(), count);
    return e.generic({}, empty, {e.map(2, {0, 1})}, {kParallel, kParallel},
                     [&](Emitter &e, ValueRange) {
                       return inputAt(e, e.add(start, e.loopIndex(0)),
                                      e.loopIndex(1));
                     });
  }

  /// The segment's input rows packed as FFNBuilder::packed reads them,
  /// `[⌈count / lanes⌉, H, lanes]` f32, read through the plan; zero rows
  /// pad the last group.
  Value gatherPacked(Emitter &e, const FFNBuilder &ffn, Value start,
                     Value count) {
    Value empty = ffn.packedEmpty(e, hidden(), lanes);
    return e.generic(
        {}, empty, {e.map(3, {0, 1, 2})}, {kParallel, kParallel, kParallel},
        [&](Emitter &e, ValueRange) {
          Value row =
              e.add(e.mul(e.loopIndex(0), e.index(lanes)), e.loopIndex(2));
          Value real = e.cmpi(arith::CmpIPredicate::ult, row, count);
          Value value = inputAt(
              e, e.add(start, e.select(real, row, e.index(0))), e.loopIndex(1));
          return e.select(real, value, e.f32(0));
        });
  }

  /// Row `row` of the packed `[⌈rows / lanes⌉, H, lanes]` rows: `[1, H, 1]`
  /// at `(row / lanes, 0, row % lanes)`, as `[H]`.
  Value packedRow(Emitter &e, Value packed, Value row) {
    OpBuilder &b = e.builder();
    Value lanesValue = e.index(lanes);
    SmallVector<OpFoldResult> offsets = {e.divIndex(row, lanesValue),
                                         b.getIndexAttr(0),
                                         e.remIndex(row, lanesValue)};
    SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1),
                                       b.getIndexAttr(hidden()),
                                       b.getIndexAttr(1)};
    SmallVector<OpFoldResult> strides(3, b.getIndexAttr(1));
    return tensor::ExtractSliceOp::create(
        b, e.location(), RankedTensorType::get({hidden()}, b.getF32Type()),
        packed, offsets, sizes, strides);
  }

  /// Every expert with rows in turn, carrying `init`: the segment's FFN in
  /// the row-wise form below packedMinRows rows, packed otherwise, handed
  /// to `epilogue`.
  Value build(Emitter &e, Value init, SegmentEpilogue epilogue) {
    int64_t numExperts =
        cast<RankedTensorType>(op.getUpProj().getType()).getDimSize(0);
    int64_t minRows = packedMinRows(op.getUpProj(), lanes);
    auto segment = [&](Emitter &e, Value expert,
                       ValueRange carried) -> SmallVector<Value> {
      auto offsetAt = [&](Value i) {
        return e.toIndex(tensor::ExtractOp::create(
            e.builder(), e.location(), op.getOffsets(), ValueRange{i}));
      };
      Value start = offsetAt(expert);
      Value count = e.sub(offsetAt(e.add(expert, e.index(1))), start);
      auto sliceOf = [&](Value stacked) {
        return sliceWeight(e, stacked, expert);
      };
      FFNBuilder ffn{sliceOf(op.getGateProj()), sliceOf(op.getUpProj()),
                     sliceOf(op.getDownProj()), sliceOf(op.getGateBias()),
                     sliceOf(op.getUpBias()),   sliceOf(op.getDownBias()),
                     activationOf(op),          count,
                     ShapedType::kDynamic};
      auto rowwise = [&](Emitter &e) -> Value {
        Value rows = ffn.rowwise(e, gatherRows(e, start, count));
        return epilogue(
            e, carried[0], start, count,
            [&](Emitter &e, Value r) { return e.sliceAt(rows, r); },
            [&](Emitter &) { return rows; });
      };
      auto packed = [&](Emitter &e) -> Value {
        Value input = fuseGather
                          ? gatherPacked(e, ffn, start, count)
                          : ffn.pack(e, gatherRows(e, start, count), lanes);
        Value rows = ffn.packed(e, input, lanes);
        return epilogue(
            e, carried[0], start, count,
            [&](Emitter &e, Value r) { return packedRow(e, rows, r); },
            [&](Emitter &e) { return ffn.unpack(e, rows, lanes); });
      };
      Value few = e.cmpi(arith::CmpIPredicate::ult, count, e.index(minRows));
      Value some = e.cmpi(arith::CmpIPredicate::ugt, count, e.index(0));
      return {e.ifElse(
          some, [&](Emitter &e) { return e.ifElse(few, rowwise, packed); },
          [&](Emitter &) { return carried[0]; })};
    };
    return e.forEachCarrying(e.index(0), e.index(numExperts), init,
                             segment)[0];
  }
};

/// Whether `op`'s only user is a moe.combine of its rows, which it is
/// decomposed with.
static bool isFusedIntoCombine(ExpertOp op) {
  if (!op->hasOneUse())
    return false;
  auto combine = dyn_cast<CombineOp>(*op->getUsers().begin());
  return combine && combine.getExpertOutput() == op.getOutput();
}

/// moe.expert alone: each segment's FFN output, its padding rows zeroed,
/// inserted at its rows of the `[rows, H]` result.
struct DecomposeExpert : OpRewritePattern<ExpertOp> {
  DecomposeExpert(MLIRContext *context, bool fuseGather, bool fuseCombine,
                  int64_t vectorLanes)
      : OpRewritePattern(context), fuseGather(fuseGather),
        fuseCombine(fuseCombine), vectorLanes(vectorLanes) {}

  LogicalResult matchAndRewrite(ExpertOp op,
                                PatternRewriter &rewriter) const override {
    if (fuseCombine && isFusedIntoCombine(op))
      return rewriter.notifyMatchFailure(op, "decomposed with its combine");
    Location loc = op.getLoc();
    Emitter e(rewriter, loc);
    auto resultType = cast<RankedTensorType>(op.getOutput().getType());
    SmallVector<Value> dynamicRows;
    if (resultType.isDynamicDim(0))
      dynamicRows.push_back(
          tensor::DimOp::create(rewriter, loc, op.getSlots(), 0));
    Value zeros =
        e.fill(e.f32(0), e.emptyTensor(resultType.getShape(),
                                       rewriter.getF32Type(), dynamicRows));
    ExpertSegments segments{op, fuseGather, targetLanes(op, vectorLanes)};
    int64_t hidden = resultType.getDimSize(1);
    Value output = segments.build(
        e, zeros,
        [&](Emitter &e, Value carried, Value start, Value count, RowOf,
            function_ref<Value(Emitter &)> rows) -> Value {
          // Written in place into the result's rows, which bufferization
          // keeps in place, so no copy of the segment is made.
          OpBuilder &b = e.builder();
          SmallVector<OpFoldResult> offsets = {start, b.getIndexAttr(0)};
          SmallVector<OpFoldResult> sizes = {count, b.getIndexAttr(hidden)};
          SmallVector<OpFoldResult> strides(2, b.getIndexAttr(1));
          Value dest = tensor::ExtractSliceOp::create(
              b, e.location(), carried, offsets, sizes, strides);
          Value kept = e.generic(
              {rows(e)}, dest, {e.map(2, {0, 1}), e.map(2, {0, 1})},
              {kParallel, kParallel},
              [&](Emitter &e, ValueRange args) {
                Value slot = tensor::ExtractOp::create(
                    e.builder(), e.location(), op.getSlots(),
                    ValueRange{e.add(start, e.loopIndex(0))});
                return e.select(
                    e.cmpi(arith::CmpIPredicate::sge, slot, e.i64(0)), args[0],
                    e.f32(0));
              });
          return tensor::InsertSliceOp::create(b, e.location(), kept, carried,
                                               offsets, sizes, strides);
        });
    rewriter.replaceOp(op, output);
    return success();
  }

  bool fuseGather, fuseCombine;
  int64_t vectorLanes;
};

/// moe.combine of a moe.expert: each segment's rows, scaled by their
/// routing weights, are added into their tokens' f32 output rows, starting
/// from the shared expert's output or zeros, so that no whole `[rows, H]`
/// expert output exists. Experts run in order, so the sum is
/// deterministic.
struct DecomposeExpertCombine : OpRewritePattern<CombineOp> {
  DecomposeExpertCombine(MLIRContext *context, bool fuseGather,
                         int64_t vectorLanes)
      : OpRewritePattern(context), fuseGather(fuseGather),
        vectorLanes(vectorLanes) {}

  LogicalResult matchAndRewrite(CombineOp op,
                                PatternRewriter &rewriter) const override {
    auto expert = op.getExpertOutput().getDefiningOp<ExpertOp>();
    if (!expert || !isFusedIntoCombine(expert))
      return rewriter.notifyMatchFailure(op, "not the only user of an expert");
    Location loc = op.getLoc();
    Emitter e(rewriter, loc);
    SmallVector<Value> dynamicTokens = combineDynamicTokens(e, op);
    Value init = buildCombineStart(e, op, dynamicTokens);

    ExpertSegments segments{expert, fuseGather, targetLanes(op, vectorLanes)};
    // Without weights the expert rows arrive weighted.
    Value weights = op.getWeights();
    Value sum = segments.build(
        e, init,
        [&](Emitter &e, Value carried, Value start, Value count, RowOf rowOf,
            function_ref<Value(Emitter &)>) -> Value {
          auto addRow = [&](Emitter &e, Value r,
                            ValueRange acc) -> SmallVector<Value> {
            Value row = e.add(start, r);
            Value slot = tensor::ExtractOp::create(e.builder(), e.location(),
                                                   expert.getSlots(), row);
            Value kept = e.cmpi(arith::CmpIPredicate::sge, slot, e.i64(0));
            return {e.ifElse(
                kept,
                [&](Emitter &e) -> Value {
                  auto [token, j] = segments.slotOf(e, row);
                  Value weight = weights ? Value(tensor::ExtractOp::create(
                                               e.builder(), e.location(),
                                               weights, ValueRange{token, j}))
                                         : Value();
                  Value added = e.generic(
                      {rowOf(e, r)}, e.sliceAt(acc[0], token),
                      {e.map(1, {0}), e.map(1, {0})}, {kParallel},
                      [&](Emitter &e, ValueRange args) {
                        Value term = weight ? e.mul(weight, args[0]) : args[0];
                        return e.add(args[1], term);
                      });
                  return e.insertAt(added, acc[0], token);
                },
                [&](Emitter &) { return acc[0]; })};
          };
          return e.forEachCarrying(e.index(0), count, carried, addRow)[0];
        });

    rewriter.replaceOp(op, buildCombineEnd(e, op, sum, dynamicTokens));
    rewriter.eraseOp(expert);
    return success();
  }

  bool fuseGather;
  int64_t vectorLanes;
};

struct MoEDecomposeExpertsPass
    : moe::impl::MoEDecomposeExpertsBase<MoEDecomposeExpertsPass> {
  using Base::Base;

  void runOnOperation() override {
    if (failed(checkVectorLanes(getOperation(), getArgument(), vectorLanes)))
      return signalPassFailure();
    RewritePatternSet patterns(&getContext());
    populateDecomposeExpertsPatterns(patterns, fuseGather, fuseCombine,
                                     vectorLanes);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))) ||
        failed(checkDequantizeConsumed(
            getOperation(), getArgument(),
            "only moe.expert and moe.shared_expert (decomposed by "
            "moe-decompose-shared-expert before it) read quantized weights")))
      signalPassFailure();
  }
};
} // namespace

void moe::populateDecomposeExpertsPatterns(RewritePatternSet &patterns,
                                           bool fuseGather, bool fuseCombine,
                                           int64_t vectorLanes) {
  if (fuseCombine)
    patterns.add<DecomposeExpertCombine>(patterns.getContext(), fuseGather,
                                         vectorLanes);
  patterns.add<DecomposeExpert>(patterns.getContext(), fuseGather, fuseCombine,
                                vectorLanes);
}

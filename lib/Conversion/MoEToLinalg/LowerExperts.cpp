//===- LowerExperts.cpp - moe.expert and moe.shared_expert to linalg ------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "Emitter.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Math/IR/Math.h"

#include <cmath>

namespace mlir::moe {
#define GEN_PASS_DEF_MOELOWEREXPERTS
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

/// SPEC §1 activations, in f32.
static Value applyActivation(Emitter &e, Activation activation, Value v) {
  OpBuilder &b = e.builder();
  Location loc = e.location();
  switch (activation) {
  case Activation::silu: {
    Value negated = arith::NegFOp::create(b, loc, v);
    Value denominator = e.add(e.f32(1), math::ExpOp::create(b, loc, negated));
    return arith::DivFOp::create(b, loc, v, denominator);
  }
  case Activation::gelu: {
    Value scaled = e.mul(v, e.f32(M_SQRT1_2));
    Value erf = math::ErfOp::create(b, loc, scaled);
    return e.mul(e.mul(e.f32(0.5), v), e.add(e.f32(1), erf));
  }
  case Activation::gelu_tanh: {
    Value cube = e.mul(e.mul(v, v), v);
    Value inner = e.mul(e.f32(std::sqrt(2.0 / M_PI)),
                        e.add(v, e.mul(e.f32(0.044715), cube)));
    Value tanh = math::TanhOp::create(b, loc, inner);
    return e.mul(e.mul(e.f32(0.5), v), e.add(e.f32(1), tanh));
  }
  case Activation::relu:
    return arith::MaximumFOp::create(b, loc, v, e.f32(0));
  }
  llvm_unreachable("unknown activation");
}

/// Builds `[rows, F]` f32 = (the FFN's input rows) · `weight`^T for a
/// `[F, H]` weight, accumulating into `init`.
using ProjectRows = function_ref<Value(Emitter &, Value weight, Value init)>;

/// `(act(in·Wg^T) ⊙ (in·Wu^T)) · Wd^T`, or `act(in·Wu^T) · Wd^T` without a
/// gate, over `numRows` rows, written into `output` (`[rows, H]` f32): the
/// caller's destination, so that the result needs no copy.
static Value buildFFN(Emitter &e, Activation activation, Value gateWeight,
                      Value upWeight, Value downWeight, Value numRows,
                      Value output, ProjectRows projectRows) {
  Type f32 = e.builder().getF32Type();
  int64_t intermediate =
      cast<RankedTensorType>(upWeight.getType()).getDimSize(0);
  auto zeros = [&]() {
    return e.fill(e.f32(0), e.emptyTensor({ShapedType::kDynamic, intermediate},
                                          f32, numRows));
  };
  AffineMap identity = e.map(2, {0, 1});

  // The activation updates the up projection in place: it reads the
  // element it overwrites and nothing else, so no copy is needed.
  Value up = projectRows(e, upWeight, zeros());
  Value activated;
  if (gateWeight) {
    Value gate = projectRows(e, gateWeight, zeros());
    activated = e.generic(gate, up, {identity, identity},
                          {kParallel, kParallel},
                          [&](Emitter &e, ValueRange args) {
                            return e.mul(
                                applyActivation(e, activation, args[0]),
                                args[1]);
                          });
  } else {
    activated = e.generic(ValueRange{}, up, {identity}, {kParallel, kParallel},
                          [&](Emitter &e, ValueRange args) {
                            return applyActivation(e, activation, args[0]);
                          });
  }
  return e.generic(
      ValueRange{activated, downWeight}, e.fill(e.f32(0), output),
      {e.map(3, {0, 2}), e.map(3, {1, 2}), e.map(3, {0, 1})},
      {kParallel, kParallel, kReduction}, [](Emitter &e, ValueRange args) {
        return e.multiplyAdd(args[2], args[0], args[1]);
      });
}

/// Expert `expert`'s `[F, H]` or `[H, F]` matrix, a slice of the stacked
/// weights: read in place, never copied.
static Value sliceExpert(Emitter &e, Value weights, Value expert) {
  auto type = cast<RankedTensorType>(weights.getType());
  auto sliceType = RankedTensorType::get(type.getShape().drop_front(),
                                         type.getElementType());
  OpBuilder &b = e.builder();
  SmallVector<OpFoldResult> offsets = {expert, b.getIndexAttr(0),
                                       b.getIndexAttr(0)};
  SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1),
                                     b.getIndexAttr(type.getDimSize(1)),
                                     b.getIndexAttr(type.getDimSize(2))};
  SmallVector<OpFoldResult> strides(3, b.getIndexAttr(1));
  return tensor::ExtractSliceOp::create(b, e.location(), sliceType, weights,
                                        offsets, sizes, strides);
}

namespace {
struct LowerExpert : OpRewritePattern<ExpertOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(ExpertOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Emitter e(rewriter, loc);
    auto resultType = cast<RankedTensorType>(op.getOutput().getType());
    int64_t numExperts =
        cast<RankedTensorType>(op.getUpProj().getType()).getDimSize(0);
    int64_t hidden = resultType.getDimSize(1);
    Value input = op.getInput();
    Value slots = op.getSlots();
    Value offsets = op.getOffsets();
    Value slotsPerToken = e.index(op.getSlotsPerToken());
    Value numRows = tensor::DimOp::create(rewriter, loc, slots, 0);
    SmallVector<Value> dynamicRows;
    if (resultType.isDynamicDim(0))
      dynamicRows.push_back(numRows);
    Value init = e.emptyTensor(resultType.getShape(), rewriter.getF32Type(),
                               dynamicRows);

    Value result = e.forEachCarrying(
        e.index(0), e.index(numExperts), init,
        [&](Emitter &e, Value expert, ValueRange acc) -> SmallVector<Value> {
          auto offsetAt = [&](Value i) {
            return e.toIndex(
                tensor::ExtractOp::create(e.builder(), e.location(), offsets,
                                          i));
          };
          Value start = offsetAt(expert);
          Value end = offsetAt(e.add(expert, e.index(1)));
          Value rows = arith::SubIOp::create(e.builder(), e.location(), end,
                                             start);

          // The gather is fused into the projection: row i reads token
          // slots[start + i] / K of the input where it is used.
          auto projectRows = [&](Emitter &e, Value weight, Value rowsInit) {
            return e.generic(
                weight, rowsInit, {e.map(3, {1, 2}), e.map(3, {0, 1})},
                {kParallel, kParallel, kReduction},
                [&](Emitter &e, ValueRange args) {
                  OpBuilder &b = e.builder();
                  Location l = e.location();
                  Value row = e.add(start, e.loopIndex(0));
                  Value slot = e.toIndex(
                      tensor::ExtractOp::create(b, l, slots, row));
                  // Padding rows (-1) compute on token 0 and are never read.
                  Value clamped = arith::MaxSIOp::create(b, l, slot, e.index(0));
                  Value token = arith::DivUIOp::create(b, l, clamped,
                                                       slotsPerToken);
                  Value x = tensor::ExtractOp::create(
                      b, l, input, ValueRange{token, e.loopIndex(2)});
                  return e.multiplyAdd(args[1], x, args[0]);
                });
          };
          Value gate = op.getGateProj()
                           ? sliceExpert(e, op.getGateProj(), expert)
                           : Value();
          // The expert writes its segment of the result in place.
          OpBuilder &b = e.builder();
          SmallVector<OpFoldResult> offsets = {start, b.getIndexAttr(0)};
          SmallVector<OpFoldResult> sizes = {rows, b.getIndexAttr(hidden)};
          SmallVector<OpFoldResult> strides(2, b.getIndexAttr(1));
          auto segmentType = RankedTensorType::get(
              {ShapedType::kDynamic, hidden}, b.getF32Type());
          Value segment = tensor::ExtractSliceOp::create(
              b, e.location(), segmentType, acc[0], offsets, sizes, strides);
          Value block = buildFFN(e, op.getActivation(), gate,
                                 sliceExpert(e, op.getUpProj(), expert),
                                 sliceExpert(e, op.getDownProj(), expert),
                                 rows, segment, projectRows);
          return {tensor::InsertSliceOp::create(b, e.location(), block, acc[0],
                                                offsets, sizes, strides)};
        })[0];
    rewriter.replaceOp(op, result);
    return success();
  }
};

struct LowerSharedExpert : OpRewritePattern<SharedExpertOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(SharedExpertOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Emitter e(rewriter, loc);
    Value input = op.getInput();
    Value numTokens = tensor::DimOp::create(rewriter, loc, input, 0);
    auto projectRows = [&](Emitter &e, Value weight, Value init) {
      return e.generic(
          ValueRange{input, weight}, init,
          {e.map(3, {0, 2}), e.map(3, {1, 2}), e.map(3, {0, 1})},
          {kParallel, kParallel, kReduction}, [](Emitter &e, ValueRange args) {
            return e.multiplyAdd(args[2], args[0], args[1]);
          });
    };
    int64_t hidden =
        cast<RankedTensorType>(input.getType()).getDimSize(1);
    Value output = buildFFN(
        e, op.getActivation(), op.getGateProj(), op.getUpProj(),
        op.getDownProj(), numTokens,
        e.emptyTensor({ShapedType::kDynamic, hidden}, rewriter.getF32Type(),
                      numTokens),
        projectRows);

    if (Value expertGate = op.getExpertGate()) {
      Type f32 = rewriter.getF32Type();
      Value logits = e.generic(
          ValueRange{input, expertGate},
          e.fill(e.f32(0),
                 e.emptyTensor({ShapedType::kDynamic}, f32, numTokens)),
          {e.map(2, {0, 1}), e.map(2, {1}), e.map(2, {0})},
          {kParallel, kReduction}, [](Emitter &e, ValueRange args) {
            return e.multiplyAdd(args[2], args[0], args[1]);
          });
      output = e.generic(
          logits, output, {e.map(2, {0}), e.map(2, {0, 1})},
          {kParallel, kParallel}, [](Emitter &e, ValueRange args) -> Value {
            OpBuilder &b = e.builder();
            Location l = e.location();
            Value negated = arith::NegFOp::create(b, l, args[0]);
            Value denominator =
                e.add(e.f32(1), math::ExpOp::create(b, l, negated));
            return arith::DivFOp::create(b, l, args[1], denominator);
          });
    }
    if (output.getType() != op.getOutput().getType())
      output = tensor::CastOp::create(rewriter, loc, op.getOutput().getType(),
                                      output);
    rewriter.replaceOp(op, output);
    return success();
  }
};

struct MoELowerExpertsPass
    : moe::impl::MoELowerExpertsBase<MoELowerExpertsPass> {
  void runOnOperation() override {
    if (failed(applyLowering<LowerExpert, LowerSharedExpert>(getOperation())))
      signalPassFailure();
  }
};
} // namespace

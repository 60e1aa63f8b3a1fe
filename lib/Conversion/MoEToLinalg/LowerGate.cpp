//===- LowerGate.cpp - moe.select and moe.refine to scf and memref --------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "../Common/Routing.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Math/IR/Math.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOELOWERGATE
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

//===----------------------------------------------------------------------===//
// Scores and selection (SPEC §1 routing steps 1-7), on buffers; the
// per-token selection is Routing.h's
//===----------------------------------------------------------------------===//

/// Rows `[0, count)` of the logits in `tile` become scores in place:
/// softmax or sigmoid per row (sparsemixer keeps the logits).
static void buildScores(Emitter &e, Scoring scoring, Value tile, Value count,
                        int64_t numExperts) {
  // Sparsemixer weighs by the logits themselves (Routing.h).
  if (scoring == Scoring::sparsemixer)
    return;
  if (scoring == Scoring::sigmoid) {
    e.genericInPlace(ValueRange{}, tile, {e.map(2, {0, 1})},
                     {kParallel, kParallel},
                     [](Emitter &e, ValueRange args) {
                       return e.sigmoid(args[0]);
                     });
    return;
  }
  e.forEach(e.index(0), count, [&](Emitter &e, Value row) {
    buildSoftmaxRow(e, tile, row, numExperts);
  });
}

/// Grants each expert at most C slots, slot 0 of every token first (token
/// order), then slot 1, ...; a slot past C is dropped (id -1, weight 0).
template <typename OpTy>
static void buildCapacityDrops(Emitter &e, OpTy op, Value numTokens,
                               int64_t numExperts,
                               const SelectionBuffers &buffers) {
  int64_t topK = op.getTopK();
  Value capacity =
      buildCapacity(e, op.getCapacityFactor().convertToDouble(), numTokens,
                    topK, numExperts);
  Value granted = e.stackAlloc({numExperts}, e.builder().getIndexType());
  e.forEach(e.index(0), e.index(numExperts), [&](Emitter &e, Value x) {
    e.store(e.index(0), granted, x);
  });
  e.forEach(e.index(0), e.index(topK), [&](Emitter &e, Value slot) {
    e.forEach(e.index(0), numTokens, [&](Emitter &e, Value token) {
      Value expert = e.toIndex(e.load(buffers.ids, {token, slot}));
      Value count = e.load(granted, expert);
      e.ifThenElse(
          e.cmpi(arith::CmpIPredicate::ult, count, capacity),
          [&](Emitter &e) { e.store(e.add(count, e.index(1)), granted, expert); },
          [&](Emitter &e) {
            e.store(e.i32(-1), buffers.ids, {token, slot});
            e.store(e.f32(0), buffers.weights, {token, slot});
          });
    });
  });
}

/// Expert choice: each expert takes its C best-scoring tokens (ties to the
/// lower token); slot e of a token it took holds e and the score.
template <typename OpTy>
static void buildExpertChoice(Emitter &e, OpTy op, Value numTokens,
                              int64_t numExperts,
                              const SelectionBuffers &buffers) {
  Value capacity =
      buildCapacity(e, op.getCapacityFactor().convertToDouble(), numTokens,
                    /*slots=*/1, numExperts);
  capacity = e.minIndex(capacity, numTokens);
  e.forEach(e.index(0), numTokens, [&](Emitter &e, Value token) {
    e.forEach(e.index(0), e.index(numExperts), [&](Emitter &e, Value x) {
      e.store(e.i32(-1), buffers.ids, {token, x});
      e.store(e.f32(0), buffers.weights, {token, x});
    });
  });
  e.forEach(e.index(0), e.index(numExperts), [&](Emitter &e, Value expert) {
    Value expertId = e.toI32(expert);
    e.forEach(e.index(0), capacity, [&](Emitter &e, Value) {
      Value token = e.argMax(
          numTokens,
          [&](Emitter &e, Value t) {
            return e.load(buffers.scores, {t, expert});
          },
          [&](Emitter &e, Value t) {
            return e.cmpi(arith::CmpIPredicate::slt,
                          e.load(buffers.ids, {t, expert}), e.i32(0));
          });
      e.store(expertId, buffers.ids, {token, expert});
      e.store(e.load(buffers.scores, {token, expert}), buffers.weights,
              {token, expert});
    });
  });
}

//===----------------------------------------------------------------------===//
// moe.refine: one inner level of a hierarchy
//===----------------------------------------------------------------------===//

namespace {
/// Routes each (token, parent slot) by Routing.h's `buildRefinedSlot`: the
/// parent's row of the token's logits is copied into a `[1, E]` scratch
/// row and scored there.
struct LowerRefineSelect : OpRewritePattern<RefineSelectOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(RefineSelectOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Emitter e(rewriter, loc);
    int64_t numExperts = op.getLogits().getType().getDimSize(2);
    SelectionRules rules = selectionRulesOf(op);
    RefineBuffers buffers;
    buffers.parentIds = e.readBuffer(op.getParentIds());
    buffers.parentWeights = e.readBuffer(op.getParentWeights());
    Value logits = e.readBuffer(op.getLogits());
    Value numTokens =
        memref::DimOp::create(rewriter, loc, buffers.parentIds, 0);
    Value parentSlots =
        memref::DimOp::create(rewriter, loc, buffers.parentIds, 1);
    if (op.getSelectionBias())
      buffers.selectionBiases = e.readBuffer(op.getSelectionBias());

    auto idsType = cast<RankedTensorType>(op.getIds().getType());
    auto weightsType = cast<RankedTensorType>(op.getWeights().getType());
    SmallVector<Value> dynamicSizes;
    if (idsType.isDynamicDim(0))
      dynamicSizes.push_back(numTokens);
    if (idsType.isDynamicDim(1))
      dynamicSizes.push_back(e.mul(parentSlots, e.index(rules.topK)));
    buffers.ids = e.alloc(idsType, dynamicSizes);
    buffers.weights = e.alloc(weightsType, dynamicSizes);
    Value scores = memref::AllocOp::create(
        rewriter, loc, MemRefType::get({1, numExperts}, rewriter.getF32Type()));
    SelectionScratch scratch = allocSelectionScratch(e, rules, numExperts);

    e.forEach(e.index(0), numTokens, [&](Emitter &e, Value token) {
      e.forEach(e.index(0), parentSlots, [&](Emitter &e, Value slot) {
        buildRefinedSlot(
            e, rules, numExperts, buffers, scratch, token, slot,
            [&](Emitter &e, Value parent) {
              linalg::CopyOp::create(
                  e.builder(), e.location(),
                  e.sliceAt(e.sliceAt(logits, token), parent),
                  e.sliceAt(scores, e.index(0)));
              buildScores(e, rules.scoring, scores, e.index(1), numExperts);
            },
            [&](Emitter &e, Value expert) {
              return e.load(scores, {e.index(0), expert});
            });
      });
    });
    rewriter.replaceOp(op, {e.asTensor(buffers.ids, idsType),
                            e.asTensor(buffers.weights, weightsType)});
    return success();
  }
};
} // namespace

//===----------------------------------------------------------------------===//
// Pass
//===----------------------------------------------------------------------===//

namespace {
/// Scores the select's logits into a scratch copy, then selects: token
/// choice one token after another, expert choice over the whole matrix,
/// then the capacity drops.
struct LowerSelect : OpRewritePattern<SelectOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(SelectOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Emitter e(rewriter, loc);
    int64_t numExperts = op.getLogits().getType().getDimSize(1);
    Value logits = e.readBuffer(op.getLogits());
    Value numTokens = memref::DimOp::create(rewriter, loc, logits, 0);

    SelectionBuffers buffers;
    if (op.getSelectionBias())
      buffers.selectionBias = e.readBuffer(op.getSelectionBias());
    auto idsType = op.getIds().getType();
    auto weightsType = op.getWeights().getType();
    SmallVector<Value> dynamicTokens;
    if (idsType.isDynamicDim(0))
      dynamicTokens.push_back(numTokens);
    buffers.ids = e.alloc(idsType, dynamicTokens);
    buffers.weights = e.alloc(weightsType, dynamicTokens);
    // Scoring rewrites a copy of the logits; sparsemixer reads them as
    // they are.
    Value scores = logits;
    if (op.getScoring() != Scoring::sparsemixer) {
      scores = memref::AllocOp::create(
          rewriter, loc,
          MemRefType::get({ShapedType::kDynamic, numExperts},
                          rewriter.getF32Type()),
          ValueRange{numTokens});
      linalg::CopyOp::create(rewriter, loc, logits, scores);
      buildScores(e, op.getScoring(), scores, numTokens, numExperts);
    }
    if (op.getRouting() == Routing::expert_choice) {
      buffers.scores = scores;
      buildExpertChoice(e, op, numTokens, numExperts, buffers);
    } else {
      SelectionRules rules = selectionRulesOf(op);
      SelectionScratch scratch =
          allocSelectionScratch(e, rules, numExperts, /*onHeap=*/true);
      e.forEach(e.index(0), numTokens, [&](Emitter &e, Value token) {
        buildTokenSelection(e, rules, numExperts, buffers, scratch, token,
                            [&](Emitter &e, Value expert) {
                              return e.load(scores, {token, expert});
                            });
      });
      if (op.getCapacityFactor().convertToDouble() > 0)
        buildCapacityDrops(e, op, numTokens, numExperts, buffers);
    }
    rewriter.replaceOp(op, {e.asTensor(buffers.ids, idsType),
                            e.asTensor(buffers.weights, weightsType)});
    return success();
  }
};

struct MoELowerGatePass : moe::impl::MoELowerGateBase<MoELowerGatePass> {
  using Base::Base;

  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateDecomposeGatePatterns(patterns);
    patterns.add<LowerSelect>(&getContext());
    patterns.add<LowerRefineSelect>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

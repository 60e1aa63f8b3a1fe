//===- LowerGate.cpp - moe.gate to linalg, scf and memref -----------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "Emitter.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Math/IR/Math.h"

#include <limits>

namespace mlir::moe {
#define GEN_PASS_DEF_MOELOWERGATE
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

//===----------------------------------------------------------------------===//
// Scores and selection (SPEC §1 routing steps 1-7), on buffers
//===----------------------------------------------------------------------===//

namespace {
/// The token-choice routing of one level (steps 2-6), as `moe.gate` and
/// `moe.refine` carry it.
struct SelectionRules {
  Scoring scoring;
  int64_t topK;
  bool normalizeTopK;
  float routedScalingFactor;
  int64_t nGroup;
  int64_t topkGroup;
  GroupScore groupScore;
  /// The consumer takes a token's slots in any order.
  bool unordered;
};
} // namespace

template <typename OpTy>
static SelectionRules selectionRulesOf(OpTy op) {
  return {op.getScoring(),
          static_cast<int64_t>(op.getTopK()),
          op.getNormalizeTopK(),
          op.getRoutedScalingFactor().convertToFloat(),
          static_cast<int64_t>(op.getNGroup()),
          static_cast<int64_t>(op.getTopkGroup()),
          op.getGroupScore(),
          op.getUnordered()};
}

namespace {
/// The buffers the selection loops read and write.
struct SelectionBuffers {
  Value scores;        // [T, E] f32, for expert choice
  Value selectionBias; // [E] or null
  Value ids;           // [T, K] i32
  Value weights;       // [T, K] f32
};
} // namespace

namespace {
/// Per-token scratch of grouped routing, allocated once outside the loops.
struct GroupScratch {
  Value scores; // [n_group] f32
  Value chosen; // [n_group] i1
};
} // namespace

/// Marks in `available` ([E] i1) the experts of the current token's
/// `topk_group` best groups.
static void buildGroupMask(Emitter &e, const SelectionRules &rules,
                           int64_t numExperts, Value available,
                           const GroupScratch &scratch,
                           function_ref<Value(Emitter &, Value)> choiceAt) {
  int64_t numGroups = rules.nGroup;
  int64_t groupSize = numExperts / numGroups;
  Value groupScores = scratch.scores;
  Value groupChosen = scratch.chosen;
  Value negInf = e.f32(-std::numeric_limits<float>::infinity());
  bool topTwo = rules.groupScore == GroupScore::top2_sum;

  e.forEach(e.index(0), e.index(numGroups), [&](Emitter &e, Value group) {
    Value first = e.mul(group, e.index(groupSize));
    SmallVector<Value> best = e.forEachCarrying(
        e.index(0), e.index(groupSize), ValueRange{negInf, negInf},
        [&](Emitter &e, Value i, ValueRange top) -> SmallVector<Value> {
          Value value = choiceAt(e, e.add(first, i));
          Value aboveFirst = e.cmpf(arith::CmpFPredicate::OGT, value, top[0]);
          Value aboveSecond =
              e.cmpf(arith::CmpFPredicate::OGT, value, top[1]);
          return {e.select(aboveFirst, value, top[0]),
                  e.select(aboveFirst, top[0],
                           e.select(aboveSecond, value, top[1]))};
        });
    Value score = topTwo ? e.add(best[0], best[1]) : best[0];
    e.store(score, groupScores, group);
    e.store(e.boolean(false), groupChosen, group);
  });

  e.forEach(e.index(0), e.index(rules.topkGroup), [&](Emitter &e, Value) {
    Value group = e.argMax(
        e.index(numGroups),
        [&](Emitter &e, Value g) { return e.load(groupScores, g); },
        [&](Emitter &e, Value g) {
          return e.cmpi(arith::CmpIPredicate::eq, e.load(groupChosen, g),
                        e.boolean(false));
        });
    e.store(e.boolean(true), groupChosen, group);
  });

  e.forEach(e.index(0), e.index(numExperts), [&](Emitter &e, Value expert) {
    Value group = arith::DivUIOp::create(e.builder(), e.location(), expert,
                                         e.index(groupSize));
    e.store(e.load(groupChosen, group), available, expert);
  });
}

namespace {
/// Scratch of token-choice selection, allocated once outside the loops.
struct SelectionScratch {
  Value available; // [E] i1: experts the current token may still take
  GroupScratch groups;
};
} // namespace

/// Whether selection can be skipped: every expert is chosen (a dense
/// mixture) and the consumer takes them in any order.
static bool choosesAllUnordered(const SelectionRules &rules,
                                int64_t numExperts) {
  return rules.unordered && rules.topK == numExperts;
}

static SelectionScratch allocSelectionScratch(Emitter &e,
                                              const SelectionRules &rules,
                                              int64_t numExperts) {
  Type i1 = e.builder().getI1Type();
  SelectionScratch scratch;
  if (choosesAllUnordered(rules, numExperts))
    return scratch;
  scratch.available = e.stackAlloc({numExperts}, i1);
  if (rules.nGroup > 1) {
    int64_t numGroups = rules.nGroup;
    scratch.groups.scores =
        e.stackAlloc({numGroups}, e.builder().getF32Type());
    scratch.groups.chosen = e.stackAlloc({numGroups}, i1);
  }
  return scratch;
}

/// Token choice for one token: it takes its `top_k` best allowed experts in
/// descending order, or, when `choosesAllUnordered`, expert j in slot j.
/// `scoreAt` reads the token's score for an expert.
static void buildTokenSelection(Emitter &e, const SelectionRules &rules,
                                int64_t numExperts,
                                const SelectionBuffers &buffers,
                                const SelectionScratch &scratch, Value token,
                                function_ref<Value(Emitter &, Value)> scoreAt) {
  int64_t topK = rules.topK;
  auto take = [&](Emitter &e, Value slot, Value expert, Value sum) {
    e.store(e.toI32(expert), buffers.ids, {token, slot});
    Value weight = scoreAt(e, expert);
    e.store(weight, buffers.weights, {token, slot});
    return e.add(sum, weight);
  };
  Value sum;
  if (choosesAllUnordered(rules, numExperts)) {
    sum = e.forEachCarrying(
        e.index(0), e.index(numExperts), ValueRange{e.f32(0)},
        [&](Emitter &e, Value expert,
            ValueRange carried) -> SmallVector<Value> {
          return {take(e, expert, expert, carried[0])};
        })[0];
  } else {
    Value available = scratch.available;
    auto choiceAt = [&](Emitter &e, Value expert) {
      Value score = scoreAt(e, expert);
      if (!buffers.selectionBias)
        return score;
      return e.add(score, e.toF32(e.load(buffers.selectionBias, expert)));
    };
    if (rules.nGroup > 1)
      buildGroupMask(e, rules, numExperts, available, scratch.groups,
                     choiceAt);
    else
      e.forEach(e.index(0), e.index(numExperts), [&](Emitter &e, Value x) {
        e.store(e.boolean(true), available, x);
      });

    sum = e.forEachCarrying(
        e.index(0), e.index(topK), ValueRange{e.f32(0)},
        [&](Emitter &e, Value slot, ValueRange carried) -> SmallVector<Value> {
          Value expert = e.argMax(
              e.index(numExperts), choiceAt,
              [&](Emitter &e, Value x) { return e.load(available, x); });
          e.store(e.boolean(false), available, expert);
          return {take(e, slot, expert, carried[0])};
        })[0];
  }

  Value factor = e.f32(rules.routedScalingFactor);
  if (rules.normalizeTopK)
    factor = arith::DivFOp::create(e.builder(), e.location(), factor, sum);
  e.forEach(e.index(0), e.index(topK), [&](Emitter &e, Value slot) {
    Value weight = e.load(buffers.weights, {token, slot});
    e.store(e.mul(weight, factor), buffers.weights, {token, slot});
  });
}

namespace {
/// What scoring reads, as buffers.
struct ScoreOperands {
  Value input, router, routerBias; // routerBias may be null
};
} // namespace

template <typename OpTy>
static ScoreOperands readScoreOperands(Emitter &e, OpTy op) {
  return {e.readBuffer(op.getInput()), e.readBuffer(op.getRouter()),
          op.getRouterBias() ? e.readBuffer(op.getRouterBias()) : Value()};
}

/// Scores of tokens `[first, first + count)` into rows `[0, count)` of
/// `scores` (`[tile, E]`): the router matmul, then softmax or sigmoid per
/// row, all on buffers.
static void buildTileScores(Emitter &e, Scoring scoring,
                            const ScoreOperands &operands, Value scores,
                            Value first, Value count, int64_t numExperts) {
  OpBuilder &b = e.builder();
  Value input = operands.input, router = operands.router,
        routerBias = operands.routerBias;
  int64_t hidden = cast<MemRefType>(router.getType()).getDimSize(1);
  Value tile = e.subview(scores, {b.getIndexAttr(0), b.getIndexAttr(0)},
                         {count, b.getIndexAttr(numExperts)});
  Value rows = e.subview(input, {first, b.getIndexAttr(0)},
                         {count, b.getIndexAttr(hidden)});
  if (routerBias)
    e.genericInPlace(routerBias, tile, {e.map(2, {1}), e.map(2, {0, 1})},
                     {kParallel, kParallel},
                     [](Emitter &e, ValueRange args) {
                       return e.toF32(args[0]);
                     });
  else
    linalg::FillOp::create(b, e.location(), ValueRange{e.f32(0)},
                           ValueRange{tile});
  e.genericInPlace(ValueRange{rows, router}, tile,
                   {e.map(3, {0, 2}), e.map(3, {1, 2}), e.map(3, {0, 1})},
                   {kParallel, kParallel, kReduction},
                   [](Emitter &e, ValueRange args) {
                     return e.multiplyAdd(args[2], args[0], args[1]);
                   });

  Value experts = e.index(numExperts);
  if (scoring == Scoring::sigmoid) {
    e.genericInPlace(ValueRange{}, tile, {e.map(2, {0, 1})},
                     {kParallel, kParallel},
                     [](Emitter &e, ValueRange args) {
                       return e.sigmoid(args[0]);
                     });
    return;
  }
  e.forEach(e.index(0), count, [&](Emitter &e, Value row) {
    Value rowMax = e.forEachCarrying(
        e.index(0), experts,
        ValueRange{e.f32(-std::numeric_limits<float>::infinity())},
        [&](Emitter &e, Value x, ValueRange acc) -> SmallVector<Value> {
          return {arith::MaximumFOp::create(e.builder(), e.location(), acc[0],
                                            e.load(tile, {row, x}))};
        })[0];
    Value rowSum = e.forEachCarrying(
        e.index(0), experts, ValueRange{e.f32(0)},
        [&](Emitter &e, Value x, ValueRange acc) -> SmallVector<Value> {
          Value shifted = e.sub(e.load(tile, {row, x}), rowMax);
          Value exp = math::ExpOp::create(e.builder(), e.location(), shifted);
          e.store(exp, tile, {row, x});
          return {e.add(acc[0], exp)};
        })[0];
    e.forEach(e.index(0), experts, [&](Emitter &e, Value x) {
      Value normalized = arith::DivFOp::create(
          e.builder(), e.location(), e.load(tile, {row, x}), rowSum);
      e.store(normalized, tile, {row, x});
    });
  });
}

/// `ceil(factor · T · slots / E)` as an index (SPEC §1 step 7).
static Value buildCapacity(Emitter &e, double factor, Value numTokens,
                           int64_t slots, int64_t numExperts) {
  OpBuilder &b = e.builder();
  Location loc = e.location();
  Value tokens = arith::IndexCastOp::create(b, loc, b.getI64Type(), numTokens);
  Value tokensF64 = arith::SIToFPOp::create(b, loc, b.getF64Type(), tokens);
  Value product = e.mul(e.mul(e.f64(factor), tokensF64),
                        e.f64(static_cast<double>(slots)));
  Value quotient = arith::DivFOp::create(
      b, loc, product, e.f64(static_cast<double>(numExperts)));
  Value ceiling = math::CeilOp::create(b, loc, quotient);
  Value capacity = arith::FPToSIOp::create(b, loc, b.getI64Type(), ceiling);
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), capacity);
}

/// Grants each expert at most C slots, slot 0 of every token first (token
/// order), then slot 1, ...; a slot past C is dropped (id -1, weight 0).
static void buildCapacityDrops(Emitter &e, GateOp op, Value numTokens,
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
static void buildExpertChoice(Emitter &e, GateOp op, Value numTokens,
                              int64_t numExperts,
                              const SelectionBuffers &buffers) {
  Value capacity =
      buildCapacity(e, op.getCapacityFactor().convertToDouble(), numTokens,
                    /*slots=*/1, numExperts);
  capacity = arith::MinUIOp::create(e.builder(), e.location(), capacity,
                                    numTokens);
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
/// Routes each kept (token, parent slot) among the parent's own experts:
/// the parent's block of the stacked router scores the token into a
/// `[1, E]` scratch row, the gate's selection writes `top_k` experts into
/// the slot's block of the result, and the block is then composed with the
/// parent (ids offset by `parent · E`, weights scaled by the parent's).
struct LowerRefine : OpRewritePattern<RefineOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(RefineOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Emitter e(rewriter, loc);
    int64_t numExperts =
        cast<RankedTensorType>(op.getRouter().getType()).getDimSize(1);
    SelectionRules rules = selectionRulesOf(op);
    Value parentIds = e.readBuffer(op.getParentIds());
    Value parentWeights = e.readBuffer(op.getParentWeights());
    Value numTokens = memref::DimOp::create(rewriter, loc, parentIds, 0);
    Value parentSlots = memref::DimOp::create(rewriter, loc, parentIds, 1);
    ScoreOperands routers = readScoreOperands(e, op);
    Value selectionBiases =
        op.getSelectionBias() ? e.readBuffer(op.getSelectionBias()) : Value();

    auto idsType = cast<RankedTensorType>(op.getIds().getType());
    auto weightsType = cast<RankedTensorType>(op.getWeights().getType());
    SmallVector<Value> dynamicSizes;
    if (idsType.isDynamicDim(0))
      dynamicSizes.push_back(numTokens);
    if (idsType.isDynamicDim(1))
      dynamicSizes.push_back(e.mul(parentSlots, e.index(rules.topK)));
    Value ids = e.alloc(idsType, dynamicSizes);
    Value weights = e.alloc(weightsType, dynamicSizes);
    Value scores = memref::AllocOp::create(
        rewriter, loc, MemRefType::get({1, numExperts}, rewriter.getF32Type()));
    SelectionScratch scratch = allocSelectionScratch(e, rules, numExperts);

    e.forEach(e.index(0), numTokens, [&](Emitter &e, Value token) {
      e.forEach(e.index(0), parentSlots, [&](Emitter &e, Value slot) {
        OpBuilder &b = e.builder();
        Value parent = e.load(parentIds, {token, slot});
        Value first = e.mul(slot, e.index(rules.topK));
        auto block = [&](Value buffer) {
          return e.subview(buffer, {b.getIndexAttr(0), first},
                           {numTokens, b.getIndexAttr(rules.topK)});
        };
        SelectionBuffers slotBlock;
        slotBlock.ids = block(ids);
        slotBlock.weights = block(weights);
        auto forEachChild = [&](Emitter &e,
                                function_ref<void(Emitter &, Value)> body) {
          e.forEach(e.index(0), e.index(rules.topK), body);
        };
        e.ifThenElse(
            e.cmpi(arith::CmpIPredicate::sge, parent, e.i32(0)),
            [&](Emitter &e) {
              Value p = e.toIndex(parent);
              ScoreOperands level = {
                  routers.input, e.sliceAt(routers.router, p),
                  routers.routerBias ? e.sliceAt(routers.routerBias, p)
                                     : Value()};
              buildTileScores(e, rules.scoring, level, scores, token,
                              e.index(1), numExperts);
              if (selectionBiases)
                slotBlock.selectionBias = e.sliceAt(selectionBiases, p);
              buildTokenSelection(e, rules, numExperts, slotBlock, scratch,
                                  token, [&](Emitter &e, Value expert) {
                                    return e.load(scores,
                                                  {e.index(0), expert});
                                  });
              Value offset = e.mul(parent, e.i32(numExperts));
              Value parentWeight = e.load(parentWeights, {token, slot});
              forEachChild(e, [&](Emitter &e, Value child) {
                SmallVector<Value> at = {token, child};
                e.store(e.add(e.load(slotBlock.ids, at), offset),
                        slotBlock.ids, at);
                e.store(e.mul(e.load(slotBlock.weights, at), parentWeight),
                        slotBlock.weights, at);
              });
            },
            [&](Emitter &e) {
              forEachChild(e, [&](Emitter &e, Value child) {
                e.store(e.i32(-1), slotBlock.ids, {token, child});
                e.store(e.f32(0), slotBlock.weights, {token, child});
              });
            });
      });
    });
    rewriter.replaceOp(op, {e.asTensor(ids, idsType),
                            e.asTensor(weights, weightsType)});
    return success();
  }
};
} // namespace

//===----------------------------------------------------------------------===//
// Pass
//===----------------------------------------------------------------------===//

namespace {
struct LowerGate : OpRewritePattern<GateOp> {
  LowerGate(MLIRContext *context, bool fuseScores, int64_t tokenTile)
      : OpRewritePattern(context), fuseScores(fuseScores),
        tokenTile(tokenTile) {}

  LogicalResult matchAndRewrite(GateOp op,
                                PatternRewriter &rewriter) const override {
    Emitter e(rewriter, op.getLoc());
    int64_t numExperts =
        cast<RankedTensorType>(op.getRouter().getType()).getDimSize(0);
    Value numTokens =
        tensor::DimOp::create(rewriter, op.getLoc(), op.getInput(), 0);

    auto idsType = cast<RankedTensorType>(op.getIds().getType());
    auto weightsType = cast<RankedTensorType>(op.getWeights().getType());
    SmallVector<Value> dynamicTokens;
    if (idsType.isDynamicDim(0))
      dynamicTokens.push_back(numTokens);
    SelectionBuffers buffers;
    if (op.getSelectionBias())
      buffers.selectionBias = e.readBuffer(op.getSelectionBias());
    buffers.ids = e.alloc(idsType, dynamicTokens);
    buffers.weights = e.alloc(weightsType, dynamicTokens);

    // Expert choice ranks every token for each expert, so it scores the
    // whole [T, E] matrix first; token choice needs one token's row at a
    // time, and without fusion its tile is all T tokens.
    bool expertChoice = op.getRouting() == Routing::expert_choice;
    if (expertChoice) {
      ScoreOperands scoring = readScoreOperands(e, op);
      buffers.scores = memref::AllocOp::create(
          rewriter, op.getLoc(),
          MemRefType::get({ShapedType::kDynamic, numExperts},
                          rewriter.getF32Type()),
          ValueRange{numTokens});
      buildTileScores(e, op.getScoring(), scoring, buffers.scores, e.index(0),
                      numTokens, numExperts);
      buildExpertChoice(e, op, numTokens, numExperts, buffers);
    } else {
      buildTokenChoice(e, op, numTokens, numExperts, buffers);
    }
    if (!expertChoice && op.getCapacityFactor().convertToDouble() > 0)
      buildCapacityDrops(e, op, numTokens, numExperts, buffers);
    rewriter.replaceOp(op, {e.asTensor(buffers.ids, idsType),
                            e.asTensor(buffers.weights, weightsType)});
    return success();
  }

  /// Scores a tile of tokens at a time into a `[tile, E]` scratch buffer
  /// and selects for each token of the tile right away. The tile is
  /// `tokenTile` tokens with `fuseScores`, else all of them (the ablation:
  /// a `[T, E]` matrix).
  void buildTokenChoice(Emitter &e, GateOp op, Value numTokens,
                        int64_t numExperts,
                        const SelectionBuffers &buffers) const {
    ScoreOperands scoring = readScoreOperands(e, op);
    Type f32 = e.builder().getF32Type();
    Value scores =
        fuseScores
            ? memref::AllocOp::create(
                  e.builder(), e.location(),
                  MemRefType::get({tokenTile, numExperts}, f32))
            : memref::AllocOp::create(
                  e.builder(), e.location(),
                  MemRefType::get({ShapedType::kDynamic, numExperts}, f32),
                  ValueRange{numTokens});
    Value tile = fuseScores ? e.index(tokenTile) : numTokens;
    SelectionRules rules = selectionRulesOf(op);
    SelectionScratch scratch = allocSelectionScratch(e, rules, numExperts);
    // A zero step would never end: with no tokens the tile is empty anyway.
    Value step = arith::MaxUIOp::create(e.builder(), e.location(), tile,
                                        e.index(1));
    e.forEachStep(e.index(0), numTokens, step, [&](Emitter &e, Value first) {
      Value count = e.minIndex(tile, e.sub(numTokens, first));
      buildTileScores(e, rules.scoring, scoring, scores, first, count,
                      numExperts);
      e.forEach(e.index(0), count, [&](Emitter &e, Value row) {
        buildTokenSelection(e, rules, numExperts, buffers, scratch,
                            e.add(first, row), [&](Emitter &e, Value expert) {
                              return e.load(scores, {row, expert});
                            });
      });
    });
  }

  bool fuseScores;
  int64_t tokenTile;
};

struct MoELowerGatePass : moe::impl::MoELowerGateBase<MoELowerGatePass> {
  using Base::Base;

  void runOnOperation() override {
    if (tokenTile < 1) {
      getOperation()->emitError()
          << "moe-lower-gate: 'token-tile' (" << tokenTile.getValue()
          << ") must be positive";
      return signalPassFailure();
    }
    RewritePatternSet patterns(&getContext());
    patterns.add<LowerGate>(&getContext(), fuseScores.getValue(),
                            tokenTile.getValue());
    patterns.add<LowerRefine>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

//===- Routing.h - Selection and plan building blocks --------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// The scalar routing code (SPEC §1 steps 2-7) that every target shares: a
// row's softmax, grouped top-k selection of one token, the capacity formula
// and the plan's padded segment offsets. The CPU lowering runs it in loops
// over tokens; the GPU kernels run it with one thread per token.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOLINALG_ROUTING_H
#define MOE_LIB_CONVERSION_MOETOLINALG_ROUTING_H

#include "Emitter.h"

#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include <limits>

namespace mlir::moe {

/// The buffers the selection loops read and write.
struct SelectionBuffers {
  Value scores;        // [T, E] f32, for expert choice
  Value selectionBias; // [E] or null
  Value ids;           // [T, K] i32
  Value weights;       // [T, K] f32
};

/// Per-token scratch of grouped routing, allocated once outside the loops.
struct GroupScratch {
  Value scores; // [n_group] f32
  Value chosen; // [n_group] i1
};

/// Marks in `available` ([E] i1) the experts of the current token's
/// `topk_group` best groups.
inline void buildGroupMask(Emitter &e, GateOp op, int64_t numExperts,
                           Value available, const GroupScratch &scratch,
                           function_ref<Value(Emitter &, Value)> choiceAt) {
  int64_t numGroups = op.getNGroup();
  int64_t groupSize = numExperts / numGroups;
  Value groupScores = scratch.scores;
  Value groupChosen = scratch.chosen;
  Value negInf = e.f32(-std::numeric_limits<float>::infinity());
  bool topTwo = op.getGroupScore() == GroupScore::top2_sum;

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

  e.forEach(e.index(0), e.index(op.getTopkGroup()), [&](Emitter &e, Value) {
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

/// Scratch of token-choice selection, allocated once outside the loops.
struct SelectionScratch {
  Value available; // [E] i1: experts the current token may still take
  GroupScratch groups;
};

inline SelectionScratch allocSelectionScratch(Emitter &e, GateOp op,
                                              int64_t numExperts) {
  Type i1 = e.builder().getI1Type();
  SelectionScratch scratch;
  scratch.available = e.stackAlloc({numExperts}, i1);
  if (op.getNGroup() > 1) {
    int64_t numGroups = op.getNGroup();
    scratch.groups.scores =
        e.stackAlloc({numGroups}, e.builder().getF32Type());
    scratch.groups.chosen = e.stackAlloc({numGroups}, i1);
  }
  return scratch;
}

/// Token choice for one token: it takes its `top_k` best allowed experts.
/// `scoreAt` reads the token's score for an expert.
inline void buildTokenSelection(Emitter &e, GateOp op, int64_t numExperts,
                                const SelectionBuffers &buffers,
                                const SelectionScratch &scratch, Value token,
                                function_ref<Value(Emitter &, Value)> scoreAt) {
  int64_t topK = op.getTopK();
  Value available = scratch.available;
  auto choiceAt = [&](Emitter &e, Value expert) {
    Value score = scoreAt(e, expert);
    if (!buffers.selectionBias)
      return score;
    return e.add(score, e.toF32(e.load(buffers.selectionBias, expert)));
  };
  if (op.getNGroup() > 1)
    buildGroupMask(e, op, numExperts, available, scratch.groups, choiceAt);
  else
    e.forEach(e.index(0), e.index(numExperts), [&](Emitter &e, Value x) {
      e.store(e.boolean(true), available, x);
    });

  Value sum = e.forEachCarrying(
      e.index(0), e.index(topK), ValueRange{e.f32(0)},
      [&](Emitter &e, Value slot, ValueRange carried) -> SmallVector<Value> {
        Value expert = e.argMax(
            e.index(numExperts), choiceAt,
            [&](Emitter &e, Value x) { return e.load(available, x); });
        e.store(e.boolean(false), available, expert);
        e.store(e.toI32(expert), buffers.ids, {token, slot});
        Value weight = scoreAt(e, expert);
        e.store(weight, buffers.weights, {token, slot});
        return {e.add(carried[0], weight)};
      })[0];

  Value factor = e.f32(op.getRoutedScalingFactor().convertToFloat());
  if (op.getNormalizeTopK())
    factor = arith::DivFOp::create(e.builder(), e.location(), factor, sum);
  e.forEach(e.index(0), e.index(topK), [&](Emitter &e, Value slot) {
    Value weight = e.load(buffers.weights, {token, slot});
    e.store(e.mul(weight, factor), buffers.weights, {token, slot});
  });
}

/// Softmax, in place, of row `row` of `scores` (`[rows, E]` f32): the
/// maximum is subtracted before exponentiating.
inline void buildSoftmaxRow(Emitter &e, Value scores, Value row,
                            int64_t numExperts) {
  Value experts = e.index(numExperts);
  Value rowMax = e.forEachCarrying(
      e.index(0), experts,
      ValueRange{e.f32(-std::numeric_limits<float>::infinity())},
      [&](Emitter &e, Value x, ValueRange acc) -> SmallVector<Value> {
        return {arith::MaximumFOp::create(e.builder(), e.location(), acc[0],
                                          e.load(scores, {row, x}))};
      })[0];
  Value rowSum = e.forEachCarrying(
      e.index(0), experts, ValueRange{e.f32(0)},
      [&](Emitter &e, Value x, ValueRange acc) -> SmallVector<Value> {
        Value shifted = e.sub(e.load(scores, {row, x}), rowMax);
        Value exp = math::ExpOp::create(e.builder(), e.location(), shifted);
        e.store(exp, scores, {row, x});
        return {e.add(acc[0], exp)};
      })[0];
  e.forEach(e.index(0), experts, [&](Emitter &e, Value x) {
    Value normalized = arith::DivFOp::create(
        e.builder(), e.location(), e.load(scores, {row, x}), rowSum);
    e.store(normalized, scores, {row, x});
  });
}

/// `ceil(factor · T · slots / E)` as an index (SPEC §1 step 7).
inline Value buildCapacity(Emitter &e, double factor, Value numTokens,
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

/// The plan's segment offsets (`[E + 1]` i32) from the histogram (`[E]`
/// i32): a prefix sum of the counts, each rounded up to `rowTile`.
inline void buildPaddedOffsets(Emitter &e, Value counts, Value offsets,
                               int64_t numExperts, int64_t rowTile) {
  e.store(e.i32(0), offsets, e.index(0));
  e.forEach(e.index(0), e.index(numExperts), [&](Emitter &e, Value x) {
    Value count = e.load(counts, x);
    Value padded = e.mul(arith::DivUIOp::create(e.builder(), e.location(),
                                                e.add(count, e.i32(rowTile - 1)),
                                                e.i32(rowTile)),
                         e.i32(rowTile));
    e.store(e.add(e.load(offsets, x), padded), offsets, e.add(x, e.index(1)));
  });
}

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOLINALG_ROUTING_H

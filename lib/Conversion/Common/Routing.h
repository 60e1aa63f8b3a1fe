//===- Routing.h - Selection and plan building blocks --------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// The scalar routing code (SPEC §1 steps 2-7) that every target shares: a
// row's softmax, grouped top-k selection of one token, one (token, parent
// slot) of a hierarchy's inner level, the capacity formula and the plan's
// padded segment offsets. The CPU lowering runs it in loops over tokens;
// the GPU kernels run it with one thread per token (or per token slot).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_COMMON_ROUTING_H
#define MOE_LIB_CONVERSION_COMMON_ROUTING_H

#include "Emitter.h"

#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Math/IR/Math.h"

#include <limits>

namespace mlir::moe {

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
  /// docs/FAMILY-RULES.md: the p of the norm normalization divides by, and
  /// sparsemixer's ε.
  float normalizeP;
  float sparsemixerEps;
  /// The consumer takes a token's slots in any order.
  bool unordered;
};

template <typename OpTy>
SelectionRules selectionRulesOf(OpTy op) {
  return {op.getScoring(),
          static_cast<int64_t>(op.getTopK()),
          op.getNormalizeTopK(),
          op.getRoutedScalingFactor().convertToFloat(),
          static_cast<int64_t>(op.getNGroup()),
          static_cast<int64_t>(op.getTopkGroup()),
          op.getGroupScore(),
          op.getNormalizeP().convertToFloat(),
          op.getSparsemixerEps().convertToFloat(),
          op.getUnordered()};
}

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
inline void buildGroupMask(Emitter &e, const SelectionRules &rules,
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
    Value group = e.divIndex(expert, e.index(groupSize));
    e.store(e.load(groupChosen, group), available, expert);
  });
}

/// Scratch of token-choice selection, allocated once outside the loops.
struct SelectionScratch {
  Value available; // [E] i1: experts the current token may still take
  GroupScratch groups;
};

/// Whether selection can be skipped: every expert is chosen (a dense
/// mixture) and the consumer takes them in any order. Sparsemixer's weights
/// depend on the slot order.
inline bool choosesAllUnordered(const SelectionRules &rules,
                                int64_t numExperts) {
  return rules.unordered && rules.topK == numExperts &&
         rules.scoring != Scoring::sparsemixer;
}

/// Sparsemixer's weight of `expert`, chosen next among the experts still
/// `available` (docs/FAMILY-RULES.md): the softmax, at the expert, of the
/// logits of the available experts within 2ε of its logit m, relative to
/// max(|s|, m).
inline Value buildSparsemixerWeight(
    Emitter &e, const SelectionRules &rules, int64_t numExperts,
    Value available, Value expert,
    function_ref<Value(Emitter &, Value)> logitAt) {
  OpBuilder &b = e.builder();
  Location loc = e.location();
  Value best = logitAt(e, expert);
  Value threshold = e.f32(2 * rules.sparsemixerEps);
  Value denominator = e.forEachCarrying(
      e.index(0), e.index(numExperts), ValueRange{e.f32(0)},
      [&](Emitter &e, Value x, ValueRange acc) -> SmallVector<Value> {
        Value logit = logitAt(e, x);
        Value factor = arith::MaximumFOp::create(
            b, loc, math::AbsFOp::create(b, loc, logit), best);
        Value relative =
            arith::DivFOp::create(b, loc, e.sub(best, logit), factor);
        Value masked =
            e.cmpf(arith::CmpFPredicate::OGT, relative, threshold);
        Value kept = e.andi(e.load(available, x),
                            e.cmpi(arith::CmpIPredicate::eq, masked,
                                   e.boolean(false)));
        Value term = math::ExpOp::create(b, loc, e.sub(logit, best));
        return {e.select(kept, e.add(acc[0], term), acc[0])};
      })[0];
  return arith::DivFOp::create(b, loc, e.f32(1), denominator);
}

/// The selection's scratch, on the stack, or on the heap where the code
/// runs once per iteration of an enclosing loop (a tiled select), so that
/// the stack does not grow with the iterations.
inline SelectionScratch allocSelectionScratch(Emitter &e,
                                              const SelectionRules &rules,
                                              int64_t numExperts,
                                              bool onHeap = false) {
  Type i1 = e.builder().getI1Type();
  auto allocate = [&](int64_t size, Type type) -> Value {
    if (!onHeap)
      return e.stackAlloc({size}, type);
    return memref::AllocOp::create(e.builder(), e.location(),
                                   MemRefType::get({size}, type));
  };
  SelectionScratch scratch;
  if (choosesAllUnordered(rules, numExperts))
    return scratch;
  scratch.available = allocate(numExperts, i1);
  if (rules.nGroup > 1) {
    int64_t numGroups = rules.nGroup;
    scratch.groups.scores = allocate(numGroups, e.builder().getF32Type());
    scratch.groups.chosen = allocate(numGroups, i1);
  }
  return scratch;
}

/// Token choice for one token: it takes its `top_k` best allowed experts in
/// descending order, or, when `choosesAllUnordered`, expert j in slot j.
/// `scoreAt` reads the token's score for an expert.
inline void buildTokenSelection(Emitter &e, const SelectionRules &rules,
                                int64_t numExperts,
                                const SelectionBuffers &buffers,
                                const SelectionScratch &scratch, Value token,
                                function_ref<Value(Emitter &, Value)> scoreAt) {
  int64_t topK = rules.topK;
  bool sparsemixer = rules.scoring == Scoring::sparsemixer;
  bool sumNorm = rules.normalizeP == 1.0f;
  // Called while `expert` is still available. `sum` accumulates w^p.
  auto take = [&](Emitter &e, Value slot, Value expert, Value sum) {
    e.store(e.toI32(expert), buffers.ids, {token, slot});
    Value weight = sparsemixer
                       ? buildSparsemixerWeight(e, rules, numExperts,
                                                scratch.available, expert,
                                                scoreAt)
                       : scoreAt(e, expert);
    e.store(weight, buffers.weights, {token, slot});
    if (sumNorm)
      return e.add(sum, weight);
    return e.add(sum, math::PowFOp::create(e.builder(), e.location(), weight,
                                           e.f32(rules.normalizeP)));
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
          Value sum = take(e, slot, expert, carried[0]);
          e.store(e.boolean(false), available, expert);
          return {sum};
        })[0];
  }

  Value factor = e.f32(rules.routedScalingFactor);
  if (rules.normalizeTopK) {
    Value norm = sumNorm ? sum
                         : math::PowFOp::create(e.builder(), e.location(), sum,
                                                e.f32(1 / rules.normalizeP));
    factor = arith::DivFOp::create(e.builder(), e.location(), factor, norm);
  }
  e.forEach(e.index(0), e.index(topK), [&](Emitter &e, Value slot) {
    Value weight = e.load(buffers.weights, {token, slot});
    e.store(e.mul(weight, factor), buffers.weights, {token, slot});
  });
}

/// What `moe.refine` reads and writes, as buffers.
struct RefineBuffers {
  Value parentIds, parentWeights; // [T, P] i32 and f32
  Value selectionBiases;          // [parents, E] or null
  Value ids, weights;             // [T, P · top_k] i32 and f32
};

/// `moe.refine` for parent slot `slot` of token `token`. A kept slot (its
/// parent `p` >= 0) is routed among p's own experts: `scoreParent` scores
/// the token with p's router (p as an index), `scoreAt` then reads those
/// scores, the token's selection writes the slot's block of `top_k`
/// columns, and the block is composed with the parent (ids offset by
/// `p · E`, weights scaled by the parent's). A dropped slot gives `top_k`
/// dropped slots (-1, weight 0).
inline void
buildRefinedSlot(Emitter &e, const SelectionRules &rules, int64_t numExperts,
                 const RefineBuffers &buffers, const SelectionScratch &scratch,
                 Value token, Value slot,
                 function_ref<void(Emitter &, Value)> scoreParent,
                 function_ref<Value(Emitter &, Value)> scoreAt) {
  OpBuilder &b = e.builder();
  Value parent = e.load(buffers.parentIds, {token, slot});
  Value first = e.mul(slot, e.index(rules.topK));
  Value numTokens =
      memref::DimOp::create(b, e.location(), buffers.parentIds, 0);
  auto block = [&](Value buffer) {
    return e.subview(buffer, {b.getIndexAttr(0), first},
                     {numTokens, b.getIndexAttr(rules.topK)});
  };
  SelectionBuffers slotBlock;
  slotBlock.ids = block(buffers.ids);
  slotBlock.weights = block(buffers.weights);
  auto forEachChild = [&](Emitter &e,
                          function_ref<void(Emitter &, Value)> body) {
    e.forEach(e.index(0), e.index(rules.topK), body);
  };
  e.ifThenElse(
      e.cmpi(arith::CmpIPredicate::sge, parent, e.i32(0)),
      [&](Emitter &e) {
        Value p = e.toIndex(parent);
        scoreParent(e, p);
        if (buffers.selectionBiases)
          slotBlock.selectionBias = e.sliceAt(buffers.selectionBiases, p);
        buildTokenSelection(e, rules, numExperts, slotBlock, scratch, token,
                            scoreAt);
        Value offset = e.mul(parent, e.i32(numExperts));
        Value parentWeight = e.load(buffers.parentWeights, {token, slot});
        forEachChild(e, [&](Emitter &e, Value child) {
          SmallVector<Value> at = {token, child};
          e.store(e.add(e.load(slotBlock.ids, at), offset), slotBlock.ids,
                  at);
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

/// The token and the slot within it (indices) that a plan row serving
/// flat slot `slot` (i64, `t·K + j` with K `slotsPerToken`) reads; a
/// padding row's -1 reads as slot 0 of token 0.
inline std::pair<Value, Value> planSlotOf(Emitter &e, Value slot,
                                          int64_t slotsPerToken) {
  Value clamped = e.toIndex(
      arith::MaxSIOp::create(e.builder(), e.location(), slot, e.i64(0)));
  Value perToken = e.index(slotsPerToken);
  return {e.divIndex(clamped, perToken), e.remIndex(clamped, perToken)};
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

/// The plan's segment offsets (`[E + 1]` i64) from the histogram (`[E]`
/// i64): a prefix sum of the counts, each rounded up to `rowTile`.
inline void buildPaddedOffsets(Emitter &e, Value counts, Value offsets,
                               int64_t numExperts, int64_t rowTile) {
  e.store(e.i64(0), offsets, e.index(0));
  e.forEach(e.index(0), e.index(numExperts), [&](Emitter &e, Value x) {
    Value count = e.load(counts, x);
    Value padded = e.mul(arith::DivUIOp::create(e.builder(), e.location(),
                                                e.add(count, e.i64(rowTile - 1)),
                                                e.i64(rowTile)),
                         e.i64(rowTile));
    e.store(e.add(e.load(offsets, x), padded), offsets, e.add(x, e.index(1)));
  });
}

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_COMMON_ROUTING_H

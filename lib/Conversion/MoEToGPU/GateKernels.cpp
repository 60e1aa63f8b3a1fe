//===- GateKernels.cpp - moe.gate as GPU kernels --------------------------===//
//
// Part of the moe-mlir project.
//
// Routing in f32, SPEC §1 steps 1-7:
//   gate_logits    one thread per (token, expert): the router dot product;
//   gate_select    one thread per token: softmax or sigmoid, then the
//                  selection of Routing.h (groups, top-k, normalization);
//   gate_capacity  one block per expert: a scan in slot-major token order
//                  drops the slots past the capacity;
// and for expert choice, after the softmax:
//   gate_expert_choice  one thread per (token, expert): the token's rank
//                  among the expert's scores decides whether it is taken.
// moe.refine (an inner level of a hierarchy) is one kernel:
//   refine_select  one thread per (token, parent slot): the parent's router
//                  logits, softmax or sigmoid, then Routing.h's refined
//                  slot (selection composed with the parent).
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"

#include "../Common/Routing.h"

#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

using namespace mlir;
using namespace mlir::moe;

/// Whether token `other`'s value ranks before token `token`'s in an
/// expert's choice, in the order the CPU's repeated argmax takes them:
/// numbers first, larger first, ties and NaNs to the lower token.
static Value ranksBefore(Emitter &e, Value other, Value otherValue,
                         Value token, Value value) {
  Value otherNaN = e.cmpf(arith::CmpFPredicate::UNO, otherValue, otherValue);
  Value isNaN = e.cmpf(arith::CmpFPredicate::UNO, value, value);
  Value lower = e.cmpi(arith::CmpIPredicate::ult, other, token);
  Value greater = e.cmpf(arith::CmpFPredicate::OGT, otherValue, value);
  Value equal = e.cmpf(arith::CmpFPredicate::OEQ, otherValue, value);
  Value numberBeforeNaN =
      e.andi(isNaN, e.cmpi(arith::CmpIPredicate::eq, otherNaN,
                           e.boolean(false)));
  Value tieBreak = e.andi(lower, e.ori(equal, e.andi(isNaN, otherNaN)));
  return e.ori(e.ori(greater, numberBeforeNaN), tieBreak);
}

/// `init + x[token] · router[row..., :]` in f32: one router logit.
static Value buildRouterLogit(Emitter &e, Value input, Value token,
                              Value router, ArrayRef<Value> row, Value init) {
  auto routerType = cast<MemRefType>(router.getType());
  int64_t hidden = routerType.getDimSize(routerType.getRank() - 1);
  return e.forEachCarrying(
      e.index(0), e.index(hidden), ValueRange{init},
      [&](Emitter &e, Value h, ValueRange acc) -> SmallVector<Value> {
        SmallVector<Value> at(row);
        at.push_back(h);
        return {e.multiplyAdd(acc[0], e.load(input, {token, h}),
                              e.load(router, at))};
      })[0];
}

/// Row `row` of `scores` (`[rows, E]` logits) turned into scores in place
/// (softmax or sigmoid; sparsemixer keeps the logits).
static void buildScoreRow(Emitter &e, Scoring scoring, Value scores,
                          Value row, int64_t numExperts) {
  if (scoring == Scoring::softmax)
    return buildSoftmaxRow(e, scores, row, numExperts);
  // Sparsemixer weighs by the logits themselves (Routing.h).
  if (scoring == Scoring::sparsemixer)
    return;
  e.forEach(e.index(0), e.index(numExperts), [&](Emitter &e, Value expert) {
    e.store(e.sigmoid(e.load(scores, {row, expert})), scores, {row, expert});
  });
}

namespace {
struct LowerGateToKernels : KernelPattern<GateOp> {
  using KernelPattern::KernelPattern;

  LogicalResult lower(GateOp op, KernelBuilder &kernels,
                      PatternRewriter &rewriter) const override {
    Emitter e = kernels.host();
    Type f32 = rewriter.getF32Type();
    int64_t numExperts =
        cast<RankedTensorType>(op.getRouter().getType()).getDimSize(0);
    Value input = e.readBuffer(op.getInput());
    Value router = e.readBuffer(op.getRouter());
    Value routerBias =
        e.readOptionalBuffer(op.getRouterBias());
    Value numTokens = memref::DimOp::create(rewriter, op.getLoc(), input, 0);
    Value experts = e.index(numExperts);

    auto idsType = cast<RankedTensorType>(op.getIds().getType());
    auto weightsType = cast<RankedTensorType>(op.getWeights().getType());
    SmallVector<Value> dynamicTokens = dynamicSizes(idsType, {numTokens, {}});
    SelectionBuffers buffers;
    if (op.getSelectionBias())
      buffers.selectionBias = e.readBuffer(op.getSelectionBias());
    buffers.ids = resultBuffer(rewriter, kernels, op.getIds(), dynamicTokens);
    buffers.weights =
        resultBuffer(rewriter, kernels, op.getWeights(), dynamicTokens);
    Value scores = kernels.deviceBuffer({ShapedType::kDynamic, numExperts},
                                        f32, numTokens);
    buffers.scores = scores;

    kernels.launchForEach(
        "gate_logits", e.mul(numTokens, experts), [&](Emitter &e, Value item) {
          Value token = e.divIndex(item, e.index(numExperts));
          Value expert = e.remIndex(item, e.index(numExperts));
          Value init =
              routerBias ? e.toF32(e.load(routerBias, expert)) : e.f32(0);
          e.store(buildRouterLogit(e, input, token, router, expert, init),
                  scores, {token, expert});
        });

    if (op.getRouting() == Routing::expert_choice) {
      buildExpertChoice(kernels, op, numTokens, numExperts, buffers);
    } else {
      SelectionRules rules = selectionRulesOf(op);
      kernels.launchForEach("gate_select", numTokens, [&](Emitter &e,
                                                          Value token) {
        buildScoreRow(e, rules.scoring, scores, token, numExperts);
        SelectionScratch scratch = allocSelectionScratch(e, rules, numExperts);
        buildTokenSelection(e, rules, numExperts, buffers, scratch, token,
                            [&](Emitter &e, Value expert) {
                              return e.load(scores, {token, expert});
                            });
      });
      if (op.getCapacityFactor().convertToDouble() > 0)
        buildCapacityDrops(kernels, op, numTokens, numExperts, buffers);
    }
    rewriter.replaceOp(op, {e.asTensor(buffers.ids, idsType),
                            e.asTensor(buffers.weights, weightsType)});
    return success();
  }

  /// Each expert keeps its first C slots in slot-major token order
  /// (slot 0 of every token, then slot 1, ...); later ones are dropped.
  static void buildCapacityDrops(KernelBuilder &kernels, GateOp op,
                                 Value numTokens, int64_t numExperts,
                                 const SelectionBuffers &buffers) {
    Emitter e = kernels.host();
    int64_t topK = op.getTopK();
    Value capacity =
        buildCapacity(e, op.getCapacityFactor().convertToDouble(), numTokens,
                      topK, numExperts);
    auto slotAt = [&](Emitter &e, Value item) -> SmallVector<Value> {
      return {e.remIndex(item, numTokens), e.divIndex(item, numTokens)};
    };
    buildExpertScan(
        kernels, "gate_capacity", numExperts, e.mul(numTokens, e.index(topK)),
        [&](Emitter &e, Value item) {
          return e.load(buffers.ids, slotAt(e, item));
        },
        [&](Emitter &e, Value, Value item, Value rank) {
          e.ifThen(e.cmpi(arith::CmpIPredicate::uge, rank, capacity),
                   [&](Emitter &e) {
                     SmallVector<Value> slot = slotAt(e, item);
                     e.store(e.i32(-1), buffers.ids, slot);
                     e.store(e.f32(0), buffers.weights, slot);
                   });
        },
        nullptr);
  }

  /// Softmax per token, then expert `x` takes token `t` when fewer than
  /// C = min(ceil(capacity_factor · T / E), T) tokens rank before it.
  static void buildExpertChoice(KernelBuilder &kernels, GateOp op,
                                Value numTokens, int64_t numExperts,
                                const SelectionBuffers &buffers) {
    Emitter e = kernels.host();
    Value scores = buffers.scores;
    kernels.launchForEach("gate_softmax", numTokens,
                          [&](Emitter &e, Value token) {
                            buildSoftmaxRow(e, scores, token, numExperts);
                          });
    Value capacity = e.minIndex(
        buildCapacity(e, op.getCapacityFactor().convertToDouble(), numTokens,
                      /*slots=*/1, numExperts),
        numTokens);
    kernels.launchForEach(
        "gate_expert_choice", e.mul(numTokens, e.index(numExperts)),
        [&](Emitter &e, Value item) {
          Value token = e.divIndex(item, e.index(numExperts));
          Value expert = e.remIndex(item, e.index(numExperts));
          Value value = e.load(scores, {token, expert});
          Value rank = e.forEachCarrying(
              e.index(0), numTokens, ValueRange{e.index(0)},
              [&](Emitter &e, Value other, ValueRange n) -> SmallVector<Value> {
                Value before =
                    ranksBefore(e, other, e.load(scores, {other, expert}),
                                token, value);
                return {e.select(before, e.add(n[0], e.index(1)), n[0])};
              })[0];
          Value taken = e.cmpi(arith::CmpIPredicate::ult, rank, capacity);
          e.store(e.select(taken, e.toI32(expert), e.i32(-1)), buffers.ids,
                  {token, expert});
          e.store(e.select(taken, value, e.f32(0)), buffers.weights,
                  {token, expert});
        });
  }
};

/// moe.refine: each thread routes one (token, parent slot) among the
/// parent's experts, its logits in its own row of a `[T · P, E]` buffer.
struct LowerRefineToKernels : KernelPattern<RefineOp> {
  using KernelPattern::KernelPattern;

  LogicalResult lower(RefineOp op, KernelBuilder &kernels,
                      PatternRewriter &rewriter) const override {
    Emitter e = kernels.host();
    Location loc = op.getLoc();
    int64_t numExperts =
        cast<RankedTensorType>(op.getRouter().getType()).getDimSize(1);
    SelectionRules rules = selectionRulesOf(op);
    Value input = e.readBuffer(op.getInput());
    Value router = e.readBuffer(op.getRouter());
    Value routerBias =
        e.readOptionalBuffer(op.getRouterBias());
    RefineBuffers buffers;
    buffers.parentIds = e.readBuffer(op.getParentIds());
    buffers.parentWeights = e.readBuffer(op.getParentWeights());
    if (op.getSelectionBias())
      buffers.selectionBiases = e.readBuffer(op.getSelectionBias());
    Value numTokens = memref::DimOp::create(rewriter, loc, buffers.parentIds, 0);
    Value parentSlots =
        memref::DimOp::create(rewriter, loc, buffers.parentIds, 1);
    Value numSlots = e.mul(numTokens, parentSlots);

    SmallVector<Value> sizes = dynamicSizes(
        op.getIds().getType(), {numTokens, e.mul(parentSlots,
                                                 e.index(rules.topK))});
    buffers.ids = resultBuffer(rewriter, kernels, op.getIds(), sizes);
    buffers.weights = resultBuffer(rewriter, kernels, op.getWeights(), sizes);
    Value scores = kernels.deviceBuffer({ShapedType::kDynamic, numExperts},
                                        rewriter.getF32Type(), numSlots);

    kernels.launchForEach("refine_select", numSlots, [&](Emitter &e,
                                                         Value item) {
      Value token = e.divIndex(item, parentSlots);
      Value slot = e.remIndex(item, parentSlots);
      SelectionScratch scratch = allocSelectionScratch(e, rules, numExperts);
      buildRefinedSlot(
          e, rules, numExperts, buffers, scratch, token, slot,
          [&](Emitter &e, Value parent) {
            e.forEach(e.index(0), e.index(numExperts), [&](Emitter &e,
                                                           Value expert) {
              Value init = routerBias
                               ? e.toF32(e.load(routerBias, {parent, expert}))
                               : e.f32(0);
              e.store(buildRouterLogit(e, input, token, router,
                                       {parent, expert}, init),
                      scores, {item, expert});
            });
            buildScoreRow(e, rules.scoring, scores, item, numExperts);
          },
          [&](Emitter &e, Value expert) {
            return e.load(scores, {item, expert});
          });
    });
    rewriter.replaceOp(op, {e.asTensor(buffers.ids, op.getIds().getType()),
                            e.asTensor(buffers.weights,
                                       op.getWeights().getType())});
    return success();
  }
};
} // namespace

void mlir::moe::populateGateKernelPatterns(RewritePatternSet &patterns,
                                           const GPULoweringOptions &options) {
  patterns.add<LowerGateToKernels, LowerRefineToKernels>(
      patterns.getContext(), options);
}

//===- PlanKernels.cpp - moe.dispatch as GPU kernels ----------------------===//
//
// Part of the moe-mlir project.
//
// The routing plan in four kernels on device buffers: fill (every row and
// slot unused), count (one block per expert), offsets (one thread: the
// padded prefix sum of Routing.h), place (one block per expert, a stable
// scan in token order). The plan's `slots` buffer is sized for the most
// rows any routing of T tokens can need, `T·K + min(E, T·K)·(row_tile - 1)`
// rounded up to the row tile, so that no kernel waits for the host: rows
// from `offsets[E]` on are never read.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"

#include "../Common/Routing.h"

#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

using namespace mlir;
using namespace mlir::moe;

void mlir::moe::buildExpertScan(
    KernelBuilder &kernels, StringRef name, int64_t numExperts, Value count,
    function_ref<Value(Emitter &, Value)> expertOf,
    function_ref<void(Emitter &, Value, Value, Value)> onMatch,
    function_ref<void(Emitter &, Value, Value)> onTotal) {
  Emitter host = kernels.host();
  Type index = host.builder().getIndexType();
  kernels.launch(
      name, host.index(numExperts), {{{kBlockThreads + 1}, index}},
      [&](Emitter &e, const KernelThread &t) {
        Value firstRanks = t.shared[0];
        Value expert = e.toI32(t.blockX);
        Value chunk = e.ceilDivIndex(count, e.index(kBlockThreads));
        Value begin = e.minIndex(e.mul(t.thread, chunk), count);
        Value end = e.minIndex(e.add(begin, chunk), count);
        auto matches = [&](Emitter &e, Value item) {
          return e.cmpi(arith::CmpIPredicate::eq, expertOf(e, item), expert);
        };
        auto countIf = [&](Emitter &e, Value cond, Value n) {
          return e.select(cond, e.add(n, e.index(1)), n);
        };
        Value mine = e.forEachCarrying(
            begin, end, ValueRange{e.index(0)},
            [&](Emitter &e, Value item, ValueRange n) -> SmallVector<Value> {
              return {countIf(e, matches(e, item), n[0])};
            })[0];
        e.store(mine, firstRanks, t.thread);
        t.barrier(e);
        Value isFirst = e.cmpi(arith::CmpIPredicate::eq, t.thread, e.index(0));
        e.ifThen(isFirst, [&](Emitter &e) {
          Value total = e.forEachCarrying(
              e.index(0), e.index(kBlockThreads), ValueRange{e.index(0)},
              [&](Emitter &e, Value i, ValueRange sum) -> SmallVector<Value> {
                Value n = e.load(firstRanks, i);
                e.store(sum[0], firstRanks, i);
                return {e.add(sum[0], n)};
              })[0];
          e.store(total, firstRanks, e.index(kBlockThreads));
        });
        t.barrier(e);
        if (onTotal)
          e.ifThen(isFirst, [&](Emitter &e) {
            onTotal(e, t.blockX, e.load(firstRanks, e.index(kBlockThreads)));
          });
        if (!onMatch)
          return;
        e.forEachCarrying(
            begin, end, ValueRange{e.load(firstRanks, t.thread)},
            [&](Emitter &e, Value item, ValueRange rank) -> SmallVector<Value> {
              Value match = matches(e, item);
              e.ifThen(match, [&](Emitter &e) {
                onMatch(e, t.blockX, item, rank[0]);
              });
              return {countIf(e, match, rank[0])};
            });
      });
}

namespace {
struct LowerDispatchToKernels : KernelPattern<DispatchOp> {
  using KernelPattern::KernelPattern;

  /// moe-lower-to-gpu checked that the plan pads to the kernels' row tile.
  LogicalResult lower(DispatchOp op, KernelBuilder &kernels,
                      PatternRewriter &rewriter) const override {
    int64_t rowTile = op.getRowTile();
    Emitter e = kernels.host();
    int64_t numExperts = op.getNumExperts();
    Value ids = e.readBuffer(op.getIds());
    Value numTokens = memref::DimOp::create(rewriter, op.getLoc(), ids, 0);
    Value slotsPerToken = memref::DimOp::create(rewriter, op.getLoc(), ids, 1);
    Value numSlots = e.mul(numTokens, slotsPerToken);
    // The most rows a plan can take: every kept slot, plus the padding of
    // each expert that has any.
    Value padding = e.mul(e.minIndex(e.index(numExperts), numSlots),
                          e.index(rowTile - 1));
    Value tiles = arith::CeilDivUIOp::create(
        rewriter, op.getLoc(), e.add(numSlots, padding), e.index(rowTile));
    Value maxRows = e.mul(tiles, e.index(rowTile));

    Value counts = resultBuffer(rewriter, kernels, op.getCounts(), {});
    Value offsets = resultBuffer(rewriter, kernels, op.getOffsets(), {});
    auto slotsType = cast<RankedTensorType>(op.getSlots().getType());
    Value slots = resultBuffer(rewriter, kernels, op.getSlots(),
                               dynamicSizes(slotsType, {maxRows}));
    auto slotRowsType = cast<RankedTensorType>(op.getSlotRows().getType());
    Value slotRows =
        resultBuffer(rewriter, kernels, op.getSlotRows(),
                     dynamicSizes(slotRowsType, {numTokens, slotsPerToken}));
    auto slotAt = [&](Emitter &e, Value item) -> SmallVector<Value> {
      return {e.divIndex(item, slotsPerToken),
              e.remIndex(item, slotsPerToken)};
    };

    kernels.launchForEach(
        "plan_fill", arith::MaxUIOp::create(rewriter, op.getLoc(), maxRows,
                                            numSlots),
        [&](Emitter &e, Value item) {
          e.ifThen(e.cmpi(arith::CmpIPredicate::ult, item, maxRows),
                   [&](Emitter &e) { e.store(e.i64(-1), slots, item); });
          e.ifThen(e.cmpi(arith::CmpIPredicate::ult, item, numSlots),
                   [&](Emitter &e) {
                     e.store(e.i64(-1), slotRows, slotAt(e, item));
                   });
        });
    auto expertOf = [&](Emitter &e, Value item) {
      return e.load(ids, slotAt(e, item));
    };
    buildExpertScan(kernels, "plan_count", numExperts, numSlots, expertOf,
                    nullptr, [&](Emitter &e, Value expert, Value total) {
                      e.store(e.toI64(total), counts, expert);
                    });
    kernels.launch("plan_offsets", e.index(1), {},
                   [&](Emitter &e, const KernelThread &t) {
                     e.ifThen(e.cmpi(arith::CmpIPredicate::eq, t.thread,
                                     e.index(0)),
                              [&](Emitter &e) {
                                buildPaddedOffsets(e, counts, offsets,
                                                   numExperts, rowTile);
                              });
                   });
    buildExpertScan(
        kernels, "plan_place", numExperts, numSlots, expertOf,
        [&](Emitter &e, Value expert, Value item, Value rank) {
          Value row = e.add(e.load(offsets, expert), e.toI64(rank));
          e.store(e.toI64(item), slots, e.toIndex(row));
          e.store(row, slotRows, slotAt(e, item));
        },
        nullptr);

    rewriter.replaceOp(op, {e.asTensor(counts, op.getCounts().getType()),
                            e.asTensor(offsets, op.getOffsets().getType()),
                            e.asTensor(slots, slotsType),
                            e.asTensor(slotRows, slotRowsType)});
    return success();
  }
};
} // namespace

void mlir::moe::populatePlanKernelPatterns(RewritePatternSet &patterns,
                                           const GPULoweringOptions &options) {
  patterns.add<LowerDispatchToKernels>(patterns.getContext(), options);
}

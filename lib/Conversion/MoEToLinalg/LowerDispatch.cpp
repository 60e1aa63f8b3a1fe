//===- LowerDispatch.cpp - moe.dispatch to a run-time routing plan --------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "../Common/Routing.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOELOWERDISPATCH
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
struct LowerDispatch : OpRewritePattern<DispatchOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(DispatchOp op,
                                PatternRewriter &rewriter) const override {
    Emitter e(rewriter, op.getLoc());
    int64_t numExperts = op.getNumExperts();
    int64_t rowTile = op.getRowTile();
    Value ids = e.readBuffer(op.getIds());
    Value numTokens = memref::DimOp::create(rewriter, op.getLoc(), ids, 0);
    Value slotsPerToken = memref::DimOp::create(rewriter, op.getLoc(), ids, 1);
    auto forEachSlot = [&](function_ref<void(Emitter &, Value, Value, Value)>
                               body) {
      e.forEach(e.index(0), numTokens, [&](Emitter &e, Value token) {
        e.forEach(e.index(0), slotsPerToken, [&](Emitter &e, Value slot) {
          body(e, token, slot, e.load(ids, {token, slot}));
        });
      });
    };
    auto isKept = [](Emitter &e, Value expert) {
      return e.cmpi(arith::CmpIPredicate::sge, expert, e.i32(0));
    };

    // The histogram.
    auto countsType = cast<RankedTensorType>(op.getCounts().getType());
    Value counts = e.alloc(countsType, {});
    e.forEach(e.index(0), e.index(numExperts), [&](Emitter &e, Value x) {
      e.store(e.i64(0), counts, x);
    });
    forEachSlot([&](Emitter &e, Value, Value, Value expert) {
      e.ifThen(isKept(e, expert), [&](Emitter &e) {
        Value x = e.toIndex(expert);
        e.store(e.add(e.load(counts, x), e.i64(1)), counts, x);
      });
    });

    // Segment offsets, each segment rounded up to the row tile.
    auto offsetsType = cast<RankedTensorType>(op.getOffsets().getType());
    Value offsets = e.alloc(offsetsType, {});
    buildPaddedOffsets(e, counts, offsets, numExperts, rowTile);

    // A stable counting sort of the slots into their experts' segments.
    Value numRows = e.toIndex(e.load(offsets, e.index(numExperts)));
    auto slotsType = cast<RankedTensorType>(op.getSlots().getType());
    SmallVector<Value> dynamicRows;
    if (slotsType.isDynamicDim(0))
      dynamicRows.push_back(numRows);
    Value slots = e.alloc(slotsType, dynamicRows);
    e.forEach(e.index(0), numRows, [&](Emitter &e, Value row) {
      e.store(e.i64(-1), slots, row);
    });
    Value cursor = e.stackAlloc({numExperts}, rewriter.getI64Type());
    e.forEach(e.index(0), e.index(numExperts), [&](Emitter &e, Value x) {
      e.store(e.load(offsets, x), cursor, x);
    });
    auto slotRowsType = cast<RankedTensorType>(op.getSlotRows().getType());
    SmallVector<Value> dynamicSlotDims;
    if (slotRowsType.isDynamicDim(0))
      dynamicSlotDims.push_back(numTokens);
    if (slotRowsType.isDynamicDim(1))
      dynamicSlotDims.push_back(slotsPerToken);
    Value slotRows = e.alloc(slotRowsType, dynamicSlotDims);
    forEachSlot([&](Emitter &e, Value token, Value slot, Value expert) {
      e.ifThenElse(
          isKept(e, expert),
          [&](Emitter &e) {
            Value x = e.toIndex(expert);
            Value row = e.load(cursor, x);
            e.store(e.add(row, e.i64(1)), cursor, x);
            Value flatSlot = e.add(e.mul(token, slotsPerToken), slot);
            e.store(e.toI64(flatSlot), slots, e.toIndex(row));
            e.store(row, slotRows, {token, slot});
          },
          [&](Emitter &e) { e.store(e.i64(-1), slotRows, {token, slot}); });
    });

    rewriter.replaceOp(op, {e.asTensor(counts, countsType),
                            e.asTensor(offsets, offsetsType),
                            e.asTensor(slots, slotsType),
                            e.asTensor(slotRows, slotRowsType)});
    return success();
  }
};

struct MoELowerDispatchPass
    : moe::impl::MoELowerDispatchBase<MoELowerDispatchPass> {
  void runOnOperation() override {
    if (failed(applyLowering<LowerDispatch>(getOperation())))
      signalPassFailure();
  }
};
} // namespace

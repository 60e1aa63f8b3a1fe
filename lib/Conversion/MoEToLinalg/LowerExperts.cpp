//===- LowerExperts.cpp - Expert FFNs to register-tiled kernels ----------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "Activation.h"
#include "DotTile.h"
#include "Emitter.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Math/IR/Math.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOELOWEREXPERTS
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

//===----------------------------------------------------------------------===//
// The routed experts, at buffer level
//===----------------------------------------------------------------------===//

namespace {
struct ExpertKernelOptions {
  bool fuseGather;
  bool fuseActivation;
  bool fuseCombine;
  bool parallel;
};

/// The buffers an expert loop reads.
struct ExpertBuffers {
  Value input;          // [T, H] data type
  Value slots;          // [rows] i32
  Value offsets;        // [E + 1] i32
  Value gate, up, down; // [E, F, H], [E, F, H], [E, H, F]; gate may be null
  int64_t slotsPerToken;
  Activation activation;
};

/// Receives the down projection of plan row `row`, columns
/// `[column, column + sums.size())`.
using DownEpilogue =
    std::function<void(Emitter &, Value row, Value column, ArrayRef<Value>)>;
} // namespace

/// Input rows per register tile; weight rows per tile are kTileWeightRows.
static constexpr int64_t kTileRows = 4;
static constexpr int64_t kTileWeightRows = 4;

static Value f32Buffer(Emitter &e, ArrayRef<int64_t> shape,
                       ValueRange dynamicSizes) {
  return memref::AllocOp::create(
      e.builder(), e.location(),
      MemRefType::get(shape, e.builder().getF32Type()), dynamicSizes);
}

/// Calls `tile` over `numRows` × `numColumns` in tiles of kTileRows rows and
/// `columnsPerTile` columns; the last tile of rows takes the 1 to
/// kTileRows - 1 rows left, so that few-row experts (decode) still read
/// each weight row once; single columns cover the column remainder. The
/// column loop is outside: a tile's weight rows stay in cache while every
/// input row streams past them. With `parallel` the column tiles are split
/// across threads: each writes its own columns.
static void forEachTile(
    Emitter &e, Value numRows, int64_t numColumns, int64_t columnsPerTile,
    bool parallel,
    function_ref<void(Emitter &, ArrayRef<Value>, ArrayRef<Value>)> tile) {
  int64_t mainColumns = numColumns / columnsPerTile * columnsPerTile;
  Value rowStep = e.index(kTileRows);
  Value mainRows = e.mul(
      arith::DivUIOp::create(e.builder(), e.location(), numRows, rowStep),
      rowStep);
  auto overRows = [&](Emitter &e, ArrayRef<Value> columns) {
    e.forEachStep(e.index(0), mainRows, rowStep, [&](Emitter &e, Value i0) {
      SmallVector<Value> rows;
      for (int64_t m = 0; m < kTileRows; ++m)
        rows.push_back(e.add(i0, e.index(m)));
      tile(e, rows, columns);
    });
    Value left = e.sub(numRows, mainRows);
    std::function<void(Emitter &, int64_t)> remainder = [&](Emitter &e,
                                                             int64_t count) {
      if (count == 0)
        return;
      e.ifThenElse(
          e.cmpi(arith::CmpIPredicate::eq, left, e.index(count)),
          [&](Emitter &e) {
            SmallVector<Value> rows;
            for (int64_t m = 0; m < count; ++m)
              rows.push_back(e.add(mainRows, e.index(m)));
            tile(e, rows, columns);
          },
          [&](Emitter &e) { remainder(e, count - 1); });
    };
    remainder(e, kTileRows - 1);
  };
  auto columnsFrom = [&](Emitter &e, Value first, int64_t count) {
    SmallVector<Value> columns;
    for (int64_t n = 0; n < count; ++n)
      columns.push_back(e.add(first, e.index(n)));
    return columns;
  };
  auto columnTile = [&](Emitter &e, Value c0) {
    overRows(e, columnsFrom(e, c0, columnsPerTile));
  };
  if (mainColumns > 0 && parallel)
    e.parallelForEachStep(e.index(0), e.index(mainColumns),
                          e.index(columnsPerTile), columnTile);
  else if (mainColumns > 0)
    e.forEachStep(e.index(0), e.index(mainColumns), e.index(columnsPerTile),
                  columnTile);
  if (mainColumns < numColumns)
    e.forEach(e.index(mainColumns), e.index(numColumns),
              [&](Emitter &e, Value column) { overRows(e, {column}); });
}

namespace {
/// One FFN's weights: row `f` of a projection is `buffer[prefix..., f, :]`,
/// so the stacked routed experts and the 2-D shared expert read alike.
struct FFNWeights {
  Value gate, up, down; // gate may be null
  SmallVector<Value> prefix;
};
} // namespace

/// The FFN over `rows` input rows, in register tiles (DotTile.h):
///   hidden[rows, F] = act(in · Wg^T) ⊙ (in · Wu^T)   (or act(in · Wu^T))
///   down[rows, H]   = hidden · Wd^T, handed to `epilogue` tile by tile with
///                     the row relative to the first.
/// With `fuseActivation` a tile of gate and up sums goes straight to
/// `act(gate) ⊙ up`, so only the product is stored; otherwise both
/// projections are stored whole first.
static void buildFFN(Emitter &e, Value rows,
                     function_ref<DotRow(Emitter &, Value)> inputRow,
                     const FFNWeights &weights, Activation activation,
                     const ExpertKernelOptions &options,
                     const DownEpilogue &epilogue) {
  bool fuseActivation = options.fuseActivation;
  auto upType = cast<MemRefType>(weights.up.getType());
  int64_t intermediate = upType.getDimSize(upType.getRank() - 2);
  int64_t hidden = upType.getDimSize(upType.getRank() - 1);
  bool gated = weights.gate != nullptr;
  auto weightRow = [&](Value buffer, Value row) -> DotRow {
    SmallVector<Value> prefix(weights.prefix);
    prefix.push_back(row);
    return {buffer, prefix};
  };

  Value activated = f32Buffer(e, {ShapedType::kDynamic, intermediate}, rows);
  Value upWhole, gateWhole;
  if (!fuseActivation) {
    upWhole = f32Buffer(e, {ShapedType::kDynamic, intermediate}, rows);
    if (gated)
      gateWhole = f32Buffer(e, {ShapedType::kDynamic, intermediate}, rows);
  }
  // A gated tile pairs each up row with its gate row.
  int64_t columnsPerTile = gated ? kTileWeightRows / 2 : kTileWeightRows;
  forEachTile(
      e, rows, intermediate, columnsPerTile, options.parallel,
      [&](Emitter &e, ArrayRef<Value> tileRows, ArrayRef<Value> columns) {
        SmallVector<DotRow> lhs, rhs;
        for (Value i : tileRows)
          lhs.push_back(inputRow(e, i));
        for (Value f : columns)
          rhs.push_back(weightRow(weights.up, f));
        if (gated)
          for (Value f : columns)
            rhs.push_back(weightRow(weights.gate, f));
        SmallVector<Value> sums = emitDotTile(e, lhs, rhs, e.index(hidden));
        for (size_t m = 0; m < tileRows.size(); ++m) {
          for (size_t n = 0; n < columns.size(); ++n) {
            Value up = sums[m * rhs.size() + n];
            Value gate =
                gated ? sums[m * rhs.size() + columns.size() + n] : Value();
            SmallVector<Value> at = {tileRows[m], columns[n]};
            if (!fuseActivation) {
              e.store(up, upWhole, at);
              if (gated)
                e.store(gate, gateWhole, at);
              continue;
            }
            Value product =
                gated ? e.mul(applyActivation(e, activation, gate), up)
                      : applyActivation(e, activation, up);
            e.store(product, activated, at);
          }
        }
      });
  if (!fuseActivation) {
    SmallVector<Value> wholes = {upWhole};
    if (gated)
      wholes.push_back(gateWhole);
    SmallVector<AffineMap> maps(wholes.size() + 1, e.map(2, {0, 1}));
    e.genericInPlace(wholes, activated, maps, {kParallel, kParallel},
                     [&](Emitter &e, ValueRange args) {
                       if (!gated)
                         return applyActivation(e, activation, args[0]);
                       return e.mul(applyActivation(e, activation, args[1]),
                                    args[0]);
                     });
  }

  forEachTile(
      e, rows, hidden, kTileWeightRows, options.parallel,
      [&](Emitter &e, ArrayRef<Value> tileRows, ArrayRef<Value> columns) {
        SmallVector<DotRow> lhs, rhs;
        for (Value i : tileRows)
          lhs.push_back({activated, {i}});
        for (Value c : columns)
          rhs.push_back(weightRow(weights.down, c));
        SmallVector<Value> sums =
            emitDotTile(e, lhs, rhs, e.index(intermediate));
        for (size_t m = 0; m < tileRows.size(); ++m)
          epilogue(e, tileRows[m], columns.front(),
                   ArrayRef<Value>(sums).slice(m * columns.size(),
                                               columns.size()));
      });
}

/// Every routed expert's FFN over its plan segment; experts without rows
/// are skipped. With `fuseGather` the projections read x through the plan;
/// otherwise the segment's rows are first copied out. The epilogue gets
/// plan rows.
static void buildExpertLoop(Emitter &e, const ExpertBuffers &buffers,
                            const ExpertKernelOptions &options,
                            const DownEpilogue &epilogue) {
  auto upType = cast<MemRefType>(buffers.up.getType());
  int64_t numExperts = upType.getDimSize(0);
  int64_t hidden = upType.getDimSize(2);
  Value slotsPerToken = e.index(buffers.slotsPerToken);

  e.forEach(e.index(0), e.index(numExperts), [&](Emitter &e, Value expert) {
    Value start = e.toIndex(e.load(buffers.offsets, expert));
    Value end = e.toIndex(e.load(buffers.offsets, e.add(expert, e.index(1))));
    Value rows = e.sub(end, start);
    e.ifThen(e.cmpi(arith::CmpIPredicate::ugt, rows, e.index(0)),
             [&](Emitter &e) {
      // The token whose input row plan row `start + i` serves; padding rows
      // (-1) compute on token 0 and are never read.
      auto tokenOf = [&](Emitter &e, Value i) -> Value {
        Value slot = e.toIndex(e.load(buffers.slots, e.add(start, i)));
        Value clamped = arith::MaxSIOp::create(e.builder(), e.location(),
                                               slot, e.index(0));
        return arith::DivUIOp::create(e.builder(), e.location(), clamped,
                                      slotsPerToken);
      };
      Value gathered;
      if (!options.fuseGather) {
        gathered = f32Buffer(e, {ShapedType::kDynamic, hidden}, rows);
        e.genericInPlace(ValueRange{}, gathered, {e.map(2, {0, 1})},
                         {kParallel, kParallel},
                         [&](Emitter &e, ValueRange) {
                           Value token = tokenOf(e, e.loopIndex(0));
                           return e.toF32(e.load(buffers.input,
                                                 {token, e.loopIndex(1)}));
                         });
      }
      auto inputRow = [&](Emitter &e, Value i) -> DotRow {
        if (gathered)
          return {gathered, {i}};
        return {buffers.input, {tokenOf(e, i)}};
      };
      FFNWeights weights{buffers.gate, buffers.up, buffers.down, {expert}};
      buildFFN(e, rows, inputRow, weights, buffers.activation, options,
               [&](Emitter &e, Value row, Value column, ArrayRef<Value> sums) {
                 epilogue(e, e.add(start, row), column, sums);
               });
    });
  });
}

static ExpertBuffers readExpertBuffers(Emitter &e, ExpertOp op) {
  ExpertBuffers buffers;
  buffers.input = e.readBuffer(op.getInput());
  buffers.slots = e.readBuffer(op.getSlots());
  buffers.offsets = e.readBuffer(op.getOffsets());
  buffers.gate = op.getGateProj() ? e.readBuffer(op.getGateProj()) : Value();
  buffers.up = e.readBuffer(op.getUpProj());
  buffers.down = e.readBuffer(op.getDownProj());
  buffers.slotsPerToken = op.getSlotsPerToken();
  buffers.activation = op.getActivation();
  return buffers;
}

/// A moe.expert whose only user is a moe.combine is lowered together with it.
static bool isFusedIntoCombine(ExpertOp op) {
  return op->hasOneUse() && isa<CombineOp>(*op->getUsers().begin());
}

/// The buffer the lowered shared expert wrote, when combine is its only
/// reader: the routed experts then add into it in place of a copy.
static Value sharedOutputBuffer(CombineOp op, RankedTensorType type) {
  Value shared = op.getShared();
  if (!shared || !shared.hasOneUse() || shared.getType() != type)
    return Value();
  auto toTensor = shared.getDefiningOp<bufferization::ToTensorOp>();
  if (!toTensor || !toTensor.getWritable())
    return Value();
  return toTensor.getBuffer();
}

namespace {
/// moe.expert alone: every plan row's FFN output, written into its row.
struct LowerExpert : OpRewritePattern<ExpertOp> {
  LowerExpert(MLIRContext *context, ExpertKernelOptions options)
      : OpRewritePattern(context), options(options) {}

  LogicalResult matchAndRewrite(ExpertOp op,
                                PatternRewriter &rewriter) const override {
    if (options.fuseCombine && isFusedIntoCombine(op))
      return rewriter.notifyMatchFailure(op, "lowered with its combine");
    Emitter e(rewriter, op.getLoc());
    auto resultType = cast<RankedTensorType>(op.getOutput().getType());
    Value numRows = tensor::DimOp::create(rewriter, op.getLoc(), op.getSlots(), 0);
    SmallVector<Value> dynamicRows;
    if (resultType.isDynamicDim(0))
      dynamicRows.push_back(numRows);
    Value rows = e.alloc(resultType, dynamicRows);
    DownEpilogue epilogue = [&](Emitter &e, Value row, Value column,
                                ArrayRef<Value> sums) {
      for (size_t n = 0; n < sums.size(); ++n)
        e.store(sums[n], rows, {row, e.add(column, e.index(n))});
    };
    buildExpertLoop(e, readExpertBuffers(e, op), options, epilogue);
    rewriter.replaceOp(op, e.asTensor(rows, resultType));
    return success();
  }

  ExpertKernelOptions options;
};

/// moe.combine of a moe.expert: the down projection's epilogue scales each
/// tile's sums by the row's routing weight and adds them to its token's
/// output, so no `[rows, H]` expert output exists. Experts run in order, so
/// the sum is deterministic.
struct LowerExpertCombine : OpRewritePattern<CombineOp> {
  LowerExpertCombine(MLIRContext *context, ExpertKernelOptions options)
      : OpRewritePattern(context), options(options) {}

  LogicalResult matchAndRewrite(CombineOp op,
                                PatternRewriter &rewriter) const override {
    auto expert = op.getExpertOutput().getDefiningOp<ExpertOp>();
    if (!expert || !isFusedIntoCombine(expert))
      return rewriter.notifyMatchFailure(op, "not the only user of an expert");
    if (op.getShared() && op.getShared().getDefiningOp<SharedExpertOp>())
      return rewriter.notifyMatchFailure(op, "the shared expert goes first");
    Location loc = op.getLoc();
    Emitter e(rewriter, loc);
    auto resultType = cast<RankedTensorType>(op.getOutput().getType());
    int64_t hidden = resultType.getDimSize(1);
    Value numTokens = tensor::DimOp::create(rewriter, loc, op.getSlotRows(), 0);
    SmallVector<Value> dynamicTokens;
    if (resultType.isDynamicDim(0))
      dynamicTokens.push_back(numTokens);

    auto accumulatorType =
        RankedTensorType::get(resultType.getShape(), rewriter.getF32Type());
    Value accumulator = sharedOutputBuffer(op, accumulatorType);
    if (!accumulator) {
      accumulator = e.alloc(accumulatorType, dynamicTokens);
      if (Value shared = op.getShared())
        memref::CopyOp::create(rewriter, loc, e.readBuffer(shared),
                               accumulator);
      else
        linalg::FillOp::create(rewriter, loc, ValueRange{e.f32(0)},
                               ValueRange{accumulator});
    }

    ExpertBuffers buffers = readExpertBuffers(e, expert);
    Value weights = e.readBuffer(op.getWeights());
    Value slotsPerToken = e.index(buffers.slotsPerToken);
    DownEpilogue epilogue = [&](Emitter &e, Value row, Value column,
                                ArrayRef<Value> sums) {
      Value slot = e.load(buffers.slots, row);
      e.ifThen(e.cmpi(arith::CmpIPredicate::sge, slot, e.i64(0)),
               [&](Emitter &e) {
                 Value flat = e.toIndex(slot);
                 Value token = arith::DivUIOp::create(
                     e.builder(), e.location(), flat, slotsPerToken);
                 Value j = arith::RemUIOp::create(e.builder(), e.location(),
                                                  flat, slotsPerToken);
                 Value weight = e.load(weights, {token, j});
                 for (size_t n = 0; n < sums.size(); ++n) {
                   SmallVector<Value> at = {token,
                                            e.add(column, e.index(n))};
                   e.store(e.add(e.load(accumulator, at),
                                 e.mul(weight, sums[n])),
                           accumulator, at);
                 }
               });
    };
    buildExpertLoop(e, buffers, options, epilogue);

    Value sum = e.asTensor(accumulator, accumulatorType);
    rewriter.replaceOp(op, e.roundTo(sum, resultType, dynamicTokens));
    rewriter.eraseOp(expert);
    return success();
  }

  ExpertKernelOptions options;
};

//===----------------------------------------------------------------------===//
// The shared expert
//===----------------------------------------------------------------------===//

/// The dense FFN of every token, with the routed experts' kernels; with an
/// expert gate each output row is scaled by sigmoid(x_t · gate).
struct LowerSharedExpert : OpRewritePattern<SharedExpertOp> {
  LowerSharedExpert(MLIRContext *context, ExpertKernelOptions options)
      : OpRewritePattern(context), options(options) {}

  LogicalResult matchAndRewrite(SharedExpertOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Emitter e(rewriter, loc);
    auto resultType = cast<RankedTensorType>(op.getOutput().getType());
    Value input = e.readBuffer(op.getInput());
    Value numTokens = memref::DimOp::create(rewriter, loc, input, 0);
    int64_t hidden = resultType.getDimSize(1);
    SmallVector<Value> dynamicTokens;
    if (resultType.isDynamicDim(0))
      dynamicTokens.push_back(numTokens);
    Value output = e.alloc(resultType, dynamicTokens);

    Value scale;
    if (Value expertGate = op.getExpertGate()) {
      Value gate = e.readBuffer(expertGate);
      scale = f32Buffer(e, {ShapedType::kDynamic}, numTokens);
      e.forEach(e.index(0), numTokens, [&](Emitter &e, Value token) {
        Value logit = e.forEachCarrying(
            e.index(0), e.index(hidden), ValueRange{e.f32(0)},
            [&](Emitter &e, Value h, ValueRange acc) -> SmallVector<Value> {
              return {e.multiplyAdd(acc[0], e.load(input, {token, h}),
                                    e.load(gate, h))};
            })[0];
        e.store(e.sigmoid(logit), scale, token);
      });
    }

    FFNWeights weights{op.getGateProj() ? e.readBuffer(op.getGateProj())
                                        : Value(),
                       e.readBuffer(op.getUpProj()),
                       e.readBuffer(op.getDownProj()),
                       {}};
    buildFFN(
        e, numTokens,
        [&](Emitter &, Value token) -> DotRow { return {input, {token}}; },
        weights, op.getActivation(), options,
        [&](Emitter &e, Value token, Value column, ArrayRef<Value> sums) {
          Value factor = scale ? e.load(scale, token) : Value();
          for (size_t n = 0; n < sums.size(); ++n)
            e.store(factor ? e.mul(sums[n], factor) : sums[n], output,
                    {token, e.add(column, e.index(n))});
        });
    rewriter.replaceOp(op, e.asTensor(output, resultType));
    return success();
  }

  ExpertKernelOptions options;
};

struct MoELowerExpertsPass
    : moe::impl::MoELowerExpertsBase<MoELowerExpertsPass> {
  using Base::Base;

  void runOnOperation() override {
    ExpertKernelOptions options{fuseGather, fuseActivation, fuseCombine,
                                parallel};
    LogicalResult result =
        fuseCombine ? applyLowering<LowerExpertCombine, LowerExpert,
                                    LowerSharedExpert>(getOperation(), options)
                    : applyLowering<LowerExpert, LowerSharedExpert>(
                          getOperation(), options);
    if (failed(result))
      signalPassFailure();
  }
};
} // namespace

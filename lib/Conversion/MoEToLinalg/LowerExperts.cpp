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

static Value sigmoid(Emitter &e, Value v) {
  OpBuilder &b = e.builder();
  Value negated = arith::NegFOp::create(b, e.location(), v);
  Value denominator =
      e.add(e.f32(1), math::ExpOp::create(b, e.location(), negated));
  return arith::DivFOp::create(b, e.location(), e.f32(1), denominator);
}

//===----------------------------------------------------------------------===//
// The routed experts, at buffer level
//===----------------------------------------------------------------------===//

namespace {
struct ExpertKernelOptions {
  bool fuseGather;
  bool fuseActivation;
  bool fuseCombine;
  int64_t intermediateTile;
  int64_t rowTile;
};

/// The buffers an expert loop reads.
struct ExpertBuffers {
  Value input;              // [T, H] data type
  Value slots;              // [rows] i32
  Value offsets;            // [E + 1] i32
  Value gate, up, down;     // [E, F, H], [E, F, H], [E, H, F]; gate may be null
  int64_t slotsPerToken;
  Activation activation;
};

/// Where the down projection of rows `[first, first + count)` of the plan
/// goes (`destination`, a `[count, H]` f32 buffer), and what happens to it
/// afterwards (`consume`).
struct DownEpilogue {
  std::function<Value(Emitter &, Value first, Value count)> destination;
  std::function<void(Emitter &, Value first, Value count, Value block)>
      consume;
};
} // namespace

static Value f32Buffer(Emitter &e, ArrayRef<int64_t> shape,
                       ValueRange dynamicSizes) {
  return memref::AllocOp::create(
      e.builder(), e.location(),
      MemRefType::get(shape, e.builder().getF32Type()), dynamicSizes);
}

/// For every expert, its FFN over its plan segment:
///   hidden[rows, F] = act(x_rows · Wg^T) ⊙ (x_rows · Wu^T)   (or act(x·Wu^T))
///   down[rows, H]   = hidden · Wd^T, in tiles of `rowTile` rows
/// With `fuseGather` the projections read x through the plan; otherwise the
/// segment's rows are first copied out. With `fuseActivation` the gate and
/// up projections run together per tile of `intermediateTile` columns and
/// only their product is stored; otherwise both are stored whole first.
static void buildExpertLoop(Emitter &e, const ExpertBuffers &buffers,
                            const ExpertKernelOptions &options,
                            const DownEpilogue &epilogue) {
  OpBuilder &b = e.builder();
  auto upType = cast<MemRefType>(buffers.up.getType());
  int64_t numExperts = upType.getDimSize(0);
  int64_t intermediate = upType.getDimSize(1);
  int64_t hidden = upType.getDimSize(2);
  bool gated = buffers.gate != nullptr;
  Value slotsPerToken = e.index(buffers.slotsPerToken);
  auto attr = [&](int64_t v) -> OpFoldResult { return b.getIndexAttr(v); };

  e.forEach(e.index(0), e.index(numExperts), [&](Emitter &e, Value expert) {
    Value start = e.toIndex(e.load(buffers.offsets, expert));
    Value end = e.toIndex(e.load(buffers.offsets, e.add(expert, e.index(1))));
    Value rows = e.sub(end, start);
    // The token whose input row plan row `start + i` serves; padding rows
    // (-1) compute on token 0 and are never read.
    auto tokenOf = [&](Emitter &e, Value i) {
      Value slot = e.toIndex(e.load(buffers.slots, e.add(start, i)));
      Value clamped = arith::MaxSIOp::create(e.builder(), e.location(), slot,
                                             e.index(0));
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
    // x_rows[i, h] inside a (i, f, h) contraction body.
    auto inputAt = [&](Emitter &e, ValueRange args) -> Value {
      if (gathered)
        return args.back();
      return e.load(buffers.input, {tokenOf(e, e.loopIndex(0)),
                                    e.loopIndex(2)});
    };
    SmallVector<Value> gatheredInput;
    SmallVector<AffineMap> gatheredMap;
    if (gathered) {
      gatheredInput.push_back(gathered);
      gatheredMap.push_back(e.map(3, {0, 2}));
    }
    // Expert `expert`'s columns `[f0, f0 + count)` of a [E, F, H] weight.
    auto weightColumns = [&](Value weights, Value f0, Value count) {
      return e.subview(weights, {expert, f0, attr(0)},
                       {attr(1), count, attr(hidden)});
    };
    SmallVector<AffineMap> weightMaps = {e.map(3, {-1, 1, 2})};

    Value activated =
        f32Buffer(e, {ShapedType::kDynamic, intermediate}, rows);
    int64_t columnTile =
        options.fuseActivation ? std::min(options.intermediateTile,
                                          intermediate)
                               : intermediate;
    Value gateTile = gated ? f32Buffer(e, {ShapedType::kDynamic, columnTile},
                                       rows)
                           : Value();
    Value upTile = f32Buffer(e, {ShapedType::kDynamic, columnTile}, rows);
    e.forEachStep(
        e.index(0), e.index(intermediate), e.index(columnTile),
        [&](Emitter &e, Value f0) {
          Value count =
              e.minIndex(e.index(columnTile), e.sub(e.index(intermediate), f0));
          auto tile = [&](Value buffer) {
            Value view = e.subview(buffer, {attr(0), attr(0)}, {rows, count});
            linalg::FillOp::create(e.builder(), e.location(),
                                   ValueRange{e.f32(0)}, ValueRange{view});
            return view;
          };
          Value up = tile(upTile);
          SmallVector<Value> weights = {weightColumns(buffers.up, f0, count)};
          SmallVector<Value> outputs = {up};
          if (gated) {
            weights.push_back(weightColumns(buffers.gate, f0, count));
            outputs.push_back(tile(gateTile));
          }
          SmallVector<Value> inputs = weights;
          inputs.append(gatheredInput);
          SmallVector<AffineMap> maps(weights.size(), weightMaps[0]);
          maps.append(gatheredMap);
          maps.append(outputs.size(), e.map(3, {0, 1}));
          // Both projections read each input element once.
          e.genericInPlace(
              inputs, outputs, maps, {kParallel, kParallel, kReduction},
              [&](Emitter &e, ValueRange args) -> SmallVector<Value> {
                Value x = inputAt(e, args.take_front(inputs.size()));
                ValueRange accumulators = args.drop_front(inputs.size());
                SmallVector<Value> next;
                for (unsigned i = 0; i < weights.size(); ++i)
                  next.push_back(
                      e.multiplyAdd(accumulators[i], x, args[i]));
                return next;
              });
          Value destination =
              e.subview(activated, {attr(0), f0}, {rows, count});
          SmallVector<Value> epilogueInputs = {up};
          if (gated)
            epilogueInputs.push_back(outputs[1]);
          SmallVector<AffineMap> epilogueMaps(epilogueInputs.size() + 1,
                                              e.map(2, {0, 1}));
          e.genericInPlace(epilogueInputs, destination, epilogueMaps,
                           {kParallel, kParallel},
                           [&](Emitter &e, ValueRange args) {
                             if (!gated)
                               return applyActivation(e, buffers.activation,
                                                      args[0]);
                             return e.mul(applyActivation(
                                              e, buffers.activation, args[1]),
                                          args[0]);
                           });
        });

    e.forEachStep(
        e.index(0), rows, e.index(options.rowTile), [&](Emitter &e, Value r0) {
          Value count = e.minIndex(e.index(options.rowTile), e.sub(rows, r0));
          Value first = e.add(start, r0);
          Value block = epilogue.destination(e, first, count);
          linalg::FillOp::create(e.builder(), e.location(),
                                 ValueRange{e.f32(0)}, ValueRange{block});
          Value hiddenRows = e.subview(activated, {r0, attr(0)},
                                       {count, attr(intermediate)});
          Value down = e.subview(buffers.down, {expert, attr(0), attr(0)},
                                 {attr(1), attr(hidden), attr(intermediate)});
          e.genericInPlace(ValueRange{hiddenRows, down}, block,
                           {e.map(3, {0, 2}), e.map(3, {-1, 1, 2}),
                            e.map(3, {0, 1})},
                           {kParallel, kParallel, kReduction},
                           [](Emitter &e, ValueRange args) {
                             return e.multiplyAdd(args[2], args[0], args[1]);
                           });
          if (epilogue.consume)
            epilogue.consume(e, first, count, block);
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

/// Rounds an f32 `[T, H]` accumulator to the result's element type.
static Value roundTo(Emitter &e, Value accumulator,
                     RankedTensorType resultType, ValueRange dynamicSizes) {
  if (resultType.getElementType().isF32())
    return accumulator;
  Value output = e.emptyTensor(resultType.getShape(),
                               resultType.getElementType(), dynamicSizes);
  return e.generic(accumulator, output, {e.map(2, {0, 1}), e.map(2, {0, 1})},
                   {kParallel, kParallel},
                   [&](Emitter &e, ValueRange args) -> Value {
                     return arith::TruncFOp::create(
                         e.builder(), e.location(),
                         resultType.getElementType(), args[0]);
                   });
}

/// A moe.expert whose only user is a moe.combine is lowered together with it.
static bool isFusedIntoCombine(ExpertOp op) {
  return op->hasOneUse() && isa<CombineOp>(*op->getUsers().begin());
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
    int64_t hidden = resultType.getDimSize(1);
    DownEpilogue epilogue;
    epilogue.destination = [&](Emitter &e, Value first, Value count) {
      return e.subview(rows, {first, e.builder().getIndexAttr(0)},
                       {count, e.builder().getIndexAttr(hidden)});
    };
    buildExpertLoop(e, readExpertBuffers(e, op), options, epilogue);
    rewriter.replaceOp(op, e.asTensor(rows, resultType));
    return success();
  }

  ExpertKernelOptions options;
};

/// moe.combine of a moe.expert: the down projection's epilogue scales each
/// row by its routing weight and adds it to its token's output, so no
/// `[rows, H]` expert output exists. Each token row has one writer at a
/// time and experts run in order, so the sum is deterministic.
struct LowerExpertCombine : OpRewritePattern<CombineOp> {
  LowerExpertCombine(MLIRContext *context, ExpertKernelOptions options)
      : OpRewritePattern(context), options(options) {}

  LogicalResult matchAndRewrite(CombineOp op,
                                PatternRewriter &rewriter) const override {
    auto expert = op.getExpertOutput().getDefiningOp<ExpertOp>();
    if (!expert || !isFusedIntoCombine(expert))
      return rewriter.notifyMatchFailure(op, "not the only user of an expert");
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
    Value accumulator = e.alloc(accumulatorType, dynamicTokens);
    if (Value shared = op.getShared())
      memref::CopyOp::create(rewriter, loc, e.readBuffer(shared), accumulator);
    else
      linalg::FillOp::create(rewriter, loc, ValueRange{e.f32(0)},
                             ValueRange{accumulator});

    ExpertBuffers buffers = readExpertBuffers(e, expert);
    Value weights = e.readBuffer(op.getWeights());
    Value block = f32Buffer(e, {options.rowTile, hidden}, {});
    DownEpilogue epilogue;
    epilogue.destination = [&](Emitter &e, Value, Value count) {
      return e.subview(block,
                       {e.builder().getIndexAttr(0), e.builder().getIndexAttr(0)},
                       {count, e.builder().getIndexAttr(hidden)});
    };
    epilogue.consume = [&](Emitter &e, Value first, Value count, Value) {
      Value slotsPerToken = e.index(buffers.slotsPerToken);
      e.forEach(e.index(0), count, [&](Emitter &e, Value i) {
        Value slot = e.load(buffers.slots, e.add(first, i));
        e.ifThen(e.cmpi(arith::CmpIPredicate::sge, slot, e.i32(0)),
                 [&](Emitter &e) {
                   Value flat = e.toIndex(slot);
                   Value token = arith::DivUIOp::create(
                       e.builder(), e.location(), flat, slotsPerToken);
                   Value column = arith::RemUIOp::create(
                       e.builder(), e.location(), flat, slotsPerToken);
                   Value weight = e.load(weights, {token, column});
                   e.forEach(e.index(0), e.index(hidden),
                             [&](Emitter &e, Value h) {
                               Value value = e.load(block, {i, h});
                               Value sum = e.multiplyAdd(
                                   e.load(accumulator, {token, h}), weight,
                                   value);
                               e.store(sum, accumulator, {token, h});
                             });
                 });
      });
    };
    buildExpertLoop(e, buffers, options, epilogue);

    Value sum = e.asTensor(accumulator, accumulatorType);
    rewriter.replaceOp(op, roundTo(e, sum, resultType, dynamicTokens));
    rewriter.eraseOp(expert);
    return success();
  }

  ExpertKernelOptions options;
};

//===----------------------------------------------------------------------===//
// The shared expert, as linalg on tensors
//===----------------------------------------------------------------------===//

struct LowerSharedExpert : OpRewritePattern<SharedExpertOp> {
  LowerSharedExpert(MLIRContext *context, ExpertKernelOptions)
      : OpRewritePattern(context) {}

  LogicalResult matchAndRewrite(SharedExpertOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Emitter e(rewriter, loc);
    Value input = op.getInput();
    Type f32 = rewriter.getF32Type();
    Value numTokens = tensor::DimOp::create(rewriter, loc, input, 0);
    int64_t hidden = cast<RankedTensorType>(input.getType()).getDimSize(1);
    int64_t intermediate =
        cast<RankedTensorType>(op.getUpProj().getType()).getDimSize(0);
    auto zeros = [&](int64_t columns) {
      return e.fill(e.f32(0), e.emptyTensor({ShapedType::kDynamic, columns},
                                            f32, numTokens));
    };
    auto project = [&](Value weight) {
      return e.generic(
          ValueRange{input, weight}, zeros(intermediate),
          {e.map(3, {0, 2}), e.map(3, {1, 2}), e.map(3, {0, 1})},
          {kParallel, kParallel, kReduction}, [](Emitter &e, ValueRange args) {
            return e.multiplyAdd(args[2], args[0], args[1]);
          });
    };
    AffineMap identity = e.map(2, {0, 1});
    Activation activation = op.getActivation();
    Value up = project(op.getUpProj());
    Value activated;
    if (Value gateWeight = op.getGateProj())
      activated = e.generic(project(gateWeight), up, {identity, identity},
                            {kParallel, kParallel},
                            [&](Emitter &e, ValueRange args) {
                              return e.mul(
                                  applyActivation(e, activation, args[0]),
                                  args[1]);
                            });
    else
      activated = e.generic(ValueRange{}, up, {identity},
                            {kParallel, kParallel},
                            [&](Emitter &e, ValueRange args) {
                              return applyActivation(e, activation, args[0]);
                            });
    Value output = e.generic(
        ValueRange{activated, op.getDownProj()}, zeros(hidden),
        {e.map(3, {0, 2}), e.map(3, {1, 2}), e.map(3, {0, 1})},
        {kParallel, kParallel, kReduction}, [](Emitter &e, ValueRange args) {
          return e.multiplyAdd(args[2], args[0], args[1]);
        });

    if (Value expertGate = op.getExpertGate()) {
      Value logits = e.generic(
          ValueRange{input, expertGate},
          e.fill(e.f32(0),
                 e.emptyTensor({ShapedType::kDynamic}, f32, numTokens)),
          {e.map(2, {0, 1}), e.map(2, {1}), e.map(2, {0})},
          {kParallel, kReduction}, [](Emitter &e, ValueRange args) {
            return e.multiplyAdd(args[2], args[0], args[1]);
          });
      output = e.generic(logits, output, {e.map(2, {0}), identity},
                         {kParallel, kParallel},
                         [](Emitter &e, ValueRange args) {
                           return e.mul(args[1], sigmoid(e, args[0]));
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
  using Base::Base;

  void runOnOperation() override {
    if (intermediateTile < 1 || rowTile < 1) {
      getOperation()->emitError()
          << "moe-lower-experts: 'intermediate-tile' and 'row-tile' must be "
             "positive";
      return signalPassFailure();
    }
    ExpertKernelOptions options{fuseGather, fuseActivation, fuseCombine,
                                intermediateTile, rowTile};
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

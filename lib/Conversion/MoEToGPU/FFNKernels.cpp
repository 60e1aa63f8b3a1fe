//===- FFNKernels.cpp - Expert FFNs and combine as GPU kernels ------------===//
//
// Part of the moe-mlir project.
//
// Every projection is one tiled GEMM kernel: a block computes a tile of
// `row_tile` plan rows × 64 output columns, so a block's rows belong to one
// expert (the plan pads each segment to the row tile) and it reads that
// expert's weights only. Along the reduction the block stages 16-wide
// slices of its input rows and weight rows in shared memory, as f32; each
// of the 256 threads (16 × 16) accumulates a (row_tile / 16) × 4 register
// tile of every weight matrix it multiplies, strided by 16 so that shared
// memory is read without bank conflicts.
//
//   expert_up / shared_up      hidden[r, f] = act(g, u) with
//                              g = w_r · (x_r · Wg_f) + bg_f and
//                              u = w_r · (x_r · Wu_f) + bu_f, x read through
//                              the plan (no gathered copy); w_r is the row's
//                              routing weight under router_weight_on_input
//                              (the projections are linear, so scaling the
//                              sums is scaling the input), else 1
//   expert_down / shared_down  rows[r, h] = hidden_r · Wd_h + bd_h
//   shared_scale               sigmoid(x_t · shared_expert_gate)
//   combine                    one thread per (token, column): the shared
//                              row plus the (weighted) expert rows in slot
//                              order, plus the output bias, rounded once.
//
// The biases (docs/FAMILY-RULES.md's expert_bias) are the row's expert's:
// the block's leading weight indices select them as they select its
// weights.
//
// Combine reads each token's k expert rows instead of the down projection
// adding into the token's row: blocks of different experts would race for
// it, and atomics would make the sum's order, and so the bits, vary.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"

#include "../Common/Activation.h"

#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

using namespace mlir;
using namespace mlir::moe;

/// The shared expert's scale for `token`: sigmoid(input[token] · gate) over
/// the `hidden` elements of the row, in f32.
static Value sharedExpertScale(Emitter &e, Value input, Value gate,
                               Value token, int64_t hidden) {
  Value logit = e.forEachCarrying(
      e.index(0), e.index(hidden), ValueRange{e.f32(0)},
      [&](Emitter &e, Value h, ValueRange acc) -> SmallVector<Value> {
        return {e.multiplyAdd(acc[0], e.load(input, {token, h}),
                              e.load(gate, h))};
      })[0];
  return e.sigmoid(logit);
}

/// Output columns per block and the reduction slice staged per step.
static constexpr int64_t kGemmColumns = 64;
static constexpr int64_t kGemmDepth = 16;
/// Threads along each side of a block's tile.
static constexpr int64_t kGemmThreadSide = 16;

namespace {
/// What the tiled GEMM kernel needs to know of the rows it multiplies.
struct GemmRows {
  /// Blocks along the rows (grid x); each covers `rowTile` rows.
  Value tiles;
  int64_t rowTile;
  /// For a block's first row: whether it has work, and the leading indices
  /// of its weight rows (the expert; none for the shared expert).
  std::function<std::pair<Value, SmallVector<Value>>(Emitter &, Value)> tile;
  /// The input row that row `r` reads (index), or -1 for zeros.
  std::function<Value(Emitter &, Value)> source;
};

/// C_m[r, n] = Σ_k input[source(r), k] · weights_m[..., n, k], in f32, for
/// every weight matrix m; `epilogue` gets (row, column, the block's leading
/// weight indices, {C_m}).
struct Gemm {
  Value input;                // [*, depth]
  SmallVector<Value> weights; // [leading..., columns, depth]
  int64_t columns, depth;
  std::function<void(Emitter &, Value, Value, ArrayRef<Value>,
                     ArrayRef<Value>)>
      epilogue;
};
} // namespace

static void buildTiledGemm(KernelBuilder &kernels, StringRef name,
                           const GemmRows &rows, const Gemm &gemm) {
  Emitter host = kernels.host();
  OpBuilder &hb = host.builder();
  Type f32 = hb.getF32Type();
  int64_t rowTile = rows.rowTile;
  int64_t threadRows = rowTile / kGemmThreadSide;
  int64_t threadColumns = kGemmColumns / kGemmThreadSide;
  int64_t numWeights = gemm.weights.size();
  int64_t threads = kBlockThreads;
  SmallVector<SharedBufferType> shared = {
      {{rowTile}, hb.getIndexType()},
      {{kGemmDepth, rowTile + 1}, f32}};
  for (int64_t m = 0; m < numWeights; ++m)
    shared.push_back({{kGemmDepth, kGemmColumns + 1}, f32});
  Value columnTiles = host.index(llvm::divideCeil(gemm.columns, kGemmColumns));

  kernels.launch(name, rows.tiles, columnTiles, shared, [&](Emitter &e,
                                                           const KernelThread
                                                               &t) {
    Value sources = t.shared[0], inputTile = t.shared[1];
    Value firstRow = e.mul(t.blockX, e.index(rowTile));
    Value firstColumn = e.mul(t.blockY, e.index(kGemmColumns));
    std::pair<Value, SmallVector<Value>> tile = rows.tile(e, firstRow);
    SmallVector<Value> leading = tile.second;
    e.ifThen(tile.first, [&](Emitter &e) {
      e.ifThen(e.cmpi(arith::CmpIPredicate::ult, t.thread, e.index(rowTile)),
               [&](Emitter &e) {
                 e.store(rows.source(e, e.add(firstRow, t.thread)), sources,
                         t.thread);
               });
      t.barrier(e);
      Value threadRow = e.divIndex(t.thread, e.index(kGemmThreadSide));
      Value threadColumn = e.remIndex(t.thread, e.index(kGemmThreadSide));
      Value depth = e.index(gemm.depth);
      // Element q of a [count × kGemmDepth] slice, as (row, k in slice).
      auto sliceAt = [&](Emitter &e, int64_t step) -> std::pair<Value, Value> {
        Value q = e.add(t.thread, e.index(step * threads));
        return {e.divIndex(q, e.index(kGemmDepth)),
                e.remIndex(q, e.index(kGemmDepth))};
      };
      // A load that reads index 0 where `valid` is false and yields 0.
      auto maskedLoad = [&](Emitter &e, Value buffer, SmallVector<Value> at,
                            Value valid) {
        for (Value &index : at)
          index = e.select(valid, index, e.index(0));
        return e.select(valid, e.toF32(e.load(buffer, at)), e.f32(0));
      };

      Value zero = e.f32(0);
      SmallVector<Value> init(numWeights * threadRows * threadColumns, zero);
      SmallVector<Value> sums = e.forEachCarryingStep(
          e.index(0), depth, e.index(kGemmDepth), init,
          [&](Emitter &e, Value k0, ValueRange acc) -> SmallVector<Value> {
            for (int64_t step = 0; step < rowTile * kGemmDepth / threads;
                 ++step) {
              auto [i, kk] = sliceAt(e, step);
              Value k = e.add(k0, kk);
              Value source = e.load(sources, i);
              Value valid =
                  e.andi(e.cmpi(arith::CmpIPredicate::sge, source,
                                e.index(0)),
                         e.cmpi(arith::CmpIPredicate::ult, k, depth));
              e.store(maskedLoad(e, gemm.input, {source, k}, valid),
                      inputTile, {kk, i});
            }
            for (int64_t m = 0; m < numWeights; ++m)
              for (int64_t step = 0; step < kGemmColumns * kGemmDepth / threads;
                   ++step) {
                auto [n, kk] = sliceAt(e, step);
                Value k = e.add(k0, kk);
                Value column = e.add(firstColumn, n);
                Value valid = e.andi(
                    e.cmpi(arith::CmpIPredicate::ult, column,
                           e.index(gemm.columns)),
                    e.cmpi(arith::CmpIPredicate::ult, k, depth));
                SmallVector<Value> at(leading);
                at.append({column, k});
                e.store(maskedLoad(e, gemm.weights[m], at, valid),
                        t.shared[2 + m], {kk, n});
              }
            t.barrier(e);
            SmallVector<Value> next = e.forEachCarrying(
                e.index(0), e.index(kGemmDepth), acc,
                [&](Emitter &e, Value kk,
                    ValueRange acc) -> SmallVector<Value> {
                  SmallVector<Value> a, w, out;
                  for (int64_t i = 0; i < threadRows; ++i)
                    a.push_back(e.load(
                        inputTile,
                        {kk, e.add(threadRow,
                                   e.index(i * kGemmThreadSide))}));
                  for (int64_t m = 0; m < numWeights; ++m)
                    for (int64_t j = 0; j < threadColumns; ++j)
                      w.push_back(e.load(
                          t.shared[2 + m],
                          {kk, e.add(threadColumn,
                                     e.index(j * kGemmThreadSide))}));
                  for (int64_t m = 0; m < numWeights; ++m)
                    for (int64_t i = 0; i < threadRows; ++i)
                      for (int64_t j = 0; j < threadColumns; ++j) {
                        int64_t at = (m * threadRows + i) * threadColumns + j;
                        out.push_back(e.add(
                            acc[at], e.mul(a[i], w[m * threadColumns + j])));
                      }
                  return out;
                });
            t.barrier(e);
            return next;
          });

      for (int64_t i = 0; i < threadRows; ++i)
        for (int64_t j = 0; j < threadColumns; ++j) {
          Value row =
              e.add(firstRow, e.add(threadRow, e.index(i * kGemmThreadSide)));
          Value column = e.add(firstColumn,
                               e.add(threadColumn,
                                     e.index(j * kGemmThreadSide)));
          e.ifThen(e.cmpi(arith::CmpIPredicate::ult, column,
                          e.index(gemm.columns)),
                   [&](Emitter &e) {
                     SmallVector<Value> values;
                     for (int64_t m = 0; m < numWeights; ++m)
                       values.push_back(
                           sums[(m * threadRows + i) * threadColumns + j]);
                     gemm.epilogue(e, row, column, leading, values);
                   });
        }
    });
  });
}

namespace {
/// One FFN's weights as buffers; the leading indices come from GemmRows.
struct FFNWeights {
  Value gate, up, down; // gate may be null
  /// The projections' biases, [leading..., F] (gate, up) and [leading...,
  /// H] (down), in the data type; each may be null.
  Value gateBias, upBias, downBias;
};
} // namespace

/// The FFN over `rows`: `<name>_up` writes `act(gate, up)` into a
/// `[tiles · row_tile, F]` f32 hidden buffer, `<name>_down` hands
/// `hidden · Wd^T (+ down bias)` to `epilogue` (row, column, sum).
/// `inputScale`, when given, is the f32 factor of row `r`'s input.
static void buildFFNKernels(
    KernelBuilder &kernels, StringRef name, Value input, const GemmRows &rows,
    const FFNWeights &weights, const FFNActivation &activation,
    std::function<Value(Emitter &, Value)> inputScale,
    std::function<void(Emitter &, Value, Value, Value)> epilogue) {
  Emitter host = kernels.host();
  auto upType = cast<MemRefType>(weights.up.getType());
  int64_t intermediate = upType.getDimSize(upType.getRank() - 2);
  int64_t hidden = upType.getDimSize(upType.getRank() - 1);
  Value hiddenRows = host.mul(rows.tiles, host.index(rows.rowTile));
  Value activated =
      kernels.deviceBuffer({ShapedType::kDynamic, intermediate},
                           host.builder().getF32Type(), hiddenRows);

  Gemm up{input, {weights.up}, intermediate, hidden, nullptr};
  if (weights.gate)
    up.weights.push_back(weights.gate);
  // The bias of `column` for the block's expert, in f32.
  auto biasAt = [](Emitter &e, Value bias, ArrayRef<Value> leading,
                   Value column) {
    SmallVector<Value> at(leading);
    at.push_back(column);
    return e.toF32(e.load(bias, at));
  };
  up.epilogue = [&](Emitter &e, Value row, Value column,
                    ArrayRef<Value> leading, ArrayRef<Value> sums) {
    Value scale = inputScale ? inputScale(e, row) : Value();
    auto projection = [&](Value sum, Value bias) {
      if (scale)
        sum = e.mul(sum, scale);
      return bias ? e.add(sum, biasAt(e, bias, leading, column)) : sum;
    };
    Value upSum = projection(sums[0], weights.upBias);
    Value product =
        sums.size() == 2
            ? applyGatedActivation(e, activation,
                                   projection(sums[1], weights.gateBias),
                                   upSum)
            : applyActivation(e, activation.kind, upSum);
    e.store(product, activated, {row, column});
  };
  buildTiledGemm(kernels, (name + "_up").str(), rows, up);

  GemmRows hiddenRowsOf = rows;
  hiddenRowsOf.source = [](Emitter &, Value row) { return row; };
  Gemm down{activated, {weights.down}, hidden, intermediate,
            [&](Emitter &e, Value row, Value column, ArrayRef<Value> leading,
                ArrayRef<Value> sums) {
              Value sum = sums[0];
              if (weights.downBias)
                sum = e.add(sum, biasAt(e, weights.downBias, leading, column));
              epilogue(e, row, column, sum);
            }};
  buildTiledGemm(kernels, (name + "_down").str(), hiddenRowsOf, down);
}

namespace {
/// moe.expert: the routed experts over the plan, one block per row tile of
/// one expert.
struct LowerExpertToKernels : KernelPattern<ExpertOp> {
  using KernelPattern::KernelPattern;

  LogicalResult lower(ExpertOp op, KernelBuilder &kernels,
                      PatternRewriter &rewriter) const override {
    Emitter e = kernels.host();
    int64_t rowTile = options.rowTile;
    Value input = e.readBuffer(op.getInput());
    Value slots = e.readBuffer(op.getSlots());
    Value offsets = e.readBuffer(op.getOffsets());
    FFNWeights weights{e.readOptionalBuffer(op.getGateProj()),
                       e.readBuffer(op.getUpProj()),
                       e.readBuffer(op.getDownProj()),
                       e.readOptionalBuffer(op.getGateBias()),
                       e.readOptionalBuffer(op.getUpBias()),
                       e.readOptionalBuffer(op.getDownBias())};
    Value inputWeights = e.readOptionalBuffer(op.getInputWeights());
    int64_t numExperts =
        cast<MemRefType>(weights.up.getType()).getDimSize(0);
    Value numRows = memref::DimOp::create(rewriter, op.getLoc(), slots, 0);
    Value slotsPerToken = e.index(op.getSlotsPerToken());

    auto resultType = cast<RankedTensorType>(op.getOutput().getType());
    Value output = resultBuffer(
        rewriter, kernels, op.getOutput(),
        dynamicSizes(resultType, {numRows, {}}));

    GemmRows rows;
    rows.rowTile = rowTile;
    rows.tiles = arith::CeilDivUIOp::create(rewriter, op.getLoc(), numRows,
                                            e.index(rowTile));
    // A tile is busy when it starts before the plan's end; its expert is
    // the number of segment ends at or before its first row.
    rows.tile = [&](Emitter &e, Value firstRow) {
      Value planRows = e.toIndex(e.load(offsets, e.index(numExperts)));
      Value active = e.cmpi(arith::CmpIPredicate::ult, firstRow, planRows);
      Value expert = e.forEachCarrying(
          e.index(1), e.index(numExperts), ValueRange{e.index(0)},
          [&](Emitter &e, Value x, ValueRange n) -> SmallVector<Value> {
            Value ended = e.cmpi(arith::CmpIPredicate::ule,
                                 e.toIndex(e.load(offsets, x)), firstRow);
            return {e.select(ended, e.add(n[0], e.index(1)), n[0])};
          })[0];
      return std::make_pair(active, SmallVector<Value>{expert});
    };
    rows.source = [&](Emitter &e, Value row) {
      Value slot = e.toIndex(e.load(slots, row));
      Value token = arith::DivSIOp::create(e.builder(), e.location(), slot,
                                           slotsPerToken);
      return e.select(e.cmpi(arith::CmpIPredicate::sge, slot, e.index(0)),
                      token, e.index(-1));
    };
    // router_weight_on_input: row r serves slot s = slots[r], whose weight
    // is input_weights[s / K, s % K]; a padding row (s = -1) gets 0.
    std::function<Value(Emitter &, Value)> inputScale;
    if (inputWeights)
      inputScale = [&](Emitter &e, Value row) {
        Value slot = e.toIndex(e.load(slots, row));
        Value real = e.cmpi(arith::CmpIPredicate::sge, slot, e.index(0));
        Value at = e.select(real, slot, e.index(0));
        Value token = e.divIndex(at, slotsPerToken);
        Value column = e.remIndex(at, slotsPerToken);
        return e.select(real, e.load(inputWeights, {token, column}),
                        e.f32(0));
      };
    buildFFNKernels(kernels, "expert", input, rows, weights, activationOf(op),
                    inputScale,
                    [&](Emitter &e, Value row, Value column, Value sum) {
                      e.store(sum, output, {row, column});
                    });
    rewriter.replaceOp(op, e.asTensor(output, resultType));
    return success();
  }
};

/// moe.shared_expert: the same kernels with the tokens as rows.
struct LowerSharedExpertToKernels : KernelPattern<SharedExpertOp> {
  using KernelPattern::KernelPattern;

  LogicalResult lower(SharedExpertOp op, KernelBuilder &kernels,
                      PatternRewriter &rewriter) const override {
    Emitter e = kernels.host();
    int64_t rowTile = options.rowTile;
    Value input = e.readBuffer(op.getInput());
    Value numTokens = memref::DimOp::create(rewriter, op.getLoc(), input, 0);
    int64_t hidden = cast<MemRefType>(input.getType()).getDimSize(1);
    auto resultType = cast<RankedTensorType>(op.getOutput().getType());
    Value output = resultBuffer(
        rewriter, kernels, op.getOutput(),
        dynamicSizes(resultType, {numTokens, {}}));

    Value scale;
    if (Value expertGate = op.getExpertGate()) {
      Value gate = e.readBuffer(expertGate);
      scale = kernels.deviceBuffer({ShapedType::kDynamic},
                                   rewriter.getF32Type(), numTokens);
      kernels.launchForEach(
          "shared_scale", numTokens, [&](Emitter &e, Value token) {
            e.store(sharedExpertScale(e, input, gate, token, hidden), scale,
                    token);
          });
    }

    GemmRows rows;
    rows.rowTile = rowTile;
    rows.tiles = arith::CeilDivUIOp::create(rewriter, op.getLoc(), numTokens,
                                            e.index(rowTile));
    rows.tile = [&](Emitter &e, Value) {
      return std::make_pair(e.boolean(true), SmallVector<Value>{});
    };
    rows.source = [&](Emitter &e, Value row) {
      return e.select(e.cmpi(arith::CmpIPredicate::ult, row, numTokens), row,
                      e.index(-1));
    };
    FFNWeights weights{
        e.readOptionalBuffer(op.getGateProj()),
        e.readBuffer(op.getUpProj()), e.readBuffer(op.getDownProj())};
    buildFFNKernels(
        kernels, "shared", input, rows, weights, activationOf(op),
        /*inputScale=*/nullptr,
        [&](Emitter &e, Value row, Value column, Value sum) {
          e.ifThen(e.cmpi(arith::CmpIPredicate::ult, row, numTokens),
                   [&](Emitter &e) {
                     Value value = scale ? e.mul(sum, e.load(scale, row)) : sum;
                     e.store(value, output, {row, column});
                   });
        });
    rewriter.replaceOp(op, e.asTensor(output, resultType));
    return success();
  }
};

/// moe.combine: a gather-reduction per output element, in slot order.
struct LowerCombineToKernels : KernelPattern<CombineOp> {
  using KernelPattern::KernelPattern;

  LogicalResult lower(CombineOp op, KernelBuilder &kernels,
                      PatternRewriter &rewriter) const override {
    Emitter e = kernels.host();
    Value rows = e.readBuffer(op.getExpertOutput());
    Value slotRows = e.readBuffer(op.getSlotRows());
    Value weights = e.readOptionalBuffer(op.getWeights());
    Value shared = e.readOptionalBuffer(op.getShared());
    Value bias = e.readOptionalBuffer(op.getBias());
    Value numTokens = memref::DimOp::create(rewriter, op.getLoc(), slotRows, 0);
    Value slotsPerToken =
        memref::DimOp::create(rewriter, op.getLoc(), slotRows, 1);
    auto resultType = cast<RankedTensorType>(op.getOutput().getType());
    int64_t hidden = resultType.getDimSize(1);
    Type element = resultType.getElementType();
    Value output = resultBuffer(
        rewriter, kernels, op.getOutput(),
        dynamicSizes(resultType, {numTokens, {}}));

    kernels.launchForEach(
        "combine", e.mul(numTokens, e.index(hidden)),
        [&](Emitter &e, Value item) {
          Value token = e.divIndex(item, e.index(hidden));
          Value column = e.remIndex(item, e.index(hidden));
          Value init = shared ? e.load(shared, {token, column}) : e.f32(0);
          Value sum = e.forEachCarrying(
              e.index(0), slotsPerToken, ValueRange{init},
              [&](Emitter &e, Value slot, ValueRange acc) -> SmallVector<Value> {
                Value row = e.toIndex(e.load(slotRows, {token, slot}));
                Value kept = e.cmpi(arith::CmpIPredicate::sge, row, e.index(0));
                Value value =
                    e.load(rows, {e.select(kept, row, e.index(0)), column});
                // Without weights the experts scaled their input.
                if (weights)
                  value = e.mul(e.load(weights, {token, slot}), value);
                return {e.select(kept, e.add(acc[0], value), acc[0])};
              })[0];
          if (bias)
            sum = e.add(sum, e.toF32(e.load(bias, column)));
          if (!element.isF32())
            sum = arith::TruncFOp::create(e.builder(), e.location(), element,
                                          sum);
          e.store(sum, output, {token, column});
        });
    rewriter.replaceOp(op, e.asTensor(output, resultType));
    return success();
  }
};
} // namespace

void mlir::moe::populateFFNKernelPatterns(RewritePatternSet &patterns,
                                          const GPULoweringOptions &options) {
  patterns.add<LowerExpertToKernels, LowerSharedExpertToKernels,
               LowerCombineToKernels>(patterns.getContext(), options);
}

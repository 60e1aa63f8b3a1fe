//===- LowerExperts.cpp - Expert FFNs to register-tiled kernels ----------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "Activation.h"
#include "Contraction.h"
#include "BroadcastTile.h"
#include "Emitter.h"
#include "TileLoops.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"


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
/// The buffers an expert loop reads.
struct ExpertBuffers {
  Value input;          // [T, H] data type
  Value slots;          // [rows] i32
  Value offsets;        // [E + 1] i32
  Value gate, up, down; // [E, F, H], [E, F, H], [E, H, F]; gate may be null
  Value gateBias, upBias, downBias; // [E, F], [E, F], [E, H] or null
  Value inputWeights;               // [T, slotsPerToken] f32 or null
  int64_t slotsPerToken;
  FFNActivation activation;
};

/// Receives the down projection of plan row `row` at `columns`.
using DownEpilogue = std::function<void(Emitter &, Value row,
                                        ArrayRef<Value> columns,
                                        ArrayRef<Value> sums)>;

/// The operands of a projection: input row `i`, and the weight rows a tile
/// of output columns reads.
using InputRow = function_ref<DotRow(Emitter &, Value)>;
struct WeightRows {
  function_ref<SmallVector<DotRow>(Emitter &, ArrayRef<Value>)> rows;
  Type elementType; // of every weight row's buffer

  SmallVector<DotRow> operator()(Emitter &e, ArrayRef<Value> columns) const {
    return rows(e, columns);
  }
};
/// Receives a tile's sums, `sums[m * weightRows + n]`.
using TileEpilogue = function_ref<void(Emitter &, ArrayRef<Value> rows,
                                       ArrayRef<Value> columns,
                                       ArrayRef<Value> sums)>;
} // namespace

static Value f32Buffer(Emitter &e, ArrayRef<int64_t> shape,
                       ValueRange dynamicSizes) {
  return memref::AllocOp::create(
      e.builder(), e.location(),
      MemRefType::get(shape, e.builder().getF32Type()), dynamicSizes);
}

/// Column tiles are handed to threads in at most this many chunks, each
/// with its own buffer of partial sums.
static constexpr int64_t kMaxColumnChunks = 64;

/// The input rows [0, numRows) transposed into `[paddedRows / lanes,
/// length, lanes]` f32, rows [numRows, paddedRows) zero. Grouped so, a
/// tile's vectors of rows are sequential streams along k. As `[length,
/// paddedRows]`, consecutive k of a vector lie paddedRows · 4 bytes apart,
/// 2 KiB at 512 rows, all in two of L1's 64 sets: Mixtral f32 at T = 2048
/// took 15.4 s a call that way, 12.2 s grouped.
static Value transposeInput(Emitter &e, Value numRows, Value paddedRows,
                            int64_t length, int64_t lanes, InputRow inputRow) {
  Value lanesValue = e.index(lanes);
  Value groups = e.divIndex(paddedRows, lanesValue);
  Value transposed =
      f32Buffer(e, {ShapedType::kDynamic, length, lanes}, groups);
  e.forEach(e.index(0), paddedRows, [&](Emitter &e, Value i) {
    Value real = e.cmpi(arith::CmpIPredicate::ult, i, numRows);
    DotRow row = inputRow(e, e.select(real, i, e.index(0)));
    Value group = e.divIndex(i, lanesValue);
    Value lane = e.remIndex(i, lanesValue);
    e.forEach(e.index(0), e.index(length), [&](Emitter &e, Value k) {
      Value value = e.toF32(e.load(row.buffer, rowIndices(e, row, k)));
      e.store(e.select(real, value, e.f32(0)), transposed, {group, k, lane});
    });
  });
  return transposed;
}

/// A chunk of outer-product tiles keeps the weight rows of one reduction
/// pass within this much of L2 as f32 (the size of the widened copy of
/// bf16 or f16 weights), so that each input vector, loaded once per chunk,
/// serves all of its tiles...
static constexpr int64_t kChunkWeightBytes = 64 * 1024;
/// ...unless that leaves fewer chunks than this for the threads to share.
static constexpr int64_t kMinBroadcastChunks = 64;

/// Vectors of rows in an outer-product row tile.
static constexpr int64_t kBroadcastTileVectors = 2;

/// Calls `rowTile(first, vectors)` on the `paddedRows` transposed rows in
/// tiles of kBroadcastTileVectors vectors of rows, then one vector for the
/// last rows.
static void forEachBroadcastRowTile(
    Emitter &e, int64_t lanes, Value paddedRows,
    function_ref<void(Emitter &, Value, int64_t)> rowTile) {
  static_assert(kBroadcastTileVectors == 2, "one vector is the remainder");
  Value pairStep = e.index(kBroadcastTileVectors * lanes);
  Value pairedRows = e.mul(e.divIndex(paddedRows, pairStep), pairStep);
  e.forEachStep(e.index(0), pairedRows, pairStep, [&](Emitter &e, Value first) {
    rowTile(e, first, kBroadcastTileVectors);
  });
  e.ifThen(e.cmpi(arith::CmpIPredicate::ult, pairedRows, paddedRows),
           [&](Emitter &e) { rowTile(e, pairedRows, 1); });
}

/// The products of `numRows` input rows with the weight rows of
/// `numColumns` output columns in outer-product tiles (BroadcastTile.h):
/// `options.broadcastWeightRows` weight rows by two vectors of rows, one
/// vector for the last rows; single columns cover the column remainder.
///
/// The input rows are transposed once, and the column tiles split into
/// chunks across threads. With more than one tile of rows, a reduction
/// longer than `broadcastReductionBlock` runs in passes, each over every
/// row tile and, inside it, the chunk's column tiles, the accumulators kept
/// between passes in a buffer of the chunk: a row tile's slice of the input
/// then stays in L1 across the chunk's tiles and their weight rows in L2,
/// where one pass over the whole reduction would stream the input from L3
/// for every tile.
static void forEachBroadcastTile(Emitter &e,
                                 const MoELowerExpertsOptions &options,
                                 Value numRows, int64_t numColumns,
                                 int64_t weightRowsPerColumn, int64_t length,
                                 InputRow inputRow, WeightRows weightRows,
                                 TileEpilogue epilogue) {
  int64_t lanes = options.vectorLanes;
  Value lanesValue = e.index(lanes);
  Value paddedRows = e.mul(e.ceilDivIndex(numRows, lanesValue), lanesValue);
  Value transposed =
      transposeInput(e, numRows, paddedRows, length, lanes, inputRow);
  Type accumulatorType = dotAccumulatorType(e.builder(), lanes);

  // Hands each real row of a row tile's sums to `epilogue`.
  auto rowsEpilogue = [&](Emitter &e, Value first, int64_t vectors,
                          ArrayRef<Value> columns, size_t numWeights,
                          ArrayRef<Value> sums) {
    for (int64_t v = 0; v < vectors; ++v) {
      Value base = e.add(first, e.index(v * lanes));
      e.forEach(e.index(0), lanesValue, [&](Emitter &e, Value lane) {
        Value row = e.add(base, lane);
        e.ifThen(e.cmpi(arith::CmpIPredicate::ult, row, numRows),
                 [&](Emitter &e) {
          SmallVector<Value> rowSums;
          for (size_t n = 0; n < numWeights; ++n)
            rowSums.push_back(vector::ExtractOp::create(
                e.builder(), e.location(), sums[n * vectors + v],
                ArrayRef<OpFoldResult>{lane}));
          epilogue(e, {row}, columns, rowSums);
        });
      });
    }
  };

  int64_t columnsPerTile = options.broadcastWeightRows / weightRowsPerColumn;
  int64_t weightRowsPerTile = columnsPerTile * weightRowsPerColumn;
  int64_t columnTiles = numColumns / columnsPerTile;
  int64_t block = options.broadcastReductionBlock;

  // With `blocked`, the reduction in passes of `block`; otherwise each tile
  // runs over all of it.
  auto productTiles = [&](Emitter &e, bool blocked) {
    int64_t passLength = blocked ? block : length;
    int64_t tilesPerChunk = std::max<int64_t>(
        1, std::min(kChunkWeightBytes / (weightRowsPerTile * 4 * passLength),
                    columnTiles / kMinBroadcastChunks));
    bool widening = !weightRows.elementType.isF32();
    auto chunkTiles = [&](Emitter &e, Value, Value firstTile, Value lastTile) {
      // `partial[(t - firstTile) · weightRowsPerTile + n, row]`.
      Value partial;
      if (blocked) {
        partial = f32Buffer(
            e, {tilesPerChunk * weightRowsPerTile, ShapedType::kDynamic},
            paddedRows);
        linalg::FillOp::create(e.builder(), e.location(), ValueRange{e.f32(0)},
                               ValueRange{partial});
      }
      // bf16 and f16 weights are widened to f32 once per pass, into
      // `widened[(t - firstTile) · weightRowsPerTile + n, k - k0]`, which
      // every tile of rows then reads: widening each broadcast element inside
      // the tile, once per tile of rows, measured half the speed.
      Value widened;
      if (widening)
        widened = f32Buffer(e, {tilesPerChunk * weightRowsPerTile, passLength},
                            ValueRange{});
      auto pass = [&](Emitter &e, Value k0, Value k1, bool last) {
        if (widening) {
          e.forEach(firstTile, lastTile, [&](Emitter &e, Value t) {
            SmallVector<DotRow> weights =
                weightRows(e, indicesFrom(e, e.mul(t, e.index(columnsPerTile)),
                                          columnsPerTile));
            Value base = e.mul(e.sub(t, firstTile), e.index(weightRowsPerTile));
            for (size_t n = 0; n < weights.size(); ++n)
              e.forEach(k0, k1, [&](Emitter &e, Value k) {
                const DotRow &row = weights[n];
                e.store(e.toF32(e.load(row.buffer, rowIndices(e, row, k))),
                        widened,
                        {e.add(base, e.index(static_cast<int64_t>(n))),
                         e.sub(k, k0)});
              });
          });
        }
        forEachBroadcastRowTile(
            e, lanes, paddedRows,
            [&](Emitter &e, Value first, int64_t vectors) {
              e.forEach(firstTile, lastTile, [&](Emitter &e, Value t) {
                SmallVector<Value> columns = indicesFrom(
                    e, e.mul(t, e.index(columnsPerTile)), columnsPerTile);
                Value base =
                    e.mul(e.sub(t, firstTile), e.index(weightRowsPerTile));
                SmallVector<DotRow> weights;
                if (widening) {
                  for (int64_t n = 0; n < weightRowsPerTile; ++n)
                    weights.push_back(
                        {widened, {e.add(base, e.index(n))}, /*origin=*/k0});
                } else {
                  weights = weightRows(e, columns);
                }
                auto at = [&](size_t n, int64_t v) -> SmallVector<Value> {
                  return {e.add(base, e.index(static_cast<int64_t>(n))),
                          e.add(first, e.index(v * lanes))};
                };
                SmallVector<Value> init;
                for (size_t n = 0; n < weights.size(); ++n)
                  for (int64_t v = 0; v < vectors; ++v)
                    init.push_back(blocked
                                       ? vector::LoadOp::create(
                                             e.builder(), e.location(),
                                             accumulatorType, partial, at(n, v))
                                       : dotZero(e, lanes));
                SmallVector<Value> sums =
                    emitBroadcastSteps(e, transposed, first, vectors, weights,
                                       k0, k1, init, lanes);
                if (last)
                  return rowsEpilogue(e, first, vectors, columns,
                                      weights.size(), sums);
                for (size_t n = 0; n < weights.size(); ++n)
                  for (int64_t v = 0; v < vectors; ++v)
                    vector::StoreOp::create(e.builder(), e.location(),
                                            sums[n * vectors + v], partial,
                                            at(n, v));
              });
            });
      };
      forEachReductionPass(e, length, passLength, pass);
    };
    forEachColumnChunk(e, options.parallel, columnTiles, tilesPerChunk,
                       chunkTiles);
  };
  // Passes keep a row tile's input slice in L1 across a chunk's tiles, which
  // one tile of rows does not need; there they would only cut each weight
  // row into short runs, which the hardware prefetchers follow poorly. One
  // pass took Qwen3 f32 at T = 128 from 185 to 175 ms a call, DeepSeek's
  // from 263 to 243 and Mixtral's at T = 32 from 383 to 335 (same process).
  if (block > 0 && length > block)
    e.ifThenElse(
        e.cmpi(arith::CmpIPredicate::ule, paddedRows,
               e.index(kBroadcastTileVectors * lanes)),
        [&](Emitter &e) { productTiles(e, false); },
        [&](Emitter &e) { productTiles(e, true); });
  else
    productTiles(e, false);

  // The remaining columns alone, over the whole reduction.
  if (columnTiles * columnsPerTile == numColumns)
    return;
  e.forEach(e.index(columnTiles * columnsPerTile), e.index(numColumns),
            [&](Emitter &e, Value column) {
    SmallVector<DotRow> weights = weightRows(e, {column});
    forEachBroadcastRowTile(e, lanes, paddedRows, [&](Emitter &e, Value first,
                                                       int64_t vectors) {
      SmallVector<Value> init(weights.size() * vectors, dotZero(e, lanes));
      rowsEpilogue(e, first, vectors, {column}, weights.size(),
                   emitBroadcastSteps(e, transposed, first, vectors, weights,
                                      e.index(0), e.index(length), init,
                                      lanes));
    });
  });
}

/// The products of `numRows` input rows with the weight rows of
/// `numColumns` output columns over a reduction of `length`, in register
/// tiles of `columnsPerTile` columns (`weightRowsPerColumn` weight rows
/// each); single columns cover the column remainder. The column loop is
/// outside, so a tile's weight rows stay in cache while input rows stream
/// past them; with `parallel` the column tiles are split across threads,
/// each writing its own columns.
///
/// A reduction longer than `reductionBlock` is cut into passes over blocks
/// of `rowBlock` rows, the vector accumulators kept between passes in a
/// buffer of the column tile's chunk: otherwise a tile's weight rows
/// outgrow L1 and every input row comes again from L2 or L3 for each tile
/// of columns. An expert with no more rows than one register tile has no
/// reuse to gain and takes one pass.
static void forEachDotTile(Emitter &e, const MoELowerExpertsOptions &options,
                           Value numRows, int64_t numColumns,
                           int64_t columnsPerTile, int64_t weightRowsPerColumn,
                           int64_t length, InputRow inputRow,
                           WeightRows weightRows, TileEpilogue epilogue) {
  int64_t lanes = options.vectorLanes;
  int64_t vectorLength = length / lanes * lanes;
  int64_t block = options.reductionBlock / lanes * lanes;
  bool blocked = block > 0 && vectorLength > block;
  Type accumulatorType = dotAccumulatorType(e.builder(), lanes);

  auto operands = [&](Emitter &e, ArrayRef<Value> rows,
                      ArrayRef<Value> columns) {
    SmallVector<DotRow> lhs;
    for (Value i : rows)
      lhs.push_back(inputRow(e, i));
    return std::make_pair(lhs, weightRows(e, columns));
  };
  auto onePass = [&](Emitter &e, ArrayRef<Value> columns) {
    forEachRowTile(e, options.tileRows, e.index(0), numRows,
                   [&](Emitter &e, ArrayRef<Value> rows) {
                     auto [lhs, rhs] = operands(e, rows, columns);
                     epilogue(e, rows, columns,
                              emitDotTile(e, lhs, rhs, length, lanes));
                   });
  };
  // `partial`: [rowBlock, weight rows per tile · lanes] f32.
  auto blockedPasses = [&](Emitter &e, ArrayRef<Value> columns,
                           Value partial) {
    e.forEachStep(e.index(0), numRows, e.index(options.rowBlock),
                  [&](Emitter &e, Value r0) {
      Value count = e.minIndex(e.index(options.rowBlock), e.sub(numRows, r0));
      linalg::FillOp::create(e.builder(), e.location(), ValueRange{e.f32(0)},
                             ValueRange{partial});
      auto pass = [&](Emitter &e, Value k0, Value k1, bool last) {
        forEachRowTile(e, options.tileRows, r0, count,
                       [&](Emitter &e, ArrayRef<Value> rows) {
          auto [lhs, rhs] = operands(e, rows, columns);
          auto at = [&](size_t m, size_t n) -> SmallVector<Value> {
            return {e.sub(rows[m], r0),
                    e.index(static_cast<int64_t>(n) * lanes)};
          };
          SmallVector<Value> init;
          for (size_t m = 0; m < lhs.size(); ++m)
            for (size_t n = 0; n < rhs.size(); ++n)
              init.push_back(vector::LoadOp::create(
                  e.builder(), e.location(), accumulatorType, partial,
                  at(m, n)));
          SmallVector<Value> accumulators =
              emitDotSteps(e, lhs, rhs, k0, k1, init, lanes);
          if (last) {
            epilogue(e, rows, columns,
                     emitDotSums(e, lhs, rhs, accumulators,
                                 e.index(vectorLength), e.index(length)));
            return;
          }
          for (size_t m = 0; m < lhs.size(); ++m)
            for (size_t n = 0; n < rhs.size(); ++n)
              vector::StoreOp::create(e.builder(), e.location(),
                                      accumulators[m * rhs.size() + n],
                                      partial, at(m, n));
        });
      };
      forEachReductionPass(e, vectorLength, block, pass);
    });
  };
  if (!blocked)
    return forEachColumnTile(e, options.parallel, options.stridedColumns,
                             numColumns, columnsPerTile, onePass);

  int64_t columnTiles = numColumns / columnsPerTile;
  int64_t mainColumns = columnTiles * columnsPerTile;

  int64_t tilesPerChunk =
      std::max<int64_t>(1, llvm::divideCeil(columnTiles, kMaxColumnChunks));
  int64_t chunks =
      std::max<int64_t>(1, llvm::divideCeil(columnTiles, tilesPerChunk));
  Value partials = f32Buffer(
      e,
      {chunks, options.rowBlock, columnsPerTile * weightRowsPerColumn * lanes},
      {});
  Value fewRows = e.cmpi(arith::CmpIPredicate::ule, numRows,
                         e.index(options.tileRows));
  auto tile = [&](Emitter &e, ArrayRef<Value> columns, Value chunk) {
    e.ifThenElse(
        fewRows, [&](Emitter &e) { onePass(e, columns); },
        [&](Emitter &e) {
          blockedPasses(e, columns, e.sliceAt(partials, chunk));
        });
  };
  forEachColumnChunk(
      e, options.parallel, columnTiles, tilesPerChunk,
      [&](Emitter &e, Value chunk, Value first, Value last) {
        e.forEach(first, last, [&](Emitter &e, Value t) {
          tile(e,
               tileColumns(e, t, columnTiles, columnsPerTile,
                           options.stridedColumns),
               chunk);
        });
      });
  if (mainColumns < numColumns)
    e.forEach(e.index(mainColumns), e.index(numColumns),
              [&](Emitter &e, Value column) { tile(e, {column}, e.index(0)); });
}

/// Every dot-product column tile streams an expert's whole input past its
/// weight rows, and every chunk of outer-product tiles its transposed copy,
/// so that input must stay in cache. A larger expert runs as blocks of rows
/// that fit: at Mixtral's shape and 2048 tokens (512 rows per expert, 8 MiB
/// of input to gate/up and 28 MiB to down), bench/run measured 53 active
/// GFLOP/s without blocks, 96 with blocks of 2 MiB (one pass over the
/// reduction then). With reduction passes, blocks of 8 MiB were slower at
/// that shape (16.6 s against 15.1 s a call) and faster at DeepSeek-V2-Lite's
/// (2.94 s against 3.05 s).
static constexpr int64_t kMaxBlockInputBytes = 2 * 1024 * 1024;
/// A block takes up to kMinBlockRows rows all the same while its input fits
/// kMaxLongBlockInputBytes: 2 MiB alone cut Mixtral's down projection
/// (14336 long) into blocks of 36 rows, each of which streamed the weights
/// again and widened bf16 ones once per pass for 2 or 3 tiles of rows (a
/// fifth of that projection's time at 2048 tokens in bf16). Blocks of 128
/// rows took Mixtral at 2048 tokens from 13.9 to 12.2 s a call in f32 and
/// from 14.7 to 12.9 s in bf16, and bf16 at 512 tokens from 4.05 to 3.68 s;
/// f32 at 512 and bf16 at 128 tokens were unchanged (same process).
static constexpr int64_t kMinBlockRows = 128;
static constexpr int64_t kMaxLongBlockInputBytes = 8 * 1024 * 1024;

/// The products of a projection over one block of rows: outer-product tiles
/// from `options.broadcastMinRows` rows on, where moving the input pays for
/// itself; dot-product tiles otherwise, or when `broadcastWeightRows` is 0.
static void forEachBlockProductTile(Emitter &e,
                                    const MoELowerExpertsOptions &options,
                                    Value numRows, int64_t numColumns,
                                    int64_t columnsPerTile,
                                    int64_t weightRowsPerColumn,
                                    int64_t length, InputRow inputRow,
                                    WeightRows weightRows,
                                    TileEpilogue epilogue) {
  auto dotTiles = [&](Emitter &e) {
    forEachDotTile(e, options, numRows, numColumns, columnsPerTile,
                   weightRowsPerColumn, length, inputRow, weightRows,
                   epilogue);
  };
  if (options.broadcastWeightRows == 0)
    return dotTiles(e);
  e.ifThenElse(
      e.cmpi(arith::CmpIPredicate::uge, numRows,
             e.index(options.broadcastMinRows)),
      [&](Emitter &e) {
        forEachBroadcastTile(e, options, numRows, numColumns,
                             weightRowsPerColumn, length, inputRow, weightRows,
                             epilogue);
      },
      dotTiles);
}

/// The products of a projection, in the fewest blocks of rows that fit the
/// limits above (kMaxBlockInputBytes, kMinBlockRows), their sizes at most
/// one row apart.
/// Blocks of the most rows that fit left Mixtral's experts at 512 tokens
/// (113 to 137 rows, 128 a block of gate/up input) last blocks of up to 9
/// rows, each streaming its expert's weights again through dot-product
/// tiles (an estimated 4% of such a call; same-process A/Bs at the
/// bench's shapes were within noise).
static void forEachProductTile(Emitter &e,
                               const MoELowerExpertsOptions &options,
                               Value numRows, int64_t numColumns,
                               int64_t columnsPerTile,
                               int64_t weightRowsPerColumn, int64_t length,
                               InputRow inputRow, WeightRows weightRows,
                               TileEpilogue epilogue) {
  int64_t rowBytes = 4 * length;
  int64_t maxRows = std::max<int64_t>(
      {1, kMaxBlockInputBytes / rowBytes,
       std::min(kMinBlockRows, kMaxLongBlockInputBytes / rowBytes)});
  Value blocks = e.ceilDivIndex(numRows, e.index(maxRows));
  // Block b holds rows [b · numRows / blocks, (b + 1) · numRows / blocks).
  auto blockStart = [&](Emitter &e, Value b) {
    return e.divIndex(e.mul(b, numRows), blocks);
  };
  e.forEach(e.index(0), blocks, [&](Emitter &e, Value b) {
    Value first = blockStart(e, b);
    Value count = e.sub(blockStart(e, e.add(b, e.index(1))), first);
    forEachBlockProductTile(
        e, options, count, numColumns, columnsPerTile, weightRowsPerColumn,
        length,
        [&](Emitter &e, Value i) { return inputRow(e, e.add(first, i)); },
        weightRows,
        [&](Emitter &e, ArrayRef<Value> rows, ArrayRef<Value> columns,
            ArrayRef<Value> sums) {
          SmallVector<Value> planRows;
          for (Value row : rows)
            planRows.push_back(e.add(first, row));
          epilogue(e, planRows, columns, sums);
        });
  });
}

namespace {
/// One expert's FFN weights: row `f` of a projection is
/// `buffer[prefix..., f, :]` and its bias `bias[prefix..., f]`, the prefix
/// the expert's index into the stacked weights.
struct FFNWeights {
  Value gate, up, down;             // gate may be null
  Value gateBias, upBias, downBias; // each may be null
  SmallVector<Value> prefix;
};

/// The factor input row `i` of an FFN is scaled by, or null.
using InputScale = std::function<Value(Emitter &, Value)>;
} // namespace

/// The FFN over `rows` input rows, in register tiles (DotTile.h):
///   hidden[rows, F] = act(in · Wg^T) ⊙ (in · Wu^T)   (or act(in · Wu^T))
///   down[rows, H]   = hidden · Wd^T, handed to `epilogue` tile by tile with
///                     the row relative to the first.
/// With `fuseActivation` a tile of gate and up sums goes straight to
/// `act(gate) ⊙ up`, so only the product is stored; otherwise both
/// projections are stored whole first. The projections are linear, so an
/// `inputScale` of row i scales its gate and up sums; the biases are then
/// added to the sums.
static void buildFFN(Emitter &e, Value rows,
                     function_ref<DotRow(Emitter &, Value)> inputRow,
                     const FFNWeights &weights,
                     const FFNActivation &activation,
                     const MoELowerExpertsOptions &options,
                     const InputScale &inputScale,
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
  // A tile's biases, one per column in f32, loaded once for all its rows;
  // none without `bias`.
  auto biasesOf = [&](Emitter &e, Value bias, ArrayRef<Value> columns) {
    SmallVector<Value> biases;
    if (!bias)
      return biases;
    for (Value column : columns) {
      SmallVector<Value> at(weights.prefix);
      at.push_back(column);
      biases.push_back(e.toF32(e.load(bias, at)));
    }
    return biases;
  };

  Value activated = f32Buffer(e, {ShapedType::kDynamic, intermediate}, rows);
  Value upWhole, gateWhole;
  if (!fuseActivation) {
    upWhole = f32Buffer(e, {ShapedType::kDynamic, intermediate}, rows);
    if (gated)
      gateWhole = f32Buffer(e, {ShapedType::kDynamic, intermediate}, rows);
  }
  // A gated tile pairs each up row with its gate row.
  int64_t columnsPerTile = gated ? options.tileWeightRows / 2 : options.tileWeightRows;
  forEachProductTile(
      e, options, rows, intermediate, columnsPerTile, gated ? 2 : 1, hidden,
      inputRow,
      WeightRows{[&](Emitter &e, ArrayRef<Value> columns) {
        SmallVector<DotRow> rhs;
        for (Value f : columns)
          rhs.push_back(weightRow(weights.up, f));
        if (gated)
          for (Value f : columns)
            rhs.push_back(weightRow(weights.gate, f));
        return rhs;
      }, upType.getElementType()},
      [&](Emitter &e, ArrayRef<Value> tileRows, ArrayRef<Value> columns,
          ArrayRef<Value> sums) {
        size_t width = gated ? 2 * columns.size() : columns.size();
        SmallVector<Value> upBiases = biasesOf(e, weights.upBias, columns);
        SmallVector<Value> gateBiases = biasesOf(e, weights.gateBias, columns);
        for (size_t m = 0; m < tileRows.size(); ++m) {
          Value scale = inputScale ? inputScale(e, tileRows[m]) : Value();
          for (size_t n = 0; n < columns.size(); ++n) {
            Value up = sums[m * width + n];
            Value gate = gated ? sums[m * width + columns.size() + n] : Value();
            if (scale) {
              up = e.mul(up, scale);
              if (gated)
                gate = e.mul(gate, scale);
            }
            if (!upBiases.empty())
              up = e.add(up, upBiases[n]);
            if (!gateBiases.empty())
              gate = e.add(gate, gateBiases[n]);
            SmallVector<Value> at = {tileRows[m], columns[n]};
            if (!fuseActivation) {
              e.store(up, upWhole, at);
              if (gated)
                e.store(gate, gateWhole, at);
              continue;
            }
            Value product =
                gated ? applyGatedActivation(e, activation, gate, up)
                      : applyActivation(e, activation.kind, up);
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
                         return applyActivation(e, activation.kind, args[0]);
                       return applyGatedActivation(e, activation, args[1],
                                                   args[0]);
                     });
  }

  forEachProductTile(
      e, options, rows, hidden, options.tileWeightRows, 1, intermediate,
      [&](Emitter &, Value i) -> DotRow { return {activated, {i}}; },
      WeightRows{[&](Emitter &, ArrayRef<Value> columns) {
        SmallVector<DotRow> rhs;
        for (Value c : columns)
          rhs.push_back(weightRow(weights.down, c));
        return rhs;
      }, cast<MemRefType>(weights.down.getType()).getElementType()},
      [&](Emitter &e, ArrayRef<Value> tileRows, ArrayRef<Value> columns,
          ArrayRef<Value> sums) {
        SmallVector<Value> biases = biasesOf(e, weights.downBias, columns);
        for (size_t m = 0; m < tileRows.size(); ++m) {
          SmallVector<Value> row(sums.slice(m * columns.size(), columns.size()));
          for (size_t n = 0; n < biases.size(); ++n)
            row[n] = e.add(row[n], biases[n]);
          epilogue(e, tileRows[m], columns, row);
        }
      });
}

/// Every routed expert's FFN over its plan segment; experts without rows
/// are skipped. With `fuseGather` the projections read x through the plan;
/// otherwise the segment's rows are first copied out. The epilogue gets
/// plan rows.
static void buildExpertLoop(Emitter &e, const ExpertBuffers &buffers,
                            const MoELowerExpertsOptions &options,
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
        return e.divIndex(clamped, slotsPerToken);
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
      FFNWeights weights{buffers.gate,     buffers.up,     buffers.down,
                         buffers.gateBias, buffers.upBias, buffers.downBias,
                         {expert}};
      // The routing weight of the slot plan row `start + i` serves; padding
      // rows compute on token 0 and are never read.
      InputScale inputScale;
      if (buffers.inputWeights)
        inputScale = [&](Emitter &e, Value i) -> Value {
          Value slot = e.toIndex(e.load(buffers.slots, e.add(start, i)));
          Value clamped = arith::MaxSIOp::create(e.builder(), e.location(),
                                                 slot, e.index(0));
          return e.load(buffers.inputWeights,
                        {e.divIndex(clamped, slotsPerToken),
                         e.remIndex(clamped, slotsPerToken)});
        };
      buildFFN(e, rows, inputRow, weights, buffers.activation, options,
               inputScale,
               [&](Emitter &e, Value row, ArrayRef<Value> columns,
                   ArrayRef<Value> sums) {
                 epilogue(e, e.add(start, row), columns, sums);
               });
    });
  });
}

static ExpertBuffers readExpertBuffers(Emitter &e, ExpertOp op) {
  ExpertBuffers buffers;
  buffers.input = e.readBuffer(op.getInput());
  buffers.slots = e.readBuffer(op.getSlots());
  buffers.offsets = e.readBuffer(op.getOffsets());
  buffers.gate = e.readOptionalBuffer(op.getGateProj());
  buffers.up = e.readBuffer(op.getUpProj());
  buffers.down = e.readBuffer(op.getDownProj());
  buffers.gateBias = e.readOptionalBuffer(op.getGateBias());
  buffers.upBias = e.readOptionalBuffer(op.getUpBias());
  buffers.downBias = e.readOptionalBuffer(op.getDownBias());
  buffers.inputWeights = e.readOptionalBuffer(op.getInputWeights());
  buffers.slotsPerToken = op.getSlotsPerToken();
  buffers.activation = activationOf(op);
  return buffers;
}

/// A moe.expert whose only user is a moe.combine is lowered together with it.
static bool isFusedIntoCombine(ExpertOp op) {
  return op->hasOneUse() && isa<CombineOp>(*op->getUsers().begin());
}

/// `options` with the tiling of `op`'s `lowering_config`, when it has one
/// (moe-configure-cpu).
static MoELowerExpertsOptions tilingOf(Operation *op,
                                       MoELowerExpertsOptions options) {
  auto config =
      op->getAttrOfType<LoweringConfigAttr>(kLoweringConfigAttrName);
  if (!config)
    return options;
  options.vectorLanes = config.getVectorLanes();
  options.tileRows = config.getTileRows();
  options.tileWeightRows = config.getTileWeightRows();
  options.reductionBlock = config.getReductionBlock();
  options.rowBlock = config.getRowBlock();
  options.broadcastWeightRows = config.getBroadcastWeightRows();
  options.broadcastMinRows = config.getBroadcastMinRows();
  options.broadcastReductionBlock = config.getBroadcastReductionBlock();
  options.stridedColumns = config.getStridedColumns();
  return options;
}

namespace {
/// moe.expert alone: every plan row's FFN output, written into its row.
struct LowerExpert : OpRewritePattern<ExpertOp> {
  LowerExpert(MLIRContext *context, MoELowerExpertsOptions options)
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
    DownEpilogue epilogue = [&](Emitter &e, Value row, ArrayRef<Value> columns,
                                ArrayRef<Value> sums) {
      for (size_t n = 0; n < sums.size(); ++n)
        e.store(sums[n], rows, {row, columns[n]});
    };
    buildExpertLoop(e, readExpertBuffers(e, op), tilingOf(op, options),
                    epilogue);
    rewriter.replaceOp(op, e.asTensor(rows, resultType));
    return success();
  }

  MoELowerExpertsOptions options;
};

/// moe.combine of a moe.expert: the down projection's epilogue scales each
/// tile's sums by the row's routing weight and adds them to its token's
/// output, so no `[rows, H]` expert output exists. Experts run in order, so
/// the sum is deterministic.
struct LowerExpertCombine : OpRewritePattern<CombineOp> {
  LowerExpertCombine(MLIRContext *context, MoELowerExpertsOptions options)
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
    // Without weights the expert rows arrive weighted.
    Value weights = e.readOptionalBuffer(op.getWeights());
    Value slotsPerToken = e.index(buffers.slotsPerToken);
    DownEpilogue epilogue = [&](Emitter &e, Value row, ArrayRef<Value> columns,
                                ArrayRef<Value> sums) {
      Value slot = e.load(buffers.slots, row);
      e.ifThen(e.cmpi(arith::CmpIPredicate::sge, slot, e.i64(0)),
               [&](Emitter &e) {
                 Value flat = e.toIndex(slot);
                 Value token = e.divIndex(flat, slotsPerToken);
                 Value j = e.remIndex(flat, slotsPerToken);
                 Value weight =
                     weights ? e.load(weights, {token, j}) : Value();
                 for (size_t n = 0; n < sums.size(); ++n) {
                   SmallVector<Value> at = {token, columns[n]};
                   Value term = weight ? e.mul(weight, sums[n]) : sums[n];
                   e.store(e.add(e.load(accumulator, at), term), accumulator,
                           at);
                 }
               });
    };
    buildExpertLoop(e, buffers, tilingOf(expert, options), epilogue);
    if (Value bias = op.getBias())
      e.genericInPlace(e.readBuffer(bias), accumulator,
                       {e.map(2, {1}), e.map(2, {0, 1})},
                       {kParallel, kParallel},
                       [](Emitter &e, ValueRange args) {
                         return e.add(args[1], e.toF32(args[0]));
                       });

    Value sum = e.asTensor(accumulator, accumulatorType);
    rewriter.replaceOp(op, e.roundTo(sum, resultType, dynamicTokens));
    rewriter.eraseOp(expert);
    return success();
  }

  MoELowerExpertsOptions options;
};

struct MoELowerExpertsPass
    : moe::impl::MoELowerExpertsBase<MoELowerExpertsPass> {
  using Base::Base;

  void runOnOperation() override {
    // The tiling options obey the rules of a #moe.lowering_config.
    auto emitError = [&] {
      return getOperation()->emitError() << "moe-lower-experts: ";
    };
    if (failed(LoweringConfigAttr::verify(
            emitError, vectorLanes, tileRows, tileWeightRows, reductionBlock,
            rowBlock, broadcastWeightRows, broadcastMinRows,
            broadcastReductionBlock, stridedColumns)))
      return signalPassFailure();
    MoELowerExpertsOptions options{
        fuseGather,     fuseActivation,      fuseCombine,
        parallel,       stridedColumns,      vectorLanes,
        tileRows,       tileWeightRows,      reductionBlock,
        rowBlock,       broadcastWeightRows, broadcastMinRows,
        broadcastReductionBlock};
    // A shared expert still whole is decomposed here (untiled, its
    // relayouts lowered); the pipeline decomposes it on the linalg stage,
    // where it is tiled.
    RewritePatternSet patterns(&getContext());
    populateDecomposeSharedExpertPatterns(patterns);
    if (fuseCombine)
      patterns.add<LowerExpertCombine>(&getContext(), options);
    patterns.add<LowerExpert>(&getContext(), options);
    IRRewriter rewriter(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))) ||
        failed(lowerRelayouts(rewriter, getOperation())))
      signalPassFailure();
  }
};
} // namespace

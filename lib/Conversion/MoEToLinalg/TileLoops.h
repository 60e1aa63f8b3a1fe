//===- TileLoops.h - Loops over register tiles --------------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// The loops around register tiles that the router logits and the expert
// projections share: rows and columns in tiles with their remainders,
// column tiles in chunks across threads, and a reduction in passes.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOLINALG_TILELOOPS_H
#define MOE_LIB_CONVERSION_MOETOLINALG_TILELOOPS_H

#include "Emitter.h"

namespace mlir::moe {

/// `count` consecutive indices from `first`.
inline SmallVector<Value> indicesFrom(Emitter &e, Value first, int64_t count) {
  SmallVector<Value> indices;
  for (int64_t n = 0; n < count; ++n)
    indices.push_back(e.add(first, e.index(n)));
  return indices;
}

/// Calls `tile` on rows [first, first + count) in tiles of `tileRows`; the
/// last tile takes the 1 to tileRows - 1 rows left, so that few rows
/// (decode) still read each weight row once.
inline void forEachRowTile(Emitter &e, int64_t tileRows, Value first,
                           Value count,
                           function_ref<void(Emitter &, ArrayRef<Value>)> tile) {
  Value step = e.index(tileRows);
  Value mainRows = e.mul(e.divIndex(count, step), step);
  e.forEachStep(e.index(0), mainRows, step, [&](Emitter &e, Value i0) {
    tile(e, indicesFrom(e, e.add(first, i0), tileRows));
  });
  Value left = e.sub(count, mainRows);
  std::function<void(Emitter &, int64_t)> remainder = [&](Emitter &e,
                                                           int64_t n) {
    if (n == 0)
      return;
    e.ifThenElse(
        e.cmpi(arith::CmpIPredicate::eq, left, e.index(n)),
        [&](Emitter &e) { tile(e, indicesFrom(e, e.add(first, mainRows), n)); },
        [&](Emitter &e) { remainder(e, n - 1); });
  };
  remainder(e, tileRows - 1);
}

/// The columns of column tile `t` of `columnTiles` tiles of `count`: side
/// by side, or with `strided` one from each of `count` equal parts of the
/// tiled columns, `columnTiles` apart. Consecutive strided tiles then walk
/// each part's weight rows in order, so a thread's tiles read them as
/// `count` long sequential streams rather than short runs, which the
/// hardware prefetchers follow poorly.
inline SmallVector<Value> tileColumns(Emitter &e, Value t, int64_t columnTiles,
                                      int64_t count, bool strided) {
  if (!strided)
    return indicesFrom(e, e.mul(t, e.index(count)), count);
  SmallVector<Value> columns;
  for (int64_t n = 0; n < count; ++n)
    columns.push_back(e.add(t, e.index(n * columnTiles)));
  return columns;
}

/// Calls `tile` on the columns [0, numColumns) in tiles of `columnsPerTile`
/// (see tileColumns), split across threads with `parallel`, then on each
/// remaining column alone.
inline void forEachColumnTile(
    Emitter &e, bool parallel, bool strided, int64_t numColumns,
    int64_t columnsPerTile,
    function_ref<void(Emitter &, ArrayRef<Value>)> tile) {
  int64_t columnTiles = numColumns / columnsPerTile;
  int64_t mainColumns = columnTiles * columnsPerTile;
  auto mainTile = [&](Emitter &e, Value t) {
    tile(e, tileColumns(e, t, columnTiles, columnsPerTile, strided));
  };
  if (mainColumns > 0 && parallel)
    e.parallelForEachStep(e.index(0), e.index(columnTiles), e.index(1),
                          mainTile);
  else if (mainColumns > 0)
    e.forEach(e.index(0), e.index(columnTiles), mainTile);
  if (mainColumns < numColumns)
    e.forEach(e.index(mainColumns), e.index(numColumns),
              [&](Emitter &e, Value column) { tile(e, {column}); });
}

/// Calls `chunk(c, firstTile, lastTile)` on the column tiles
/// [0, columnTiles) in chunks of `tilesPerChunk` consecutive tiles, chunk
/// `c` holding [firstTile, lastTile); with `parallel` the chunks are split
/// across threads.
inline void forEachColumnChunk(
    Emitter &e, bool parallel, int64_t columnTiles, int64_t tilesPerChunk,
    function_ref<void(Emitter &, Value, Value, Value)> chunk) {
  if (columnTiles == 0)
    return;
  int64_t chunks = llvm::divideCeil(columnTiles, tilesPerChunk);
  auto body = [&](Emitter &e, Value c) {
    Value firstTile = e.mul(c, e.index(tilesPerChunk));
    Value lastTile = e.minIndex(e.add(firstTile, e.index(tilesPerChunk)),
                                e.index(columnTiles));
    chunk(e, c, firstTile, lastTile);
  };
  if (parallel)
    e.parallelForEachStep(e.index(0), e.index(chunks), e.index(1), body);
  else
    e.forEach(e.index(0), e.index(chunks), body);
}

/// Calls `pass(k0, k1, last)` on the reduction [0, end) in passes of
/// `block`, the last pass taking the 1 to `block` elements left.
inline void forEachReductionPass(
    Emitter &e, int64_t end, int64_t block,
    function_ref<void(Emitter &, Value, Value, bool)> pass) {
  int64_t lastBegin = (end - 1) / block * block;
  if (lastBegin > 0)
    e.forEachStep(e.index(0), e.index(lastBegin), e.index(block),
                  [&](Emitter &e, Value k0) {
                    pass(e, k0, e.add(k0, e.index(block)), false);
                  });
  pass(e, e.index(lastBegin), e.index(end), true);
}

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOLINALG_TILELOOPS_H

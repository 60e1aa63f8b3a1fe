//===- CPUTiles.cpp - The expert kernels' tiling per target CPU -----------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Compiler/CPUTiles.h"

using namespace mlir::moe;

/// A register tile's weight rows, over one pass of the reduction, take
/// about half of a 32 KiB L1 data cache; the other half holds the input
/// rows streaming past.
static constexpr int64_t kWeightTileBytes = 16 * 1024;

void mlir::moe::chooseCPUTiles(const CPUFeatures &features,
                               const LayerConfig &config,
                               CPUPipelineOptions &options) {
  // Accumulators take half the vector registers, the rows loaded per step
  // most of the rest: 4 × 4 of 32 zmm, 2 × 4 of 16 ymm.
  if (features.avx512) {
    options.vectorLanes = 16;
    options.tileRows = 4;
  } else {
    options.vectorLanes = 8;
    options.tileRows = 2;
  }
  options.tileWeightRows = 4;
  options.reductionBlock =
      kWeightTileBytes / (options.tileWeightRows * elementBytes(config.dtype));
  options.rowBlock = 32;
  // Outer-product tiles: N weight rows by two vectors of input rows take
  // 2N accumulators, plus two input vectors and a broadcast: 12 × 2 of 32
  // zmm, 6 × 2 of 16 ymm. Measured on AVX2 at the bench/run shapes, the
  // transposed input pays for moving it once an expert fills one vector of
  // rows; below that, dot products waste no lanes.
  options.broadcastWeightRows = features.avx512 ? 12 : 6;
  options.broadcastMinRows = options.vectorLanes;
  // bf16 and f16 weights are first widened into an f32 copy per pass, which
  // one vector of rows does not repay: Mixtral bf16 at T = 32, 8 rows an
  // expert, took 489 ms a call from 8 rows, 340 from 16 (same process).
  if (elementBytes(config.dtype) < 4)
    options.broadcastMinRows = 2 * options.vectorLanes;
  // A row tile's slice of the transposed f32 input over one reduction pass
  // (two vectors of rows) takes the same half of L1 as a dot tile's weights.
  options.broadcastReductionBlock =
      kWeightTileBytes / (2 * options.vectorLanes * 4);
}

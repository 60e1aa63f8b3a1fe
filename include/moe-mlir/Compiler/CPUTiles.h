//===- CPUTiles.h - The expert kernels' tiling per target CPU ---*- C++ -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_COMPILER_CPUTILES_H
#define MOE_COMPILER_CPUTILES_H

#include "moe-mlir/Compiler/Config.h"

#include <cstdint>

namespace mlir::moe {

/// What the expert kernels' tiling depends on in the target CPU.
struct CPUFeatures {
  bool avx512 = false; // 32 registers of 16 f32 lanes, else 16 of 8
};

/// The register and cache tiling of the expert kernels (the
/// moe-lower-experts options of the same names).
struct CPUTileShape {
  int64_t vectorLanes;
  int64_t tileRows;
  int64_t tileWeightRows;
  int64_t reductionBlock;
  int64_t rowBlock;
};

/// The tiling for `config` on a CPU with `features`.
CPUTileShape chooseCPUTiles(const CPUFeatures &features,
                            const LayerConfig &config);

} // namespace mlir::moe

#endif // MOE_COMPILER_CPUTILES_H

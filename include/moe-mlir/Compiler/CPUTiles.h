//===- CPUTiles.h - The expert kernels' tiling per target CPU ---*- C++ -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_COMPILER_CPUTILES_H
#define MOE_COMPILER_CPUTILES_H

#include "moe-mlir/Compiler/Config.h"
#include "moe-mlir/Pipelines/Pipelines.h"

namespace mlir::moe {

/// What the expert kernels' tiling depends on in the target CPU.
struct CPUFeatures {
  bool avx512 = false; // 32 registers of 16 f32 lanes, else 16 of 8
};

/// Sets the expert kernels' tiling options of `options` for `config` on a
/// CPU with `features`.
void chooseCPUTiles(const CPUFeatures &features, const LayerConfig &config,
                    CPUPipelineOptions &options);

} // namespace mlir::moe

#endif // MOE_COMPILER_CPUTILES_H

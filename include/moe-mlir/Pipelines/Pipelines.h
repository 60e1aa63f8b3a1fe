//===- Pipelines.h - moe-mlir's compilation pipelines -----------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_PIPELINES_PIPELINES_H
#define MOE_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassOptions.h"

namespace mlir::moe {

struct CPUPipelineOptions : public PassPipelineOptions<CPUPipelineOptions> {
  Option<int64_t> rowTile{*this, "row-tile",
                          llvm::cl::desc("Rows per expert tile of the plan"),
                          llvm::cl::init(1)};
};

/// moe.layer (and any stage op) down to the LLVM dialect for the host CPU:
/// expand, lower each stage to linalg/scf, bufferize, lower to loops, then
/// to LLVM.
void buildCPUPipeline(OpPassManager &pm, const CPUPipelineOptions &options);

/// Registers `moe-cpu-pipeline` with the pass registry.
void registerPipelines();

} // namespace mlir::moe

#endif // MOE_PIPELINES_PIPELINES_H

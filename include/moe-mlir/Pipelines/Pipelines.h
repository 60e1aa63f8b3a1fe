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
  Option<bool> fuseGate{*this, "fuse-gate",
                        llvm::cl::desc("Score and select per token tile"),
                        llvm::cl::init(true)};
  Option<bool> fuseGather{*this, "fuse-gather",
                          llvm::cl::desc("Read expert rows through the plan"),
                          llvm::cl::init(true)};
  Option<bool> fuseActivation{
      *this, "fuse-activation",
      llvm::cl::desc("act(gate) * up in the projections' epilogue"),
      llvm::cl::init(true)};
  Option<bool> fuseCombine{
      *this, "fuse-combine",
      llvm::cl::desc("Accumulate the down projection into the outputs"),
      llvm::cl::init(true)};
};

/// moe.layer (and any stage op) down to the LLVM dialect for the host CPU:
/// expand, lower each stage to linalg/scf, bufferize, lower to loops, then
/// to LLVM.
void buildCPUPipeline(OpPassManager &pm, const CPUPipelineOptions &options);

/// Registers `moe-cpu-pipeline` with the pass registry.
void registerPipelines();

} // namespace mlir::moe

#endif // MOE_PIPELINES_PIPELINES_H

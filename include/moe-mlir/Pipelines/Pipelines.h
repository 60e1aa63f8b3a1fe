//===- Pipelines.h - moe-mlir's compilation pipelines -----------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_PIPELINES_PIPELINES_H
#define MOE_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassOptions.h"

#include <string>

namespace mlir {
class ModuleOp;
} // namespace mlir

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
  Option<bool> stridedColumns{
      *this, "strided-columns",
      llvm::cl::desc("A dot-product tile's columns lie a tile count apart"),
      llvm::cl::init(true)};
  Option<int64_t> vectorLanes{
      *this, "vector-lanes",
      llvm::cl::desc("f32 lanes per accumulator of the router and expert "
                     "kernels (with a target: the router contraction's "
                     "split reduction)"),
      llvm::cl::init(16)};
  Option<int64_t> tileRows{*this, "tile-rows",
                           llvm::cl::desc("Input rows per register tile"),
                           llvm::cl::init(4)};
  Option<int64_t> tileWeightRows{
      *this, "tile-weight-rows",
      llvm::cl::desc("Weight rows per register tile"), llvm::cl::init(4)};
  Option<int64_t> reductionBlock{
      *this, "reduction-block",
      llvm::cl::desc("Reduction elements per pass (0: one pass)"),
      llvm::cl::init(0)};
  Option<int64_t> rowBlock{
      *this, "row-block",
      llvm::cl::desc("Input rows whose partial sums a pass keeps"),
      llvm::cl::init(64)};
  Option<int64_t> broadcastWeightRows{
      *this, "broadcast-weight-rows",
      llvm::cl::desc("Weight rows per outer-product tile (0: dot products "
                     "only)"),
      llvm::cl::init(0)};
  Option<int64_t> broadcastMinRows{
      *this, "broadcast-min-rows",
      llvm::cl::desc("Rows from which an expert takes outer-product tiles"),
      llvm::cl::init(16)};
  Option<int64_t> broadcastReductionBlock{
      *this, "broadcast-reduction-block",
      llvm::cl::desc("Reduction elements per pass of the outer-product tiles "
                     "over more than one tile of rows (0: one pass)"),
      llvm::cl::init(0)};
};

/// The CPU pipeline up to the end of the linalg stage (what `moe-compile
/// --emit=linalg` writes): expand, the gate's router contraction on
/// tensors, and each op's lowering config for the module's target.
void buildCPULinalgStage(OpPassManager &pm,
                         const CPUPipelineOptions &options);

/// moe.layer (and any stage op) down to the LLVM dialect for the host CPU:
/// expand, lower each stage to linalg/scf, bufferize, lower to loops, then
/// to LLVM.
void buildCPUPipeline(OpPassManager &pm, const CPUPipelineOptions &options);

/// The GPU pipeline's default plan row tile: every expert's segment of the
/// plan is padded to a multiple of it.
inline constexpr int64_t kGPURowTile = 64;

struct GPUPipelineOptions : public PassPipelineOptions<GPUPipelineOptions> {
  Option<std::string> chips{
      *this, "chips",
      llvm::cl::desc("Comma-separated NVIDIA targets, a cubin each (sm_XY)"),
      llvm::cl::init("sm_80,sm_90")};
  Option<std::string> toolkit{
      *this, "toolkit",
      llvm::cl::desc("CUDA toolkit root: bin/ptxas, bin/fatbinary and "
                     "nvvm/libdevice (empty: ptxas on PATH)"),
      llvm::cl::init("")};
  Option<std::string> binary{
      *this, "binary",
      llvm::cl::desc("What the kernels become: 'fatbin' (one fat binary "
                     "with a cubin per chip), 'ptx' (PTX per chip) or "
                     "'nvvm' (stop at the NVVM dialect)"),
      llvm::cl::init("fatbin")};
  Option<bool> emulate{
      *this, "emulate",
      llvm::cl::desc("The same kernels for the CPU: each block's threads "
                     "an OpenMP team (testing without a GPU)"),
      llvm::cl::init(false)};
  Option<int64_t> rowTile{*this, "row-tile",
                          llvm::cl::desc("Plan rows per expert kernel block"),
                          llvm::cl::init(kGPURowTile)};
};

/// moe.layer (and any stage op) down to the LLVM dialect with NVIDIA GPU
/// kernels: expand, lower each stage to kernels over device buffers,
/// bufferize, outline the kernels, run them on the function's stream, then
/// NVVM, and a fat binary of cubins the host code launches. With
/// `emulate`, the kernels are lowered for the CPU instead.
void buildGPUPipeline(OpPassManager &pm, const GPUPipelineOptions &options);

/// After the GPU pipeline with `binary=ptx`: the PTX of the newest chip it
/// compiled for (the one the library also embeds for GPUs newer than every
/// cubin); empty if there is none.
std::string newestPTX(ModuleOp module);

/// Upstream's lowering of loops, memrefs, vectors, math and OpenMP to the
/// LLVM dialect on the host, the end of the CPU pipeline.
void buildHostLoopsToLLVM(OpPassManager &pm);

/// Registers `moe-cpu-pipeline` and `moe-gpu-pipeline` with the pass
/// registry.
void registerPipelines();

} // namespace mlir::moe

#endif // MOE_PIPELINES_PIPELINES_H

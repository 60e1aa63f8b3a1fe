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
  Option<bool> fuseGather{
      *this, "fuse-gather",
      llvm::cl::desc("Gather expert rows straight into the packed layout"),
      llvm::cl::init(true)};
  Option<bool> fuseActivation{
      *this, "fuse-activation",
      llvm::cl::desc("Fuse the gate and up contractions into the "
                     "activation's tiles"),
      llvm::cl::init(true)};
  Option<bool> fuseCombine{
      *this, "fuse-combine",
      llvm::cl::desc("Add each expert's rows into the combined output"),
      llvm::cl::init(true)};
  Option<int64_t> vectorLanes{
      *this, "vector-lanes",
      llvm::cl::desc("f32 lanes of a vector, in place of the target's (-1: "
                     "16 with avx512f, else 8)"),
      llvm::cl::init(-1)};
};

/// The CPU pipeline up to the end of the linalg stage (what `moe-compile
/// --emit=linalg` writes): expand, the router contractions, the shared
/// expert and the routed experts as linalg ops on tensors, and each op's
/// lowering config for the module's target.
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
                     "as loops split at its barriers (testing without a "
                     "GPU)"),
      llvm::cl::init(false)};
  Option<int64_t> rowTile{*this, "row-tile",
                          llvm::cl::desc("Plan rows per expert kernel block"),
                          llvm::cl::init(kGPURowTile)};
  Option<bool> permuteFragments{
      *this, "permute-fragments",
      llvm::cl::desc("Misplace the tensor-core kernels' A fragment "
                     "registers 1 and 2 (to test the emulation)"),
      llvm::cl::init(false)};
};

/// The GPU's linalg stage of moe.layer, before tiling: expand, the expert
/// FFNs as grouped contractions and combine as a gather-reduction, with
/// each kernel's block and thread tiles (moe-decompose-grouped,
/// moe-lower-combine, moe-configure-gpu).
void buildGPULinalgStage(OpPassManager &pm, const GPUPipelineOptions &options);

/// moe.layer (and any stage op) down to the LLVM dialect with NVIDIA GPU
/// kernels: the linalg stage tiled into blocks and threads, the other
/// stages lowered to kernels over device buffers, bufferize, the tile loops
/// mapped to kernels, outline them, run them on the function's stream, then
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

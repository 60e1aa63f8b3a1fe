//===- CPUPipeline.cpp - From moe.layer to the LLVM dialect ---------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Pipelines/Pipelines.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"

#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

/// Upstream's half of the pipeline, after bufferization. The order matters:
/// n-D vector transfers and reductions (the vectorized tiles) are unrolled
/// to 1-D ones first, and strided metadata expands into affine ops that
/// lower-affine removes before memrefs become LLVM structs. bf16 conversions are expanded to integer
/// code (round to nearest even) because the C runtime need not have them.
static constexpr const char *kLoopsToLLVM =
    "scf-forall-to-parallel,convert-linalg-to-loops,convert-scf-to-openmp,"
    "canonicalize,"
    "func.func(lower-vector-multi-reduction),"
    "convert-vector-to-scf{full-unroll=true},"
    "convert-math-to-libm,"
    "expand-strided-metadata,"
    "lower-affine,convert-scf-to-cf,arith-expand{include-bf16=true},"
    "convert-vector-to-llvm,finalize-memref-to-llvm,convert-openmp-to-llvm,"
    "convert-math-to-llvm,convert-arith-to-llvm,convert-index-to-llvm,"
    "convert-cf-to-llvm,convert-func-to-llvm,convert-ub-to-llvm,"
    "reconcile-unrealized-casts";

void moe::buildCPULinalgStage(OpPassManager &pm,
                              const CPUPipelineOptions &options) {
  moe::MoEExpandOptions expand;
  expand.rowTile = options.rowTile;
  pm.addPass(moe::createMoEExpand(expand));
  pm.addPass(moe::createMoEDecomposeGate());
  moe::MoEDecomposeSharedExpertOptions shared;
  shared.vectorLanes = options.vectorLanes;
  pm.addPass(moe::createMoEDecomposeSharedExpert(shared));
  moe::MoEDecomposeExpertsOptions experts;
  experts.fuseGather = options.fuseGather;
  experts.fuseCombine = options.fuseCombine;
  experts.vectorLanes = options.vectorLanes;
  pm.addPass(moe::createMoEDecomposeExperts(experts));
  // With a target on the module each op's tiling is chosen for it. Without
  // one the ops stay untiled.
  moe::MoEConfigureCPUOptions configure;
  if (!options.fuseGate)
    configure.tokenTile = 0;
  configure.fuseActivation = options.fuseActivation;
  configure.vectorLanes = options.vectorLanes;
  pm.addPass(moe::createMoEConfigureCPU(configure));
}

void moe::buildCPUPipeline(OpPassManager &pm,
                           const CPUPipelineOptions &options) {
  buildCPULinalgStage(pm, options);
  pm.addPass(moe::createMoETileCPU());
  pm.addPass(moe::createMoELowerGate());
  pm.addPass(moe::createMoELowerDispatch());
  pm.addPass(moe::createMoELowerCombine());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());

  pm.addPass(bufferization::createEmptyTensorEliminationPass());
  pm.addPass(moe::createMoEBufferize());
  bufferization::BufferDeallocationPipelineOptions deallocation;
  bufferization::buildBufferDeallocationPipeline(pm, deallocation);
  // Bufferization leaves copies between equal subviews; CSE makes them self
  // copies, which canonicalization erases.
  pm.addPass(createCSEPass());
  pm.addPass(createCanonicalizerPass());

  buildHostLoopsToLLVM(pm);
}

void moe::buildHostLoopsToLLVM(OpPassManager &pm) {
  if (failed(parsePassPipeline(kLoopsToLLVM, pm)))
    llvm::report_fatal_error("moe-mlir: upstream passes missing");
}

void moe::registerPipelines() {
  PassPipelineRegistration<CPUPipelineOptions>(
      "moe-cpu-pipeline",
      "Compile moe ops to the LLVM dialect for the host CPU",
      buildCPUPipeline);
  PassPipelineRegistration<GPUPipelineOptions>(
      "moe-gpu-pipeline",
      "Compile moe ops to the LLVM dialect with NVIDIA GPU kernels",
      buildGPUPipeline);
}

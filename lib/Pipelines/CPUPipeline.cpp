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
  pm.addPass(moe::createMoEDecomposeSharedExpert());
  // With a target on the module each op's tiling is chosen for it; the
  // tiling options given explicitly override that choice. Without one the
  // lowerings use the options.
  moe::MoEConfigureCPUOptions configure;
  auto overrideOf = [](const auto &option) -> int64_t {
    return option.hasValue() ? int64_t(option) : -1;
  };
  if (!options.fuseGate)
    configure.tokenTile = 0;
  configure.stridedColumns = options.stridedColumns;
  configure.vectorLanes = overrideOf(options.vectorLanes);
  configure.tileRows = overrideOf(options.tileRows);
  configure.tileWeightRows = overrideOf(options.tileWeightRows);
  configure.reductionBlock = overrideOf(options.reductionBlock);
  configure.rowBlock = overrideOf(options.rowBlock);
  configure.broadcastWeightRows = overrideOf(options.broadcastWeightRows);
  configure.broadcastMinRows = overrideOf(options.broadcastMinRows);
  configure.broadcastReductionBlock =
      overrideOf(options.broadcastReductionBlock);
  pm.addPass(moe::createMoEConfigureCPU(configure));
}

void moe::buildCPUPipeline(OpPassManager &pm,
                           const CPUPipelineOptions &options) {
  buildCPULinalgStage(pm, options);
  pm.addPass(moe::createMoETileCPU());
  moe::MoELowerGateOptions gate;
  gate.vectorLanes = options.vectorLanes;
  pm.addPass(moe::createMoELowerGate(gate));
  pm.addPass(moe::createMoELowerDispatch());
  moe::MoELowerExpertsOptions experts;
  experts.fuseGather = options.fuseGather;
  experts.fuseActivation = options.fuseActivation;
  experts.fuseCombine = options.fuseCombine;
  experts.stridedColumns = options.stridedColumns;
  experts.vectorLanes = options.vectorLanes;
  experts.tileRows = options.tileRows;
  experts.tileWeightRows = options.tileWeightRows;
  experts.reductionBlock = options.reductionBlock;
  experts.rowBlock = options.rowBlock;
  experts.broadcastWeightRows = options.broadcastWeightRows;
  experts.broadcastMinRows = options.broadcastMinRows;
  experts.broadcastReductionBlock = options.broadcastReductionBlock;
  pm.addPass(moe::createMoELowerExperts(experts));
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

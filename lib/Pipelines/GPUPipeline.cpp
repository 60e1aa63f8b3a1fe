//===- GPUPipeline.cpp - From moe.layer to NVIDIA GPU kernels -------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Pipelines/Pipelines.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"

#include "mlir/Conversion/GPUCommon/GPUCommonPass.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/ADT/StringExtras.h"

using namespace mlir;

/// The tiled linalg stage's loops as kernels: the outer `scf.forall` of a
/// tile nest over blocks, the inner over threads, their vector ops unrolled
/// to 1-D ones first (as on the CPU).
static constexpr const char *kLoopsToKernels =
    "scf-forall-to-parallel,convert-linalg-to-loops,canonicalize,"
    "func.func(lower-vector-multi-reduction),"
    "convert-vector-to-scf{full-unroll=true},"
    "func.func(moe-map-kernel-loops),convert-parallel-loops-to-gpu,"
    "func.func(moe-name-kernels)";
/// Host and kernels after outlining, up to the NVVM dialect inside each
/// gpu.module (the order of upstream's gpu-lower-to-nvvm-pipeline), the
/// kernels' vector ops first. bf16 conversions become integer code, as on
/// the CPU: sm_80 has no bf16-to-f32 instruction.
static constexpr const char *kHostToLLVM =
    "arith-expand{include-bf16=true},convert-scf-to-cf,convert-func-to-llvm,"
    "expand-strided-metadata";
static constexpr const char *kKernelsToNVVM =
    "lower-affine,gpu.module(moe-mma-sync-to-nvvm,convert-nvgpu-to-nvvm,"
    "convert-vector-to-llvm),convert-arith-to-llvm,"
    "convert-index-to-llvm,canonicalize,cse,"
    "gpu.module(strip-debuginfo,convert-gpu-to-nvvm,"
    "llvm-optimize-for-nvvm-target,canonicalize,cse,"
    "reconcile-unrealized-casts)";
static constexpr const char *kFinish =
    "convert-math-to-llvm,canonicalize,cse,reconcile-unrealized-casts";

static void addParsed(OpPassManager &pm, StringRef pipeline) {
  if (failed(parsePassPipeline(pipeline, pm)))
    llvm::report_fatal_error("moe-gpu-pipeline: upstream passes missing");
}

/// Whether every chip of `chips` (`sm_XY`, comma-separated) has mma.sync on
/// 16-bit floats: sm_80 and newer.
static bool tensorCoresOn(StringRef chips) {
  SmallVector<StringRef> names;
  chips.split(names, ',', -1, /*KeepEmpty=*/false);
  return !names.empty() && llvm::all_of(names, [](StringRef name) {
    unsigned number = 0;
    name = name.trim();
    return name.consume_front("sm_") && !name.consumeInteger(10, number) &&
           number >= 80;
  });
}

void moe::buildGPULinalgStage(OpPassManager &pm,
                              const GPUPipelineOptions &options) {
  moe::MoEExpandOptions expand;
  expand.rowTile = options.rowTile;
  pm.addPass(moe::createMoEExpand(expand));
  moe::MoEDecomposeGroupedOptions grouped;
  grouped.rowTile = options.rowTile;
  pm.addPass(moe::createMoEDecomposeGrouped(grouped));
  moe::MoELowerCombineOptions combine;
  combine.accumulateIntoShared = false;
  pm.addPass(moe::createMoELowerCombine(combine));
  moe::MoEConfigureGPUOptions configure;
  configure.rowTile = options.rowTile;
  configure.tensorCores = tensorCoresOn(options.chips);
  pm.addPass(moe::createMoEConfigureGPU(configure));
}

void moe::buildGPUPipeline(OpPassManager &pm,
                           const GPUPipelineOptions &options) {
  buildGPULinalgStage(pm, options);
  pm.addPass(moe::createMoETileGPU());
  moe::MoELowerToGPUOptions kernels;
  kernels.emulate = options.emulate;
  pm.addPass(moe::createMoELowerToGPU(kernels));
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  // The combine's result is written into the function's output buffer.
  pm.addPass(bufferization::createEmptyTensorEliminationPass());
  pm.addPass(bufferization::createOneShotBufferizePass());
  // Bufferization leaves copies between equal subviews; CSE makes them self
  // copies, which canonicalization erases.
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addPass(createCanonicalizerPass());
  moe::MoEGPUMMASyncOptions mma;
  mma.permuteFragments = options.permuteFragments;
  pm.addNestedPass<func::FuncOp>(moe::createMoEGPUMMASync(mma));
  // The lanes' code repeats its index arithmetic element by element.
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  if (options.emulate)
    pm.addPass(moe::createMoEEmulateWarps());
  moe::MoEPlaceBuffersOptions place;
  place.emulate = options.emulate;
  pm.addNestedPass<func::FuncOp>(moe::createMoEPlaceBuffers(place));
  pm.addNestedPass<func::FuncOp>(moe::createMoEFreeWorkspace());
  if (options.emulate) {
    pm.addNestedPass<func::FuncOp>(moe::createMoENameKernels());
    return buildHostLoopsToLLVM(pm);
  }

  addParsed(pm, kLoopsToKernels);

  pm.addPass(createGpuKernelOutliningPass());
  pm.addNestedPass<func::FuncOp>(createGpuAsyncRegionPass());
  addParsed(pm, kHostToLLVM);
  SmallVector<StringRef> chips;
  StringRef(options.chips).split(chips, ',', -1, /*KeepEmpty=*/false);
  for (StringRef chip : chips) {
    GpuNVVMAttachTargetOptions target;
    target.chip = chip.trim().str();
    target.optLevel = 3;
    pm.addPass(createGpuNVVMAttachTarget(target));
  }
  addParsed(pm, kKernelsToNVVM);
  pm.addPass(createGpuToLLVMConversionPass());
  pm.addPass(moe::createMoEGPUUseStreamArgument());
  if (options.binary != "nvvm") {
    GpuModuleToBinaryPassOptions serialize;
    serialize.toolkitPath = options.toolkit;
    serialize.compilationTarget = "isa";
    pm.addPass(createGpuModuleToBinaryPass(serialize));
  }
  if (options.binary == "fatbin") {
    moe::MoEGPUEmbedFatbinOptions fatbin;
    fatbin.toolkit = options.toolkit;
    pm.addPass(moe::createMoEGPUEmbedFatbin(fatbin));
  }
  addParsed(pm, kFinish);
}

std::string moe::newestPTX(ModuleOp module) {
  std::string ptx;
  int newest = -1;
  module.walk([&](gpu::BinaryOp binary) {
    for (Attribute attr : binary.getObjects()) {
      auto object = cast<gpu::ObjectAttr>(attr);
      auto target = dyn_cast<NVVM::NVVMTargetAttr>(object.getTarget());
      int number = 0;
      if (!target || target.getChip().drop_front(3).take_while(llvm::isDigit)
                         .getAsInteger(10, number))
        continue;
      if (number > newest) {
        newest = number;
        ptx = object.getObject().getValue().str();
      }
    }
  });
  return ptx;
}

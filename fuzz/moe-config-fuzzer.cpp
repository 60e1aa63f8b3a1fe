//===- moe-config-fuzzer.cpp - Fuzzes the config reader -------------------===//
//
// Part of the moe-mlir project.
//
// Any byte string is a candidate config. A rejected one must be rejected
// with an error, never a crash. An accepted one must compile: its JSON reads
// back to the same config, its module verifies (Config.h's promise that the
// verifiers have nothing left to object to), it lowers through its target's
// pipeline with the tiling moe-compile chooses, and its C sources can be
// emitted. A CPU config's module then translates to LLVM IR; a cuda config's
// kernels stop at the NVVM dialect, since assembling them takes the CUDA
// toolkit.
//
//===----------------------------------------------------------------------===//

#include "FuzzContext.h"

#include "moe-mlir/Compiler/CABI.h"
#include "moe-mlir/Compiler/Config.h"
#include "moe-mlir/Compiler/LayerModule.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"
#include "moe-mlir/Pipelines/Pipelines.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/ADT/StringSet.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Support/xxhash.h"

#include <cstdint>
#include <cstdlib>

using namespace mlir;

[[noreturn]] static void broken(const llvm::Twine &promise,
                                llvm::StringRef config) {
  llvm::errs() << "accepted config breaks its promise: " << promise << "\n"
               << config << "\n";
  std::abort();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  llvm::StringRef text(reinterpret_cast<const char *>(data), size);
  llvm::Expected<moe::LayerConfig> config =
      moe::parseLayerConfig(text, "fuzz.json");
  if (!config) {
    llvm::consumeError(config.takeError());
    return 0;
  }
  std::string json = config->toJSON();
  llvm::Expected<moe::LayerConfig> again =
      moe::parseLayerConfig(json, "round-trip.json");
  if (!again) {
    llvm::errs() << llvm::toString(again.takeError()) << "\n";
    broken("its JSON does not read back", json);
  }
  if (again->toJSON() != json)
    broken("its JSON reads back as " + again->toJSON(), json);

  // Lowering dominates a run's time; text that reads back as a config
  // already lowered has nothing new to show it.
  static llvm::StringSet<> lowered;
  if (!lowered.insert(json).second)
    return 0;

  OwningOpRef<ModuleOp> module = moe::buildLayerModule(moe::fuzzContext(), *config);
  if (failed(verify(*module)))
    broken("its module does not verify", json);
  PassManager pm(&moe::fuzzContext());
  if (config->isCUDA()) {
    moe::GPUPipelineOptions options;
    options.chips = config->gpuArch;
    options.binary = "nvvm";
    moe::buildGPUPipeline(pm, options);
  } else {
    // The target moe-compile would set, a CPU with or without AVX-512 as
    // the config's hash falls, so that both tilings are fuzzed.
    MLIRContext &context = moe::fuzzContext();
    SmallVector<Attribute> features = {StringAttr::get(&context, "avx2"),
                                       StringAttr::get(&context, "fma")};
    if (llvm::xxh3_64bits(json) & 1)
      features.push_back(StringAttr::get(&context, "avx512f"));
    (*module)->setAttr(moe::kTargetAttrName,
                       moe::CPUTargetAttr::get(
                           &context, ArrayAttr::get(&context, features)));
    moe::buildCPUPipeline(pm, moe::CPUPipelineOptions());
  }
  if (failed(pm.run(*module)))
    broken("its module does not lower", json);
  llvm::LLVMContext llvmContext;
  if (!config->isCUDA() &&
      !translateModuleToLLVMIR(*module, llvmContext, config->name))
    broken("its module does not translate to LLVM IR", json);
  if (moe::emitHeader(*config).empty() ||
      moe::emitWrapperSource(*config).empty())
    broken("its C sources are empty", json);
  return 0;
}

//===- moe-opt-fuzzer.cpp - Fuzzes parse, verify and lower ----------------===//
//
// Part of the moe-mlir project.
//
// moe-opt's path for a module of moe ops: parse, verify, then the whole CPU
// pipeline down to the LLVM dialect. Every stage may reject its input with a
// diagnostic; none may crash, and a module that verifies must either lower
// to a module that verifies or fail with a diagnostic.
//
// Only modules of moe ops in kernel functions are lowered, so that what is
// found is in this project's verifiers and lowerings rather than upstream's.
//
//===----------------------------------------------------------------------===//

#include "FuzzContext.h"

#include "moe-mlir/Dialect/MoE/IR/MoEDialect.h"
#include "moe-mlir/Pipelines/Pipelines.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"

#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

#include <cstdint>
#include <cstdlib>

using namespace mlir;

/// Whether every op is a moe op or one of those that frame moe ops in a
/// kernel: modules, functions and the tensor views of memref arguments.
static bool onlyMoEKernels(ModuleOp module) {
  WalkResult result = module->walk([](Operation *op) {
    if (isa<ModuleOp, func::FuncOp, func::ReturnOp, bufferization::ToTensorOp,
            bufferization::MaterializeInDestinationOp>(op) ||
        isa<moe::MoEDialect>(op->getDialect()))
      return WalkResult::advance();
    return WalkResult::interrupt();
  });
  return !result.wasInterrupted();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  MLIRContext &ctx = moe::fuzzContext();
  // Diagnostics are expected; they are the rejections being fuzzed.
  ScopedDiagnosticHandler silence(&ctx, [](Diagnostic &) { return success(); });
  llvm::StringRef text(reinterpret_cast<const char *>(data), size);
  // MLIR's lexer reads up to a terminating NUL, which the fuzzer's bytes
  // lack; a copied buffer has one.
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(llvm::MemoryBuffer::getMemBufferCopy(text),
                               llvm::SMLoc());
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, &ctx);
  if (!module || failed(verify(*module)) || !onlyMoEKernels(*module))
    return 0;

  PassManager pm(&ctx);
  moe::buildCPUPipeline(pm, moe::CPUPipelineOptions());
  if (succeeded(pm.run(*module)) && failed(verify(*module))) {
    llvm::errs() << "a verified module lowered to one that does not verify\n"
                 << text << "\n";
    std::abort();
  }
  return 0;
}

//===- UseStreamArgument.cpp - Launch on the stream a caller gives --------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/IR/SymbolTable.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEGPUUSESTREAMARGUMENT
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

/// The runtime calls that make, wait for and destroy the stream of a
/// function's GPU work (gpu-to-llvm's lowering of async tokens).
static constexpr const char *kStreamCreate = "mgpuStreamCreate";
static constexpr const char *kStreamCalls[] = {
    kStreamCreate, "mgpuStreamSynchronize", "mgpuStreamDestroy"};

/// The argument of `function` named `stream`, or null.
static Value streamArgument(LLVM::LLVMFuncOp function) {
  for (unsigned i = 0; i < function.getNumArguments(); ++i) {
    auto name = function.getArgAttrOfType<StringAttr>(i, "moe.name");
    if (name && name.getValue() == "stream")
      return function.getArgument(i);
  }
  return Value();
}

namespace {
struct MoEGPUUseStreamArgumentPass
    : moe::impl::MoEGPUUseStreamArgumentBase<MoEGPUUseStreamArgumentPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    for (auto function : module.getOps<LLVM::LLVMFuncOp>()) {
      Value stream = streamArgument(function);
      if (!stream || function.isExternal())
        continue;
      SmallVector<LLVM::CallOp> calls;
      function.walk([&](LLVM::CallOp call) {
        std::optional<StringRef> callee = call.getCallee();
        if (callee && llvm::is_contained(kStreamCalls, *callee))
          calls.push_back(call);
      });
      for (LLVM::CallOp call : calls) {
        if (*call.getCallee() == kStreamCreate)
          call.getResult().replaceAllUsesWith(stream);
        call.erase();
      }
    }
    for (const char *name : kStreamCalls) {
      auto declaration = module.lookupSymbol<LLVM::LLVMFuncOp>(name);
      if (declaration && SymbolTable::symbolKnownUseEmpty(declaration, module))
        declaration.erase();
    }
  }
};
} // namespace

//===- FuzzContext.h - The context every fuzz input is run in ---*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// One context for the whole run, with what moe-compile registers, so that
// an input costs its own work and not the registries'.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_FUZZ_FUZZCONTEXT_H
#define MOE_FUZZ_FUZZCONTEXT_H

#include "moe-mlir/InitAllMoE.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"

namespace mlir::moe {

inline MLIRContext &fuzzContext() {
  static MLIRContext *context = [] {
    DialectRegistry registry;
    moe::registerAllDialects(registry);
    moe::registerAllPasses();
    auto *result = new MLIRContext(registry);
    result->disableMultithreading();
    result->loadAllAvailableDialects();
    return result;
  }();
  return *context;
}

} // namespace mlir::moe

#endif // MOE_FUZZ_FUZZCONTEXT_H

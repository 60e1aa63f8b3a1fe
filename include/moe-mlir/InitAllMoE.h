//===- InitAllMoE.h - Everything moe-mlir registers -------------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// The one place that lists the project's dialects and passes, shared by
// every tool so that moe-opt and moe-compile accept the same IR.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_INITALLMOE_H
#define MOE_INITALLMOE_H

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEDialect.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"
#include "moe-mlir/Pipelines/Pipelines.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/OpenMP/OpenMPToLLVMIRTranslation.h"

namespace mlir::moe {

/// Upstream dialects, their extensions, and the moe dialect.
inline void registerAllDialects(DialectRegistry &registry) {
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  registry.insert<MoEDialect>();
}

/// Upstream passes and every moe pass and pipeline.
inline void registerAllPasses() {
  mlir::registerAllPasses();
  registerMoEPasses();
  registerMoEConversionPasses();
  registerPipelines();
}

/// What translating a lowered layer to LLVM IR needs.
inline void registerLLVMTranslations(DialectRegistry &registry) {
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerOpenMPDialectTranslation(registry);
}

} // namespace mlir::moe

#endif // MOE_INITALLMOE_H

//===- InitAllMoE.h - Everything moe-mlir registers -------------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// The one place that lists the project's dialects and passes, shared by
// every tool so that moe-opt and moe-compile accept the same IR. Defined in
// the library: upstream's registries are the largest headers there are.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_INITALLMOE_H
#define MOE_INITALLMOE_H

namespace mlir {
class DialectRegistry;
} // namespace mlir

namespace mlir::moe {

/// Upstream dialects, their extensions, their translations to LLVM IR
/// (the GPU pipeline translates kernels while it compiles them), the NVVM
/// target, and the moe dialect.
void registerAllDialects(DialectRegistry &registry);

/// Upstream passes and every moe pass and pipeline.
void registerAllPasses();

} // namespace mlir::moe

#endif // MOE_INITALLMOE_H

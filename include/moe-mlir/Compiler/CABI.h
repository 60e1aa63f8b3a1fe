//===- CABI.h - The C ABI of a generated library ----------------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_COMPILER_CABI_H
#define MOE_COMPILER_CABI_H

#include "moe-mlir/Compiler/Config.h"

#include <string>

namespace mlir::moe {

/// `<name>.h`: SPEC §4 for this config, with its sizes and error codes.
std::string emitHeader(const LayerConfig &config);

/// The C source that implements `<name>.h` over the kernels of
/// `buildLayerModule`: argument checks, then memref descriptors.
std::string emitWrapperSource(const LayerConfig &config);

} // namespace mlir::moe

#endif // MOE_COMPILER_CABI_H

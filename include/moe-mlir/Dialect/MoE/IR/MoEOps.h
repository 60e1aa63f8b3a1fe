//===- MoEOps.h - Operations of the moe dialect -----------------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_IR_MOEOPS_H
#define MOE_DIALECT_MOE_IR_MOEOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/DestinationStyleOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/TilingInterface.h"

#include "moe-mlir/Dialect/MoE/IR/MoEDialect.h"

#include "moe-mlir/Dialect/MoE/IR/MoEEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "moe-mlir/Dialect/MoE/IR/MoEAttrs.h.inc"

#define GET_OP_CLASSES
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h.inc"

namespace mlir::moe {
/// The module attribute naming the target (a #moe.cpu_target).
inline constexpr llvm::StringLiteral kTargetAttrName = "moe.target";
/// The attribute of an op that holds its lowering config, a #moe.tiling.
inline constexpr llvm::StringLiteral kLoweringConfigAttrName =
    "lowering_config";
/// The name of the GPU kernel an op of the linalg stage ends (a string),
/// and, on a function, the names of its tiled kernels in order (an array),
/// which the kernels get once they are `gpu.launch`es.
inline constexpr llvm::StringLiteral kKernelNameAttrName = "moe.kernel";
inline constexpr llvm::StringLiteral kKernelNamesAttrName = "moe.kernels";
} // namespace mlir::moe

#endif // MOE_DIALECT_MOE_IR_MOEOPS_H

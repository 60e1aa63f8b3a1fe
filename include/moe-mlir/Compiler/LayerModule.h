//===- LayerModule.h - A config as a moe module -----------------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_COMPILER_LAYERMODULE_H
#define MOE_COMPILER_LAYERMODULE_H

#include "moe-mlir/Compiler/Config.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

namespace mlir::moe {

/// The module moe-compile compiles for `config`: two functions over
/// memrefs with C interfaces, the kernels behind the ABI. For
/// `"target": "cuda"` each takes first the stream to run on (`!llvm.ptr`).
///
///   <name>_forward_kernel(x, <used weights in ABI order>, y)
///       y = moe.layer(x, weights)
///   <name>_route_kernel(x, router, [router_bias], [selection_bias], ids, w)
///       ids, w = moe.gate(x, router, biases)
///
/// A shard ("expert_shard") has no forward kernel; in its place
///
///   <name>_experts_kernel(rows, ids, w, <the shard's used expert weights
///                         and biases>, out)
///       out = moe.local_experts(rows, ids, w, the shard's weights)
///   <name>_combine_kernel(x, <used shared expert weights>, [output_bias],
///                         expert_out, slot_rows, y)
///       y = moe.combine(expert_out, slot_rows, moe.shared_expert(x, ...),
///                       output_bias), the rows already weighted
OwningOpRef<ModuleOp> buildLayerModule(MLIRContext &context,
                                       const LayerConfig &config);

} // namespace mlir::moe

#endif // MOE_COMPILER_LAYERMODULE_H

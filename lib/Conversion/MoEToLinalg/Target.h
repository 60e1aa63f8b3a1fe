//===- Target.h - The vector lanes of the module's target -------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOLINALG_TARGET_H
#define MOE_LIB_CONVERSION_MOETOLINALG_TARGET_H

#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/IR/BuiltinOps.h"

namespace mlir::moe {

/// The f32 lanes of `target`'s vectors: 16 with `avx512f`, else 8 (also
/// without a target); `override` instead when it is positive.
inline int64_t targetLanes(CPUTargetAttr target, int64_t override) {
  if (override > 0)
    return override;
  return target && target.hasFeature("avx512f") ? 16 : 8;
}

/// The lanes of the target of `op`'s module (`moe.target`), which the
/// packed form groups rows by.
inline int64_t targetLanes(Operation *op, int64_t override) {
  auto module = op->getParentOfType<ModuleOp>();
  return targetLanes(module ? dyn_cast_or_null<CPUTargetAttr>(
                                  module->getAttr(kTargetAttrName))
                            : CPUTargetAttr(),
                     override);
}

/// Fails, with an error on `root` naming `pass`, unless the option
/// `vectorLanes` is positive or -1 (the target's lanes).
inline LogicalResult checkVectorLanes(Operation *root, StringRef pass,
                                      int64_t vectorLanes) {
  if (vectorLanes > 0 || vectorLanes == -1)
    return success();
  return root->emitError() << pass << ": 'vector-lanes' (" << vectorLanes
                           << ") must be positive or -1";
}

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOLINALG_TARGET_H

//===- MoEDialect.cpp - The moe dialect -----------------------------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MoE/IR/MoEDialect.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe;

#include "moe-mlir/Dialect/MoE/IR/MoEDialect.cpp.inc"
#include "moe-mlir/Dialect/MoE/IR/MoEEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "moe-mlir/Dialect/MoE/IR/MoEAttrs.cpp.inc"

void MoEDialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "moe-mlir/Dialect/MoE/IR/MoEAttrs.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "moe-mlir/Dialect/MoE/IR/MoEOps.cpp.inc"
      >();
}

bool CPUTargetAttr::hasFeature(StringRef name) const {
  return llvm::any_of(getFeatures(), [&](Attribute feature) {
    auto text = dyn_cast<StringAttr>(feature);
    return text && text.getValue() == name;
  });
}

LogicalResult
LoweringConfigAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                           int64_t vectorLanes, int64_t tileRows,
                           int64_t tileWeightRows, int64_t reductionBlock,
                           int64_t rowBlock, int64_t broadcastWeightRows,
                           int64_t broadcastMinRows,
                           int64_t broadcastReductionBlock, bool) {
  // The rules of moe-lower-experts' options.
  if (vectorLanes < 1 || tileRows < 1 || rowBlock < 1 || broadcastMinRows < 1)
    return emitError() << "vector_lanes, tile_rows, row_block and "
                          "broadcast_min_rows must be positive";
  if (tileWeightRows < 2 || tileWeightRows % 2 != 0)
    return emitError() << "tile_weight_rows must be even and at least 2";
  if (broadcastWeightRows < 0 || broadcastWeightRows % 2 != 0)
    return emitError() << "broadcast_weight_rows must be even and not "
                          "negative";
  if (reductionBlock < 0 || broadcastReductionBlock < 0)
    return emitError() << "reduction_block and broadcast_reduction_block "
                          "must not be negative";
  return success();
}

//===- Combine.h - The start and end of a moe.combine's sum -----*- C++ -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOLINALG_COMBINE_H
#define MOE_LIB_CONVERSION_MOETOLINALG_COMBINE_H

#include "../Common/Emitter.h"

#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

namespace mlir::moe {

/// T when `op`'s result has a dynamic token count, else nothing: the
/// dynamic sizes of its `[T, H]` tensors.
inline SmallVector<Value> combineDynamicTokens(Emitter &e, CombineOp op) {
  if (!cast<RankedTensorType>(op.getOutput().getType()).isDynamicDim(0))
    return {};
  return {
      tensor::DimOp::create(e.builder(), e.location(), op.getSlotRows(), 0)};
}

/// The `[T, H]` f32 sum of `op`'s experts' rows before any is added: the
/// shared expert's output, or zeros. `dynamicTokens` holds T when the
/// result's token count is dynamic.
inline Value buildCombineStart(Emitter &e, CombineOp op,
                               ValueRange dynamicTokens) {
  auto resultType = cast<RankedTensorType>(op.getOutput().getType());
  Type f32 = e.builder().getF32Type();
  auto accumulatorType = RankedTensorType::get(resultType.getShape(), f32);
  Value shared = op.getShared();
  if (!shared)
    return e.fill(e.f32(0),
                  e.emptyTensor(resultType.getShape(), f32, dynamicTokens));
  return e.castTo(shared, accumulatorType);
}

/// `op`'s result from the f32 `sum` of its rows: plus its bias, rounded
/// once to the result's element type.
inline Value buildCombineEnd(Emitter &e, CombineOp op, Value sum,
                             ValueRange dynamicTokens) {
  if (Value bias = op.getBias())
    sum = e.generic(ValueRange{bias}, sum, {e.map(2, {1}), e.map(2, {0, 1})},
                    {kParallel, kParallel},
                    [](Emitter &e, ValueRange args) -> Value {
                      return e.add(args[1], e.toF32(args[0]));
                    });
  return e.roundTo(sum, cast<RankedTensorType>(op.getOutput().getType()),
                   dynamicTokens);
}

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOLINALG_COMBINE_H

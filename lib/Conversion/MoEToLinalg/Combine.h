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
/// shared expert's output with `withShared`, or zeros. `dynamicTokens`
/// holds T when the result's token count is dynamic.
inline Value buildCombineStart(Emitter &e, CombineOp op,
                               ValueRange dynamicTokens,
                               bool withShared = true) {
  auto resultType = cast<RankedTensorType>(op.getOutput().getType());
  Type f32 = e.builder().getF32Type();
  auto accumulatorType = RankedTensorType::get(resultType.getShape(), f32);
  Value shared = withShared ? op.getShared() : Value();
  if (!shared)
    return e.fill(e.f32(0),
                  e.emptyTensor(resultType.getShape(), f32, dynamicTokens));
  return e.castTo(shared, accumulatorType);
}

/// `op`'s result from the f32 `sum` of its rows: plus the shared expert's
/// output with `addShared` (a sum that did not start from it), plus its
/// bias, rounded once to the result's element type.
inline Value buildCombineEnd(Emitter &e, CombineOp op, Value sum,
                             ValueRange dynamicTokens, bool addShared = false) {
  SmallVector<Value> inputs;
  SmallVector<AffineMap> maps;
  if (Value shared = addShared ? op.getShared() : Value()) {
    inputs.push_back(shared);
    maps.push_back(e.map(2, {0, 1}));
  }
  if (Value bias = op.getBias()) {
    inputs.push_back(bias);
    maps.push_back(e.map(2, {1}));
  }
  maps.push_back(e.map(2, {0, 1}));
  if (!inputs.empty())
    sum = e.generic(inputs, sum, maps, {kParallel, kParallel},
                    [](Emitter &e, ValueRange args) -> Value {
                      Value total = args.back();
                      for (Value term : args.drop_back())
                        total = e.add(total, e.toF32(term));
                      return total;
                    });
  return e.roundTo(sum, cast<RankedTensorType>(op.getOutput().getType()),
                   dynamicTokens);
}

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOLINALG_COMBINE_H

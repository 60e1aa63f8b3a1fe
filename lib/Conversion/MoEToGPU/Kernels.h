//===- Kernels.h - The moe stage ops as GPU kernels -------------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// `moe-lower-to-gpu` is split by op family: the gate (GateKernels.cpp) and
// the routing plan (PlanKernels.cpp); the expert FFNs and combine are
// kernels of the linalg stage (moe-tile-gpu). Each pattern replaces one
// stage op by kernel launches at its place in the host code, reading and
// writing device buffers.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOGPU_KERNELS_H
#define MOE_LIB_CONVERSION_MOETOGPU_KERNELS_H

#include "Kernel.h"

#include "mlir/IR/PatternMatch.h"

namespace mlir::moe {

struct GPULoweringOptions {
  /// Kernels as loops on the CPU instead of gpu.launch.
  bool emulate = false;
};

/// The values of `sizes` (one per dimension of `type`) that its dynamic
/// dimensions take.
inline SmallVector<Value> dynamicSizes(Type type, ArrayRef<Value> sizes) {
  SmallVector<Value> dynamic;
  for (auto [dimension, size] :
       llvm::enumerate(cast<ShapedType>(type).getShape()))
    if (ShapedType::isDynamic(size))
      dynamic.push_back(sizes[dimension]);
  return dynamic;
}

void populateGateKernelPatterns(RewritePatternSet &patterns,
                                const GPULoweringOptions &options);
void populatePlanKernelPatterns(RewritePatternSet &patterns,
                                const GPULoweringOptions &options);

/// A KernelBuilder before `op`, naming kernels after the function around it
/// (`<function>_<kernel>`, without a trailing `_kernel`).
inline KernelBuilder kernelBuilderAt(PatternRewriter &rewriter, Operation *op,
                                     const GPULoweringOptions &options) {
  std::string prefix = "moe";
  if (auto function = op->getParentOfType<FunctionOpInterface>()) {
    StringRef name = function.getName();
    name.consume_back("_kernel");
    prefix = name.str();
  }
  return KernelBuilder(rewriter, op->getLoc(), options.emulate, prefix);
}

/// The buffer a lowered op writes its result `result` into. When the only
/// use of `result` materializes it into a buffer (a function's output
/// argument), the kernels write that buffer in place and the
/// materialization goes; otherwise a new device buffer.
inline Value resultBuffer(PatternRewriter &rewriter, KernelBuilder &kernels,
                          Value result, ValueRange dynamicSizes) {
  if (result.hasOneUse()) {
    auto materialize = dyn_cast<bufferization::MaterializeInDestinationOp>(
        *result.getUsers().begin());
    if (materialize && isa<BaseMemRefType>(materialize.getDest().getType()) &&
        materialize.getSource() == result) {
      Value destination = materialize.getDest();
      rewriter.eraseOp(materialize);
      return destination;
    }
  }
  auto type = cast<RankedTensorType>(result.getType());
  return kernels.deviceBuffer(type.getShape(), type.getElementType(),
                              dynamicSizes);
}

/// A pattern that lowers one stage op to kernels launched where it was.
template <typename Op>
struct KernelPattern : OpRewritePattern<Op> {
  KernelPattern(MLIRContext *context, GPULoweringOptions options)
      : OpRewritePattern<Op>(context), options(options) {}

  LogicalResult matchAndRewrite(Op op,
                                PatternRewriter &rewriter) const final {
    KernelBuilder kernels = kernelBuilderAt(rewriter, op, options);
    return lower(op, kernels, rewriter);
  }

  /// Replaces `op` by the kernels `kernels` launches.
  virtual LogicalResult lower(Op op, KernelBuilder &kernels,
                              PatternRewriter &rewriter) const = 0;

  GPULoweringOptions options;
};

/// Visits, for every expert (one block each), the items `q` in `[0, count)`
/// whose expert (`expertOf`, i32) it is, in increasing `q`, with their rank
/// among them (index): each thread counts its chunk of items, a prefix sum
/// over the chunks gives each chunk's first rank, then each thread visits
/// its chunk again. `onTotal` gets each expert's count from thread 0.
void buildExpertScan(
    KernelBuilder &kernels, StringRef name, int64_t numExperts, Value count,
    function_ref<Value(Emitter &, Value)> expertOf,
    function_ref<void(Emitter &, Value expert, Value item, Value rank)>
        onMatch,
    function_ref<void(Emitter &, Value expert, Value total)> onTotal);

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOGPU_KERNELS_H

//===- Kernel.h - Thread-block kernels, on a GPU or emulated ----*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// The GPU lowering writes each kernel once, as the code one thread of a
// block runs: it sees its block and thread ids, the block's shared buffers
// and a barrier. `KernelBuilder` turns that code into a `gpu.launch` for the
// CUDA target or, so that the very same kernels can be run and tested on a
// machine without a GPU, into loops: the blocks one after the other, and in
// each block one loop over its threads per stretch between two barriers
// (the shared buffers on the stack, each thread's locals its own).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOGPU_KERNEL_H
#define MOE_LIB_CONVERSION_MOETOGPU_KERNEL_H

#include "../Common/Emitter.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/PatternMatch.h"

namespace mlir::moe {

/// Threads per block of every kernel.
inline constexpr int64_t kBlockThreads = 256;

/// The gpu.module every kernel is outlined into.
inline constexpr const char *kKernelModuleName = "moe_kernels";

/// Marks the device buffers a lowering allocates: `moe-free-workspace`
/// frees them when their function returns.
inline constexpr const char *kWorkspaceAttrName = "moe.workspace";

/// Marks the threads' loop of an emulated block that splitAtBarriers could
/// not split (it said why).
inline constexpr const char *kUnsplitBlockAttrName = "moe.unsplit_block";

/// What one thread of a block sees.
struct KernelThread {
  Value blockX;         // index
  Value thread;         // index in [0, kBlockThreads)
  SmallVector<Value> shared;

  /// Every thread of the block waits here for the others.
  void barrier(Emitter &e) const {
    gpu::BarrierOp::create(e.builder(), e.location());
  }
};

/// Splits `threads`, a loop over a block's threads whose body has its
/// barriers at the top, into one loop per stretch between barriers, in
/// order; a value one stretch defines and a later one uses is recomputed
/// there. The threads' stack buffers move before `hoistPoint`, shared by
/// the threads that run one after the other. Fails, changing nothing, where
/// a barrier is nested, such a value cannot be recomputed (a kernel keeps
/// those in shared buffers) or a stack buffer has a dynamic size.
LogicalResult splitAtBarriers(RewriterBase &rewriter, scf::ForOp threads,
                              Operation *hoistPoint);

/// A buffer each block shares among its threads.
struct SharedBufferType {
  SmallVector<int64_t> shape;
  Type elementType;
};

/// Emits kernel launches and device buffers at one place of host code.
class KernelBuilder {
public:
  /// Kernels are named `<prefix>_<name>`.
  KernelBuilder(RewriterBase &builder, Location loc, bool emulate,
                std::string prefix)
      : b(builder), loc(loc), emulate(emulate), prefix(std::move(prefix)) {}

  bool emulated() const { return emulate; }

  /// Scalar host code at the launch point: sizes and grid dimensions.
  Emitter host() { return Emitter(b, loc); }

  /// A device buffer (a host one when emulated) that lives until its
  /// function returns.
  Value deviceBuffer(ArrayRef<int64_t> shape, Type elementType,
                     ValueRange dynamicSizes) {
    auto type = MemRefType::get(shape, elementType);
    Operation *alloc =
        emulate ? memref::AllocOp::create(b, loc, type, dynamicSizes)
                      .getOperation()
                : gpu::AllocOp::create(b, loc, type, Type(), ValueRange{},
                                       dynamicSizes, ValueRange{}, false)
                      .getOperation();
    alloc->setAttr(kWorkspaceAttrName, b.getUnitAttr());
    return alloc->getResult(0);
  }

  /// Runs `body` on `gridX` blocks of kBlockThreads threads.
  void launch(StringRef name, Value gridX, ArrayRef<SharedBufferType> shared,
              function_ref<void(Emitter &, const KernelThread &)> body) {
    if (emulate)
      return launchEmulated(gridX, shared, body);
    MLIRContext *context = b.getContext();
    Emitter e(b, loc);
    auto workgroup = gpu::AddressSpaceAttr::get(
        context, gpu::GPUDialect::getWorkgroupAddressSpace());
    SmallVector<Type> sharedTypes;
    for (const SharedBufferType &buffer : shared)
      sharedTypes.push_back(MemRefType::get(buffer.shape, buffer.elementType,
                                            MemRefLayoutAttrInterface(),
                                            workgroup));
    Value one = e.index(1);
    auto op = gpu::LaunchOp::create(
        b, loc, gridX, one, one, e.index(kBlockThreads), one, one,
        /*dynamicSharedMemorySize=*/Value(), /*asyncTokenType=*/Type(),
        /*asyncDependencies=*/ValueRange{}, sharedTypes,
        /*privateAttributions=*/TypeRange{}, Value(), Value(), Value(),
        FlatSymbolRefAttr::get(context, kKernelModuleName),
        FlatSymbolRefAttr::get(context, prefix + "_" + name.str()));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&op.getBody().front());
    KernelThread thread{op.getBlockIds().x, op.getThreadIds().x,
                        SmallVector<Value>(op.getWorkgroupAttributions())};
    Emitter inner(b, loc);
    body(inner, thread);
    gpu::TerminatorOp::create(b, loc);
  }

  /// One thread per item of `[0, count)`: `ceil(count / kBlockThreads)`
  /// blocks, threads past the end idle.
  void launchForEach(StringRef name, Value count,
                     function_ref<void(Emitter &, Value)> body) {
    Emitter e(b, loc);
    Value blocks = blocksFor(e, count);
    launch(name, blocks, {}, [&](Emitter &e, const KernelThread &t) {
      Value item = e.add(e.mul(t.blockX, e.index(kBlockThreads)), t.thread);
      e.ifThen(e.cmpi(arith::CmpIPredicate::ult, item, count),
               [&](Emitter &e) { body(e, item); });
    });
  }

  /// `ceil(count / kBlockThreads)`.
  static Value blocksFor(Emitter &e, Value count) {
    return e.ceilDivIndex(count, e.index(kBlockThreads));
  }

private:
  /// The blocks run one after the other, each as loops over its threads
  /// split at its barriers (`splitAtBarriers`), a schedule the barriers
  /// allow. The threads run last first, so that a barrier missing before a
  /// read of what a lower thread wrote shows as a wrong result. The shared
  /// buffers are allocated once for all blocks. A failed split marks its
  /// loop for moe-lower-to-gpu to fail on.
  void
  launchEmulated(Value gridX, ArrayRef<SharedBufferType> shared,
                 function_ref<void(Emitter &, const KernelThread &)> body) {
    Emitter e(b, loc);
    SmallVector<Value> sharedBuffers;
    for (const SharedBufferType &buffer : shared)
      sharedBuffers.push_back(e.stackAlloc(buffer.shape, buffer.elementType));
    auto blocks = scf::ForOp::create(b, loc, e.index(0), gridX, e.index(1));
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(blocks.getBody());
    Value last = e.index(kBlockThreads - 1);
    auto threads = scf::ForOp::create(b, loc, e.index(0),
                                      e.index(kBlockThreads), e.index(1));
    b.setInsertionPointToStart(threads.getBody());
    Value thread = e.sub(last, threads.getInductionVar());
    body(e, KernelThread{blocks.getInductionVar(), thread, sharedBuffers});
    if (failed(splitAtBarriers(b, threads, blocks)))
      threads->setAttr(kUnsplitBlockAttrName, b.getUnitAttr());
  }

  RewriterBase &b;
  Location loc;
  bool emulate;
  std::string prefix;
};

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOGPU_KERNEL_H

//===- Kernel.h - Thread-block kernels, on a GPU or emulated ----*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// The GPU lowering writes each kernel once, as the code one thread of a
// block runs: it sees its block and thread ids, the block's shared buffers
// and a barrier. `KernelBuilder` turns that code into a `gpu.launch` for the
// CUDA target or, so that the very same kernels can be run and tested on a
// machine without a GPU, into a loop over the blocks whose threads run as
// an OpenMP team of the same size (the barrier an `omp.barrier`, the shared
// buffers on the stack of the loop, each thread's locals its own).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOGPU_KERNEL_H
#define MOE_LIB_CONVERSION_MOETOGPU_KERNEL_H

#include "../Common/Emitter.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/OpenMP/OpenMPDialect.h"

namespace mlir::moe {

/// Threads per block of every kernel.
inline constexpr int64_t kBlockThreads = 256;

/// The gpu.module every kernel is outlined into.
inline constexpr const char *kKernelModuleName = "moe_kernels";

/// Marks the device buffers a lowering allocates: `moe-free-workspace`
/// frees them when their function returns.
inline constexpr const char *kWorkspaceAttrName = "moe.workspace";

/// The OpenMP runtime calls of emulated kernels: the thread's number in its
/// block, and how long a thread spins at a barrier before it sleeps.
inline constexpr const char *kThreadNumFunction = "omp_get_thread_num";
inline constexpr const char *kSetBlocktimeFunction = "kmp_set_blocktime";

/// What one thread of a block sees.
struct KernelThread {
  Value blockX;         // index
  Value thread;         // index in [0, kBlockThreads)
  SmallVector<Value> shared;
  bool emulated;

  /// Every thread of the block waits here for the others.
  void barrier(Emitter &e) const {
    if (emulated)
      omp::BarrierOp::create(e.builder(), e.location());
    else
      gpu::BarrierOp::create(e.builder(), e.location());
  }
};

/// A buffer each block shares among its threads.
struct SharedBufferType {
  SmallVector<int64_t> shape;
  Type elementType;
};

/// Emits kernel launches and device buffers at one place of host code.
class KernelBuilder {
public:
  /// Kernels are named `<prefix>_<name>`.
  KernelBuilder(OpBuilder &builder, Location loc, bool emulate,
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
                        SmallVector<Value>(op.getWorkgroupAttributions()),
                        /*emulated=*/false};
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
  /// One OpenMP team of kBlockThreads threads runs the blocks one after
  /// the other, with a barrier between two blocks; the shared buffers are
  /// allocated once for all of them. The team does not spin at barriers
  /// (blocktime 0): its threads outnumber the cores. A thread's stack
  /// allocations (the selection's scratch) are made per block and freed
  /// with the team, which the test sizes this is meant for afford.
  void
  launchEmulated(Value gridX, ArrayRef<SharedBufferType> shared,
                 function_ref<void(Emitter &, const KernelThread &)> body) {
    Emitter e(b, loc);
    SmallVector<Value> sharedBuffers;
    for (const SharedBufferType &buffer : shared)
      sharedBuffers.push_back(e.stackAlloc(buffer.shape, buffer.elementType));
    func::CallOp::create(b, loc, kSetBlocktimeFunction, TypeRange{},
                         ValueRange{e.i32(0)});
    omp::ParallelOperands clauses;
    clauses.numThreads = e.i32(kBlockThreads);
    auto team = omp::ParallelOp::create(b, loc, clauses);
    OpBuilder::InsertionGuard guard(b);
    b.createBlock(&team.getRegion());
    Value number = func::CallOp::create(b, loc, kThreadNumFunction,
                                        TypeRange{b.getI32Type()}, ValueRange{})
                       .getResult(0);
    Value thread = e.toIndex(number);
    e.forEach(e.index(0), gridX, [&](Emitter &e, Value blockX) {
      KernelThread kernelThread{blockX, thread, sharedBuffers,
                                /*emulated=*/true};
      body(e, kernelThread);
      kernelThread.barrier(e);
    });
    omp::TerminatorOp::create(b, loc);
  }

  OpBuilder &b;
  Location loc;
  bool emulate;
  std::string prefix;
};

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOGPU_KERNEL_H

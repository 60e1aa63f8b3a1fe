//===- EmulatedBlock.cpp - A thread block's barriers as loop fission ------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "Kernel.h"

#include "mlir/Interfaces/SideEffectInterfaces.h"

using namespace mlir;
using namespace mlir::moe;

namespace {
/// Splits a loop over a block's threads at its barriers, recomputes in a
/// phase what it uses of an earlier one, and hoists the threads' stack
/// buffers before `hoistPoint`.
class PhaseSplitter {
public:
  PhaseSplitter(RewriterBase &rewriter, scf::ForOp threads,
                Operation *hoistPoint)
      : rewriter(rewriter), hoistPoint(hoistPoint) {
    phases.push_back(threads);
  }

  LogicalResult run() {
    WalkResult nested = phases[0].getBody()->walk([&](gpu::BarrierOp op) {
      if (op->getParentOp() == phases[0])
        return WalkResult::advance();
      op->emitOpError("is nested in control flow: an emulated block's "
                      "barriers must be at the top of its kernel");
      return WalkResult::interrupt();
    });
    if (nested.wasInterrupted() || failed(checkCarried()))
      return failure();
    SmallVector<memref::AllocaOp> buffers;
    WalkResult dynamic = phases[0].getBody()->walk([&](memref::AllocaOp op) {
      buffers.push_back(op);
      if (op.getType().hasStaticShape())
        return WalkResult::advance();
      op->emitOpError("is a thread's stack buffer of dynamic size, which "
                      "an emulated block cannot hoist");
      return WalkResult::interrupt();
    });
    if (dynamic.wasInterrupted())
      return failure();
    while (gpu::BarrierOp barrier = firstBarrier(phases.back()))
      phases.push_back(splitAt(barrier));
    for (unsigned p = 1; p < phases.size(); ++p)
      carryInto(p);
    // The threads run one after the other and no buffer crosses a barrier
    // (checkCarried), so one buffer serves them all: on the stack of the
    // loop, a thread's allocations would pile up until the function
    // returns.
    for (memref::AllocaOp buffer : buffers)
      rewriter.moveOpBefore(buffer, hoistPoint);
    return success();
  }

private:
  /// Fails, before anything changes, where a value that crosses a barrier
  /// cannot be recomputed: its op, or one it depends on in the loop, reads
  /// or writes memory or has regions. (Recomputing cannot fail where the
  /// first computation did not: both run on every thread.)
  LogicalResult checkCarried() {
    Block *body = phases[0].getBody();
    DenseMap<Operation *, unsigned> phaseOfOp;
    unsigned phase = 0;
    for (Operation &op : body->without_terminator())
      phaseOfOp[&op] = isa<gpu::BarrierOp>(op) ? phase++ : phase;
    DenseMap<Value, bool> known;
    std::function<bool(Value)> carriable = [&](Value value) {
      Operation *def = value.getDefiningOp();
      if (!def || def->getBlock() != body)
        return true;
      if (auto it = known.find(value); it != known.end())
        return it->second;
      bool recomputable = isMemoryEffectFree(def) &&
                          def->getNumRegions() == 0 &&
                          llvm::all_of(def->getOperands(), carriable);
      if (!recomputable)
        def->emitOpError("is used across a barrier of an emulated block "
                         "but cannot be recomputed after it: keep it in a "
                         "shared buffer");
      return known[value] = recomputable;
    };
    for (Operation &op : body->without_terminator()) {
      unsigned p = phaseOfOp[&op];
      WalkResult result = op.walk([&](Operation *nested) {
        for (Value operand : nested->getOperands()) {
          Operation *def = operand.getDefiningOp();
          if (def && def->getBlock() == body && phaseOfOp[def] < p &&
              !carriable(operand))
            return WalkResult::interrupt();
        }
        return WalkResult::advance();
      });
      if (result.wasInterrupted())
        return failure();
    }
    return success();
  }

  gpu::BarrierOp firstBarrier(scf::ForOp phase) {
    for (Operation &op : *phase.getBody())
      if (auto barrier = dyn_cast<gpu::BarrierOp>(op))
        return barrier;
    return {};
  }

  /// Moves what follows `barrier` into a new loop over the same threads.
  scf::ForOp splitAt(gpu::BarrierOp barrier) {
    auto phase = cast<scf::ForOp>(barrier->getParentOp());
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointAfter(phase);
    auto next =
        scf::ForOp::create(rewriter, phase.getLoc(), phase.getLowerBound(),
                           phase.getUpperBound(), phase.getStep());
    Operation *end = next.getBody()->getTerminator();
    for (Operation &op : llvm::make_early_inc_range(
             llvm::make_range(std::next(barrier->getIterator()),
                              phase.getBody()->without_terminator().end())))
      rewriter.moveOpBefore(&op, end);
    rewriter.eraseOp(barrier);
    return next;
  }

  /// The phase whose loop defines `value` at its top, if any.
  std::optional<unsigned> phaseOf(Value value) {
    for (unsigned p = 0; p < phases.size(); ++p)
      if (value.getParentBlock() == phases[p].getBody())
        return p;
    return std::nullopt;
  }

  void carryInto(unsigned p) {
    SmallVector<std::pair<OpOperand *, unsigned>> uses;
    phases[p].getBody()->walk([&](Operation *op) {
      for (OpOperand &operand : op->getOpOperands())
        if (std::optional<unsigned> q = phaseOf(operand.get()); q && *q < p)
          uses.push_back({&operand, *q});
    });
    IRMapping carried;
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPointToStart(phases[p].getBody());
    for (auto [operand, q] : uses) {
      OpOperand *use = operand;
      Value value = materialize(use->get(), q, p, carried);
      rewriter.modifyOpInPlace(use->getOwner(), [&] { use->set(value); });
    }
  }

  /// `value` of phase `q` in phase `p`: its thread, or its pure
  /// computation repeated.
  Value materialize(Value value, unsigned q, unsigned p, IRMapping &carried) {
    if (Value known = carried.lookupOrNull(value))
      return known;
    if (value == phases[q].getInductionVar()) {
      carried.map(value, phases[p].getInductionVar());
      return carried.lookup(value);
    }
    Operation *def = value.getDefiningOp();
    for (Value operand : def->getOperands())
      if (std::optional<unsigned> r = phaseOf(operand))
        materialize(operand, *r, p, carried);
    rewriter.clone(*def, carried);
    return carried.lookup(value);
  }

  RewriterBase &rewriter;
  Operation *hoistPoint;
  SmallVector<scf::ForOp> phases;
};
} // namespace

LogicalResult mlir::moe::splitAtBarriers(RewriterBase &rewriter,
                                         scf::ForOp threads,
                                         Operation *hoistPoint) {
  return PhaseSplitter(rewriter, threads, hoistPoint).run();
}

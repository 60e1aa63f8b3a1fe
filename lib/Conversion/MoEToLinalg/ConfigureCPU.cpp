//===- ConfigureCPU.cpp - Each op's CPU tiling from the target ------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "llvm/ADT/TypeSwitch.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOECONFIGURECPU
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

/// A register tile's weight rows, over one pass of the reduction, take
/// about half of a 32 KiB L1 data cache; the other half holds the input
/// rows streaming past.
static constexpr int64_t kWeightTileBytes = 16 * 1024;

/// The tiling of an op whose weights have `weightBytes` bytes an element on
/// `target` (the pass's description says why).
static LoweringConfigAttr chooseConfig(MLIRContext *context,
                                       CPUTargetAttr target,
                                       int64_t weightBytes,
                                       bool stridedColumns) {
  bool avx512 = target.hasFeature("avx512f");
  int64_t lanes = avx512 ? 16 : 8;
  int64_t tileRows = avx512 ? 4 : 2;
  int64_t tileWeightRows = 4;
  // bf16 and f16 weights are first widened into an f32 copy per pass, which
  // one vector of rows does not repay.
  int64_t broadcastMinRows = weightBytes < 4 ? 2 * lanes : lanes;
  return LoweringConfigAttr::get(
      context, lanes, tileRows, tileWeightRows,
      kWeightTileBytes / (tileWeightRows * weightBytes), /*rowBlock=*/32,
      /*broadcastWeightRows=*/avx512 ? 12 : 6, broadcastMinRows,
      /*broadcastReductionBlock=*/kWeightTileBytes / (2 * lanes * 4),
      stridedColumns);
}

/// The element size of the weights `op` multiplies by.
static int64_t weightBytes(Operation *op) {
  Value weights = TypeSwitch<Operation *, Value>(op)
                      .Case([](GateOp gate) { return gate.getRouter(); })
                      .Case([](RefineOp refine) { return refine.getRouter(); })
                      .Case([](ExpertOp expert) { return expert.getUpProj(); })
                      .Case([](SharedExpertOp shared) {
                        return shared.getUpProj();
                      })
                      .Default([](Operation *) { return Value(); });
  return getElementTypeOrSelf(weights.getType()).getIntOrFloatBitWidth() / 8;
}

namespace {
struct MoEConfigureCPUPass
    : moe::impl::MoEConfigureCPUBase<MoEConfigureCPUPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    Attribute attr = module->getAttr(kTargetAttrName);
    if (!attr)
      return;
    auto target = dyn_cast<CPUTargetAttr>(attr);
    if (!target) {
      module.emitError() << "moe-configure-cpu: '" << kTargetAttrName
                         << "' must be a #moe.cpu_target, got " << attr;
      return signalPassFailure();
    }
    auto override = [](int64_t option, int64_t chosen) {
      return option == -1 ? chosen : option;
    };
    WalkResult result = module.walk([&](Operation *op) {
      if (!isa<GateOp, RefineOp, ExpertOp, SharedExpertOp>(op) ||
          op->hasAttr(kLoweringConfigAttrName))
        return WalkResult::advance();
      LoweringConfigAttr chosen = chooseConfig(
          op->getContext(), target, weightBytes(op),
          static_cast<bool>(stridedColumns));
      auto emitError = [&] {
        return module.emitError() << "moe-configure-cpu: ";
      };
      LoweringConfigAttr config = LoweringConfigAttr::getChecked(
          emitError, op->getContext(),
          override(vectorLanes, chosen.getVectorLanes()),
          override(tileRows, chosen.getTileRows()),
          override(tileWeightRows, chosen.getTileWeightRows()),
          override(reductionBlock, chosen.getReductionBlock()),
          override(rowBlock, chosen.getRowBlock()),
          override(broadcastWeightRows, chosen.getBroadcastWeightRows()),
          override(broadcastMinRows, chosen.getBroadcastMinRows()),
          override(broadcastReductionBlock,
                   chosen.getBroadcastReductionBlock()),
          static_cast<bool>(stridedColumns));
      if (!config)
        return WalkResult::interrupt();
      op->setAttr(kLoweringConfigAttrName, config);
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      signalPassFailure();
  }
};
} // namespace

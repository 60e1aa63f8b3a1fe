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
                      .Case([](RefineOp refine) { return refine.getRouter(); })
                      .Case([](ExpertOp expert) { return expert.getUpProj(); })
                      .Case([](SharedExpertOp shared) {
                        return shared.getUpProj();
                      })
                      .Default([](Operation *) { return Value(); });
  return getElementTypeOrSelf(weights.getType()).getIntOrFloatBitWidth() / 8;
}

/// The router contraction's register tile: 2 tokens by 4 experts, with
/// one f32 vector of partial sums each along the reduction.
static constexpr int64_t kContractionRows = 2;
static constexpr int64_t kContractionColumns = 4;

/// A `[rows, columns]` register tile over a split reduction of up to
/// `lanes` partial sums, for a contraction with one M, one N and one static
/// K loop; null otherwise.
static TilingAttr chooseContractionTiling(linalg::LinalgOp op,
                                          int64_t lanes) {
  FailureOr<linalg::ContractionDimensions> dims =
      linalg::inferContractionDims(op);
  if (failed(dims) || dims->m.size() != 1 || dims->n.size() != 1 ||
      dims->k.size() != 1 || !dims->batch.empty())
    return {};
  SmallVector<int64_t> registers(op.getNumLoops(), 0),
      reduction(op.getNumLoops(), 0);
  // The reduction's step divides it, so that no partial step needs masks.
  int64_t depth = op.getStaticLoopRanges()[dims->k[0]];
  if (ShapedType::isDynamic(depth))
    return {};
  int64_t step = lanes;
  while (depth % step != 0)
    step /= 2;
  registers[dims->m[0]] = kContractionRows;
  registers[dims->n[0]] = kContractionColumns;
  reduction[dims->k[0]] = step;
  // A tile of weight rows (the router's experts) is the outer loop, so its
  // rows stay in L1 while the tokens pass: the whole router need not fit
  // L2 (Qwen3's is 1 MiB in f32).
  SmallVector<int64_t> interchange = {static_cast<int64_t>(dims->n[0])};
  for (int64_t loop = 0, e = op.getNumLoops(); loop < e; ++loop)
    if (loop != static_cast<int64_t>(dims->n[0]))
      interchange.push_back(loop);
  return TilingAttr::get(op->getContext(), {}, registers, reduction,
                         interchange);
}

namespace {
struct MoEConfigureCPUPass
    : moe::impl::MoEConfigureCPUBase<MoEConfigureCPUPass> {
  using Base::Base;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (tokenTile < 0) {
      module.emitError() << "moe-configure-cpu: 'token-tile' ("
                         << tokenTile.getValue() << ") must not be negative";
      return signalPassFailure();
    }
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
    int64_t lanes = override(vectorLanes,
                             target.hasFeature("avx512f") ? 16 : 8);
    if (lanes < 1) {
      module.emitError() << "moe-configure-cpu: 'vector-lanes' (" << lanes
                         << ") must be positive";
      return signalPassFailure();
    }
    WalkResult result = module.walk([&](Operation *op) {
      if (op->hasAttr(kLoweringConfigAttrName))
        return WalkResult::advance();
      if (auto select = dyn_cast<SelectOp>(op)) {
        if (select.isTokenwise() && tokenTile > 0)
          op->setAttr(kLoweringConfigAttrName,
                      TilingAttr::get(op->getContext(), {tokenTile}, {}, {}, {}));
        return WalkResult::advance();
      }
      if (auto linalgOp = dyn_cast<linalg::LinalgOp>(op)) {
        if (linalg::isaContractionOpInterface(linalgOp))
          if (TilingAttr tiling = chooseContractionTiling(linalgOp, lanes))
            op->setAttr(kLoweringConfigAttrName, tiling);
        return WalkResult::advance();
      }
      if (!isa<RefineOp, ExpertOp, SharedExpertOp>(op))
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

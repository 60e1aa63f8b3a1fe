//===- DecomposeSharedExpert.cpp - The shared expert as linalg ops --------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "Activation.h"
#include "Contraction.h"
#include "Emitter.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEDECOMPOSESHAREDEXPERT
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

/// The f32 lanes of the module target's vectors (`moe.target`), which the
/// packed form groups rows by: 16 with `avx512f`, else 8.
static int64_t targetLanes(Operation *op) {
  auto module = op->getParentOfType<ModuleOp>();
  auto target = module ? dyn_cast_or_null<CPUTargetAttr>(
                             module->getAttr(kTargetAttrName))
                       : CPUTargetAttr();
  return target && target.hasFeature("avx512f") ? 16 : 8;
}

namespace {
/// Builds one form of the shared FFN over the same operands.
struct SharedFFN {
  SharedExpertOp op;
  Value numTokens;
  int64_t tokensDim, hidden, intermediate;

  /// act(gate) · up, or act(up), elementwise over `projections` (up, then
  /// gate) of any shape.
  Value activate(Emitter &e, ArrayRef<Value> projections, Value init) {
    FFNActivation activation = activationOf(op);
    bool gated = projections.size() == 2;
    unsigned rank = cast<RankedTensorType>(init.getType()).getRank();
    return e.generic(
        projections, init,
        SmallVector<AffineMap>(projections.size() + 1,
                               AffineMap::getMultiDimIdentityMap(
                                   rank, e.builder().getContext())),
        SmallVector<utils::IteratorType>(rank, kParallel),
        [&](Emitter &e, ValueRange args) {
          return gated ? applyGatedActivation(e, activation, args[1], args[0])
                       : applyActivation(e, activation.kind, args[0]);
        });
  }

  /// Token rows as they are: each projection a contraction whose weight
  /// rows are read as kWeightStreams streams (buildStreamedContraction),
  /// or a `linalg.matmul` where the streams do not divide them.
  Value rowwise(Emitter &e) {
    OpBuilder &b = e.builder();
    Location loc = e.location();
    Value input = op.getInput();
    if (intermediate % kWeightStreams != 0 || hidden % kWeightStreams != 0) {
      auto zeros = [&](int64_t columns) {
        return buildZeros(b, loc, tokensDim, columns, numTokens);
      };
      SmallVector<Value> projections = {buildLinearContraction(
          b, loc, input, op.getUpProj(), zeros(intermediate))};
      if (Value gateProj = op.getGateProj())
        projections.push_back(buildLinearContraction(b, loc, input, gateProj,
                                                     zeros(intermediate)));
      Value activated = activate(
          e, projections,
          tensor::EmptyOp::create(b, loc,
                                  ArrayRef<int64_t>{tokensDim, intermediate},
                                  b.getF32Type(),
                                  ShapedType::isDynamic(tokensDim)
                                      ? ValueRange(numTokens)
                                      : ValueRange()));
      return buildLinearContraction(b, loc, activated, op.getDownProj(),
                                    zeros(hidden));
    }
    auto empty = [&](int64_t columns) {
      return e.emptyTensor(
          {tokensDim, kWeightStreams, columns / kWeightStreams},
          b.getF32Type(),
          ShapedType::isDynamic(tokensDim) ? ValueRange(numTokens)
                                           : ValueRange());
    };
    auto zeros = [&](int64_t columns) {
      return e.fill(e.f32(0), empty(columns));
    };
    // `[T, S, N / S]` back to the `[T, N]` it lays out.
    auto rows = [&](Value streams) -> Value {
      return tensor::CollapseShapeOp::create(
          b, loc, streams, ArrayRef<ReassociationIndices>{{0}, {1, 2}});
    };
    SmallVector<Value> projections = {buildStreamedContraction(
        b, loc, input, op.getUpProj(), zeros(intermediate))};
    if (Value gateProj = op.getGateProj())
      projections.push_back(buildStreamedContraction(b, loc, input, gateProj,
                                                     zeros(intermediate)));
    Value activated = rows(activate(e, projections, empty(intermediate)));
    return rows(buildStreamedContraction(b, loc, activated, op.getDownProj(),
                                         zeros(hidden)));
  }

  /// Token rows packed `lanes` at a time (`linalg.pack` to `[⌈T / lanes⌉,
  /// H, lanes]`, padded with zeros), so that a vector holds one element of
  /// `lanes` rows: the contractions are then outer products of a broadcast
  /// weight and vectors of rows, the activation's result is the down
  /// projection's packed input, and one `linalg.unpack` restores the rows.
  Value packed(Emitter &e, int64_t lanes) {
    OpBuilder &b = e.builder();
    Location loc = e.location();
    Type f32 = b.getF32Type();
    // The products are in f32: bf16 and f16 weights are widened by a
    // generic that the tiling fuses into each cache block, so that a
    // weight is widened once a block of rows, not once per group of rows.
    Value input = buildWidened(b, loc, op.getInput());
    int64_t groupsDim = ShapedType::isDynamic(tokensDim)
                            ? ShapedType::kDynamic
                            : llvm::divideCeil(tokensDim, lanes);
    Value groups = arith::CeilDivUIOp::create(b, loc, numTokens, e.index(lanes));
    auto empty = [&](int64_t columns) {
      return e.emptyTensor({groupsDim, columns, lanes}, f32,
                           ShapedType::isDynamic(groupsDim) ? ValueRange(groups)
                                                            : ValueRange());
    };
    auto zeros = [&](int64_t columns) {
      return e.fill(e.f32(0), empty(columns));
    };
    Value rows = linalg::PackOp::create(
                     b, loc, input, empty(hidden), ArrayRef<int64_t>{0},
                     ArrayRef<OpFoldResult>{b.getIndexAttr(lanes)},
                     std::optional<Value>(e.f32(0)))
                     .getResult();
    SmallVector<Value> projections = {
        buildPackedContraction(b, loc, rows, buildWidened(b, loc, op.getUpProj()),
                               zeros(intermediate))};
    if (Value gateProj = op.getGateProj())
      projections.push_back(buildPackedContraction(
          b, loc, rows, buildWidened(b, loc, gateProj), zeros(intermediate)));
    Value activated = activate(e, projections, empty(intermediate));
    Value down = buildPackedContraction(
        b, loc, activated, buildWidened(b, loc, op.getDownProj()),
        zeros(hidden));
    Value output = e.emptyTensor({tokensDim, hidden}, f32,
                                 ShapedType::isDynamic(tokensDim)
                                     ? ValueRange(numTokens)
                                     : ValueRange());
    return linalg::UnPackOp::create(b, loc, down, output, ArrayRef<int64_t>{0},
                                    ArrayRef<OpFoldResult>{
                                        b.getIndexAttr(lanes)})
        .getResult();
  }
};

struct DecomposeSharedExpert : OpRewritePattern<SharedExpertOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(SharedExpertOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Emitter e(rewriter, loc);
    Value input = op.getInput();
    auto resultType = cast<RankedTensorType>(op.getOutput().getType());
    SharedFFN ffn{op, tensor::DimOp::create(rewriter, loc, input, 0),
                  resultType.getDimSize(0), resultType.getDimSize(1),
                  cast<RankedTensorType>(op.getUpProj().getType())
                      .getDimSize(0)};

    // Packing pays from one vector of rows on, two when the weights are
    // bf16 or f16 and each broadcast element is widened; fewer rows take
    // the row-wise form.
    int64_t lanes = targetLanes(op);
    int64_t minRows =
        getElementTypeOrSelf(op.getUpProj().getType()).isF32() ? lanes
                                                               : 2 * lanes;
    Value output;
    if (!ShapedType::isDynamic(ffn.tokensDim)) {
      output = ffn.tokensDim < minRows ? ffn.rowwise(e) : ffn.packed(e, lanes);
    } else {
      Value few = e.cmpi(arith::CmpIPredicate::ult, ffn.numTokens,
                         e.index(minRows));
      auto branch = scf::IfOp::create(rewriter, loc, TypeRange{resultType},
                                      few, /*withElseRegion=*/true);
      for (auto [block, packed] :
           {std::pair(branch.thenBlock(), false),
            std::pair(branch.elseBlock(), true)}) {
        OpBuilder::InsertionGuard guard(rewriter);
        rewriter.setInsertionPointToStart(block);
        Emitter inner(rewriter, loc);
        Value result = packed ? ffn.packed(inner, lanes) : ffn.rowwise(inner);
        scf::YieldOp::create(rewriter, loc, result);
      }
      output = branch.getResult(0);
    }

    // Scaled by sigmoid(x_t · expert_gate), summed in f32.
    if (Value expertGate = op.getExpertGate()) {
      auto f32 = rewriter.getF32Type();
      Value logit = e.fill(
          e.f32(0), e.emptyTensor({ffn.tokensDim}, f32,
                                  ShapedType::isDynamic(ffn.tokensDim)
                                      ? ValueRange(ffn.numTokens)
                                      : ValueRange()));
      logit = e.generic({input, expertGate}, logit,
                        {e.map(2, {0, 1}), e.map(2, {1}), e.map(2, {0})},
                        {kParallel, kReduction},
                        [](Emitter &e, ValueRange args) {
                          return e.multiplyAdd(args[2], e.toF32(args[0]),
                                               e.toF32(args[1]));
                        });
      output = e.generic({logit}, output, {e.map(2, {0}), e.map(2, {0, 1})},
                         {kParallel, kParallel},
                         [](Emitter &e, ValueRange args) {
                           return e.mul(args[1], e.sigmoid(args[0]));
                         });
    }
    rewriter.replaceOp(op, output);
    return success();
  }
};

struct MoEDecomposeSharedExpertPass
    : moe::impl::MoEDecomposeSharedExpertBase<MoEDecomposeSharedExpertPass> {
  using Base::Base;

  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateDecomposeSharedExpertPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

void moe::populateDecomposeSharedExpertPatterns(RewritePatternSet &patterns) {
  patterns.add<DecomposeSharedExpert>(patterns.getContext());
}

//===- MMASyncToNVVM.cpp - bf16 mma.sync to NVVM --------------------------===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEMMASYNCTONVVM
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {
/// `nvgpu.mma.sync` m16n8k16 on bf16 with f32 sums as `nvvm.mma.sync`: a
/// register of two bf16 is an i32, the sums a struct of four f32.
struct LowerBF16MmaSync : OpRewritePattern<nvgpu::MmaSyncOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(nvgpu::MmaSyncOp op,
                                PatternRewriter &rewriter) const override {
    auto aType = cast<VectorType>(op.getMatrixA().getType());
    auto cType = cast<VectorType>(op.getMatrixC().getType());
    if (!aType.getElementType().isBF16() || !cType.getElementType().isF32() ||
        op.getMmaShapeAsArray() != std::array<int64_t, 3>{16, 8, 16})
      return rewriter.notifyMatchFailure(op, "not bf16 m16n8k16 into f32");
    Location loc = op.getLoc();
    Type i32 = rewriter.getI32Type();
    auto registers = [&](Value fragment) {
      auto type = cast<VectorType>(fragment.getType());
      SmallVector<Value> values;
      for (int64_t row = 0; row < type.getDimSize(0); ++row) {
        Value pair = vector::ExtractOp::create(rewriter, loc, fragment,
                                               ArrayRef<int64_t>{row});
        Value word = vector::BitCastOp::create(rewriter, loc,
                                               VectorType::get({1}, i32), pair);
        values.push_back(vector::ExtractOp::create(rewriter, loc, word,
                                                   ArrayRef<int64_t>{0}));
      }
      return values;
    };
    SmallVector<Value> sums;
    for (int64_t row = 0; row < 2; ++row)
      for (int64_t column = 0; column < 2; ++column)
        sums.push_back(vector::ExtractOp::create(
            rewriter, loc, op.getMatrixC(), ArrayRef<int64_t>{row, column}));
    Type f32 = rewriter.getF32Type();
    auto resultType = LLVM::LLVMStructType::getLiteral(
        rewriter.getContext(), SmallVector<Type>(4, f32));
    auto mma = NVVM::MmaOp::create(
        rewriter, loc, resultType, registers(op.getMatrixA()),
        registers(op.getMatrixB()), sums, op.getMmaShapeAsArray(), std::nullopt,
        std::nullopt,
        std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::bf16,
                                      NVVM::MMATypes::bf16},
        std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                       NVVM::MMALayout::col});
    SmallVector<Value> results;
    for (int64_t index = 0; index < 4; ++index)
      results.push_back(LLVM::ExtractValueOp::create(rewriter, loc, mma,
                                                     ArrayRef<int64_t>{index}));
    rewriter.replaceOpWithNewOp<vector::FromElementsOp>(op, cType, results);
    return success();
  }
};

struct MoEMMASyncToNVVMPass
    : moe::impl::MoEMMASyncToNVVMBase<MoEMMASyncToNVVMPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<LowerBF16MmaSync>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

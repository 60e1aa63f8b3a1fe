//===- Passes.h - Lowerings out of the moe dialect --------------*- C++ -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_CONVERSION_PASSES_H
#define MOE_CONVERSION_PASSES_H

#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/OpenMP/OpenMPDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Pass/Pass.h"

namespace mlir::moe {

#define GEN_PASS_DECL
#include "moe-mlir/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moe-mlir/Conversion/Passes.h.inc"

/// moe.gate as its router contraction (linalg.matmul on tensors) and a
/// moe.select (moe-decompose-gate).
void populateDecomposeGatePatterns(RewritePatternSet &patterns);

/// Patterns that split moe.shared_expert into linalg contractions
/// (moe-decompose-shared-expert); the packed form groups rows by
/// `vectorLanes`, or by the module target's lanes when it is -1.
void populateDecomposeSharedExpertPatterns(RewritePatternSet &patterns,
                                           int64_t vectorLanes = -1);

/// Patterns that split moe.expert, and a moe.combine of it with
/// `fuseCombine`, into linalg contractions over each expert's segment
/// (moe-decompose-experts); lanes as for the shared expert.
void populateDecomposeExpertsPatterns(RewritePatternSet &patterns,
                                      bool fuseGather, bool fuseCombine,
                                      int64_t vectorLanes = -1);

/// Patterns that split moe.expert and moe.shared_expert into grouped
/// contractions over `[tiles, rowTile]` rows (moe-decompose-grouped).
void populateDecomposeGroupedPatterns(RewritePatternSet &patterns,
                                      int64_t rowTile);

} // namespace mlir::moe

#endif // MOE_CONVERSION_PASSES_H

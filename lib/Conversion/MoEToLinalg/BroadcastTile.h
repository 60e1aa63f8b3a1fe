//===- BroadcastTile.h - Register-tiled outer products -----*- C++ -*-===//
//
// Part of the moe-mlir project.
//
// The other form of an expert projection, for experts with many rows: the
// input rows transposed into vectors of rows, `[rows / lanes, k, lanes]`, so
// that one step along k loads the next vector of a few groups of
// consecutive rows and broadcasts one element of each weight row across
// them. A tile of N weight rows and V vectors keeps N·V
// accumulators, loads V vectors and N scalars per step for N·V fused
// multiply-adds, and needs no horizontal sum: each lane is one row's sum.
// f32 weights are read in place, in their nn.Linear layout; bf16 and f16
// weights from an f32 copy of the pass's rows (LowerExperts.cpp), so that
// each element is widened once rather than once per tile of input rows. A
// tile runs over a range of k, starting from accumulators it is given, so
// that the reduction can be cut into passes.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOLINALG_BROADCASTTILE_H
#define MOE_LIB_CONVERSION_MOETOLINALG_BROADCASTTILE_H

#include "DotTile.h"

namespace mlir::moe {

/// `init[n * vectors + v][j] + Σ_k weights[n][k] · transposed[first / lanes
/// + v, k, j]` in f32, for k in [k0, k1).
inline SmallVector<Value> emitBroadcastSteps(Emitter &e, Value transposed,
                                             Value first, int64_t vectors,
                                             ArrayRef<DotRow> weights,
                                             Value k0, Value k1,
                                             ValueRange init, int64_t lanes) {
  auto accumulatorType = dotAccumulatorType(e.builder(), lanes);
  Value group = e.divIndex(first, e.index(lanes));
  return e.forEachCarrying(
      k0, k1, init,
      [&](Emitter &e, Value k, ValueRange carried) -> SmallVector<Value> {
        SmallVector<Value> inputs, next;
        for (int64_t v = 0; v < vectors; ++v)
          inputs.push_back(vector::LoadOp::create(
              e.builder(), e.location(), accumulatorType, transposed,
              ValueRange{e.add(group, e.index(v)), k, e.index(0)}));
        for (size_t n = 0; n < weights.size(); ++n) {
          Value weight = e.toF32(
              e.load(weights[n].buffer, rowIndices(e, weights[n], k)));
          Value broadcast = vector::BroadcastOp::create(
              e.builder(), e.location(), accumulatorType, weight);
          for (int64_t v = 0; v < vectors; ++v)
            next.push_back(vector::FMAOp::create(
                e.builder(), e.location(), broadcast, inputs[v],
                carried[n * vectors + v]));
        }
        return next;
      });
}

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOLINALG_BROADCASTTILE_H

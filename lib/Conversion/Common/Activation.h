//===- Activation.h - The expert FFNs' activations and gate ---*- C++ -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_COMMON_ACTIVATION_H
#define MOE_LIB_CONVERSION_COMMON_ACTIVATION_H

#include "Emitter.h"

#include "moe-mlir/Dialect/MoE/IR/MoEOps.h"

#include "mlir/Dialect/Math/IR/Math.h"

#include <cmath>

namespace mlir::moe {

/// An FFN's activation with the parameters of clamped_swiglu.
struct FFNActivation {
  Activation kind;
  float swigluAlpha;
  float swigluLimit;
  float swigluUpOffset;
};

template <typename OpTy>
FFNActivation activationOf(OpTy op) {
  return {op.getActivation(), op.getSwigluAlpha().convertToFloat(),
          op.getSwigluLimit().convertToFloat(),
          op.getSwigluUpOffset().convertToFloat()};
}

/// SPEC §1 activations, in f32. clamped_swiglu is gated only
/// (applyGatedActivation).
inline Value applyActivation(Emitter &e, Activation activation, Value v) {
  OpBuilder &b = e.builder();
  Location loc = e.location();
  switch (activation) {
  case Activation::silu: {
    Value negated = arith::NegFOp::create(b, loc, v);
    Value denominator = e.add(e.f32(1), math::ExpOp::create(b, loc, negated));
    return arith::DivFOp::create(b, loc, v, denominator);
  }
  case Activation::gelu: {
    Value scaled = e.mul(v, e.f32(M_SQRT1_2));
    Value erf = math::ErfOp::create(b, loc, scaled);
    return e.mul(e.mul(e.f32(0.5), v), e.add(e.f32(1), erf));
  }
  case Activation::gelu_tanh: {
    Value cube = e.mul(e.mul(v, v), v);
    Value inner = e.mul(e.f32(std::sqrt(2.0 / M_PI)),
                        e.add(v, e.mul(e.f32(0.044715), cube)));
    Value tanh = math::TanhOp::create(b, loc, inner);
    return e.mul(e.mul(e.f32(0.5), v), e.add(e.f32(1), tanh));
  }
  case Activation::relu:
    return arith::MaximumFOp::create(b, loc, v, e.f32(0));
  case Activation::clamped_swiglu:
    break;
  }
  llvm_unreachable("not an activation of one operand");
}

/// The gated FFN's hidden value from its gate and up sums: act(gate) · up,
/// or docs/FAMILY-RULES.md's clamped SwiGLU.
inline Value applyGatedActivation(Emitter &e, const FFNActivation &activation,
                                  Value gate, Value up) {
  if (activation.kind != Activation::clamped_swiglu)
    return e.mul(applyActivation(e, activation.kind, gate), up);
  OpBuilder &b = e.builder();
  Location loc = e.location();
  Value limit = e.f32(activation.swigluLimit);
  Value clampedGate = arith::MinimumFOp::create(b, loc, gate, limit);
  Value clampedUp = arith::MaximumFOp::create(
      b, loc, arith::MinimumFOp::create(b, loc, up, limit),
      e.f32(-activation.swigluLimit));
  Value glu = e.mul(clampedGate,
                    e.sigmoid(e.mul(clampedGate, e.f32(activation.swigluAlpha))));
  return e.mul(glu, e.add(clampedUp, e.f32(activation.swigluUpOffset)));
}

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_COMMON_ACTIVATION_H

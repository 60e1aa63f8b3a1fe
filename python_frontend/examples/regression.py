"""A toy regression with a small MoE layer: fit the experts' down projections
by least squares on the float64 reference, then run the compiled layer with
the fitted weights and report its error.

The router, gate and up projections stay random; with routing fixed the
layer's output is linear in the down projections, so one lstsq fits them.
Usage: python3 regression.py
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import moe_mlir  # noqa: E402
from moe_mlir import reference as ref  # noqa: E402


def target(x):
    """A piecewise, nonlinear function of x for the layer to learn."""
    return np.tanh(2 * x[:, ::-1]) + np.abs(x) * 0.5


def features(config, weights, x):
    """[T, E*F] such that layer(x) = features @ stack(down_proj^T)."""
    c = config.to_dict()
    _, ids, w, _ = ref.reference(c, weights, x)
    E, F = config.num_experts, config.intermediate_size
    phi = np.zeros((x.shape[0], E, F))
    for e in range(E):
        h = ref.activation(config.activation, x @ weights["gate_proj"][e].T.astype(np.float64))
        h = h * (x @ weights["up_proj"][e].T.astype(np.float64))
        weight = np.where(ids == e, w, 0.0).sum(axis=1)
        phi[:, e, :] = weight[:, None] * h
    return phi.reshape(x.shape[0], E * F)


def main():
    config = moe_mlir.MoEConfig("toy_regression", hidden_size=8, intermediate_size=64,
                                num_experts=8, top_k=2)
    weights = ref.random_weights(config.to_dict(), seed=0)
    rng = np.random.default_rng(1)
    x_train = rng.standard_normal((4096, 8))
    x_test = rng.standard_normal((512, 8)).astype(np.float32)

    phi = features(config, weights, x_train)
    solution, *_ = np.linalg.lstsq(phi, target(x_train), rcond=1e-6)  # [E*F, H]
    E, F, H = config.num_experts, config.intermediate_size, config.hidden_size
    weights["down_proj"] = np.ascontiguousarray(
        solution.reshape(E, F, H).transpose(0, 2, 1), dtype=np.float32)

    layer = moe_mlir.compile(config)(weights)
    y = layer(x_test)
    want = target(x_test.astype(np.float64))
    mse = float(np.mean((y - want) ** 2))
    baseline = float(np.mean((want - want.mean(axis=0)) ** 2))
    y_ref = ref.reference(config.to_dict(), weights, x_test)[0]
    drift = float(np.abs(y - y_ref).max())
    print(f"test MSE {mse:.4f} (predicting the mean: {baseline:.4f}); "
          f"compiled vs reference max |diff| {drift:.2e}")
    return 0 if mse < 0.5 * baseline and drift <= 1e-4 * max(1.0, np.abs(y_ref).max()) else 1


if __name__ == "__main__":
    sys.exit(main())

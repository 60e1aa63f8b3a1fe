"""Hierarchical MoE end to end: configs whose experts are MoE layers (the
"expert" key), compiled by moe-compile, run through the C ABI and judged
against the f64 reference's recursive evaluation (SPEC §1 tolerances). The
route output (leaf ids, combined weights) is checked exactly.

The fused and unfused kernels behind these layers are the flat layers' (a
hierarchy only adds routing), so this suite runs once, not once per fusion."""

import json

import numpy as np
import pytest

from moe_mlir.abi import ERROR_MISSING_WEIGHT, ERROR_UNUSED_WEIGHT, representable
from moe_mlir.reference import (
    levels,
    random_input,
    random_weights,
    reference,
    route_width,
    routing_ties,
    weight_shapes,
    with_defaults,
)
from test_conformance import MARGIN, seed_of


def hier(name, H, E, k, expert, **extra):
    c = {"name": name, "hidden_size": H, "num_experts": E, "top_k": k, "expert": expert}
    c.update(extra)
    return c


def level(E, k, **extra):
    return dict(num_experts=E, top_k=k, **extra)


# (config, token counts, tolerance). Sizes are small and off tile multiples.
CASES = [
    # Depth 2, softmax at both levels.
    (hier("h2_softmax", 24, 4, 2, level(4, 2, intermediate_size=16)),
     [0, 1, 3, 300], 1e-4),
    # Inner sigmoid with groups, both biases and scaling; outer router bias.
    (hier("h2_sigmoid_groups", 20, 4, 1,
          level(8, 2, intermediate_size=12, scoring="sigmoid", n_group=4, topk_group=2,
                router_bias=True, selection_bias=True, routed_scaling_factor=2.5,
                activation="gelu_tanh"),
          router_bias=True),
     [1, 64], 1e-4),
    # Depth 3: a grouped sigmoid middle level without normalization, plain
    # (not gated) relu leaves.
    (hier("h3_plain_leaves", 16, 2, 2,
          level(4, 2, scoring="sigmoid", normalize_top_k=False, n_group=2, topk_group=1,
                group_score="max", selection_bias=True,
                expert=level(4, 1, intermediate_size=8, gated=False, activation="relu"))),
     [0, 1, 300], 1e-4),
    # Outer capacity that drops most assignments, and a gated shared expert
    # (which takes the leaves' activation and gating).
    (hier("h2_capacity_shared", 16, 4, 2, level(4, 2, intermediate_size=8, activation="gelu"),
          capacity_factor=0.25, shared_intermediate_size=12, shared_expert_gate=True),
     [3, 300], 1e-4),
    # Outer expert choice: slot e of a token expands to the inner top_k.
    (hier("h2_expert_choice", 16, 4, 1, level(4, 2, intermediate_size=8, gated=False),
          routing="expert_choice", capacity_factor=1.0, router_bias=True),
     [1, 64], 1e-4),
    # Dense at both levels: every expert taken, no selection in forward.
    (hier("h2_dense", 16, 2, 2, level(4, 4, intermediate_size=8, scoring="sigmoid")),
     [1, 300], 1e-4),
    # bf16: depth 2 and depth 3.
    (hier("h2_bf16", 24, 4, 2,
          level(4, 2, intermediate_size=16, selection_bias=True), dtype="bf16"),
     [1, 64], 2e-2),
    (hier("h3_bf16", 16, 2, 1,
          level(2, 2, expert=level(4, 2, intermediate_size=8, scoring="sigmoid")),
          dtype="bf16", shared_intermediate_size=8),
     [0, 1, 64], 2e-2),
]


def params():
    return [pytest.param(c, ts, tol, id=c["name"]) for c, ts, tol in CASES]


def test_cases_cover_the_design():
    depths = {len(levels(c)) for c, _, _ in CASES}
    assert {2, 3} <= depths
    names = [c["name"] for c, _, _ in CASES]
    assert len(set(names)) == len(names)


def weights_for(config):
    dtype = with_defaults(config)["dtype"]
    return {key: representable(value, dtype)
            for key, value in random_weights(config, seed_of(config)).items()}


def draw_x(config, weights, T, seed):
    """x [T, H] whose routing has no near tie at any level: a tie may go
    either way in f32 and then changes which leaves a token reaches."""
    dtype = with_defaults(config)["dtype"]
    for attempt in range(50):
        x = representable(random_input(T, config["hidden_size"], seed + 7919 * attempt), dtype)
        if not routing_ties(config, weights, x, MARGIN).any():
            return x
    pytest.fail(f"no input of {T} tokens free of near ties for {config['name']}")


def check_hierarchical(lib, config, token_counts, tolerance):
    """forward() within `tolerance` of the reference, and route()'s leaf ids
    and weights equal to its own, for each token count."""
    weights = weights_for(config)
    width = route_width(config)
    with lib.create(weights) as ctx:
        for T in token_counts:
            x = draw_x(config, weights, T, seed_of(config) + T)
            y = lib.forward(ctx, x)
            ids, w = lib.route(ctx, x)
            y_ref, ids_ref, w_ref, _ = reference(config, weights, x)
            assert ids.shape == (T, width) and ids_ref.shape == (T, width)
            assert np.isfinite(y).all(), "forward left NaN/Inf in y (rows not written?)"
            scale = max(1.0, float(np.abs(y_ref).max())) if T else 1.0
            err = float(np.abs(y - y_ref).max()) if T else 0.0
            assert err <= tolerance * scale, \
                f"T={T}: max|y - ref| = {err:.3g} > {tolerance * scale:.3g}"
            np.testing.assert_array_equal(ids, ids_ref, err_msg=f"T={T}: leaf ids differ")
            np.testing.assert_allclose(w, w_ref, rtol=1e-5, atol=1e-7,
                                       err_msg=f"T={T}: leaf weights differ")
            assert np.array_equal(lib.forward(ctx, x), y), "forward is not deterministic"


@pytest.mark.parametrize("config,token_counts,tolerance", params())
def test_hierarchical_conformance(libraries, config, token_counts, tolerance):
    check_hierarchical(libraries(config), config, token_counts, tolerance)


def test_capacity_drops_many(libraries):
    """The capacity case really drops: most leaf slots are -1, in whole
    blocks of the inner width."""
    config = next(c for c, _, _ in CASES if c["name"] == "h2_capacity_shared")
    lib = libraries(config)
    weights = weights_for(config)
    x = draw_x(config, weights, 300, 11)
    with lib.create(weights) as ctx:
        ids, w = lib.route(ctx, x)
    blocks = ids.reshape(300, 2, 2)
    dropped = (blocks < 0).all(axis=2)
    assert ((blocks < 0).any(axis=2) == dropped).all()
    assert dropped.mean() > 0.4
    assert (w[ids < 0] == 0).all()


def test_tokens_independent(libraries):
    """Without capacity, a token's output does not depend on its batch."""
    config = CASES[2][0]
    lib = libraries(config)
    weights = weights_for(config)
    x = random_input(37, config["hidden_size"], 5)
    with lib.create(weights) as ctx:
        whole = lib.forward(ctx, x)
        parts = np.concatenate([lib.forward(ctx, x[i:i + 5]) for i in range(0, 37, 5)])
    np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-5 * max(1, np.abs(whole).max()))


def test_level_weights_are_checked(libraries):
    """create() wants every level's router and exactly the biases the levels
    use."""
    config = CASES[1][0]  # level 2 has both biases, level 1 a router bias
    lib = libraries(config)
    weights = weights_for(config)
    assert {"level2_router", "level2_router_bias", "level2_selection_bias"} <= set(weights)
    for key in ("level2_router", "level2_selection_bias"):
        code, _ = lib.try_create({k: v for k, v in weights.items() if k != key})
        assert code == ERROR_MISSING_WEIGHT, key
    plain = CASES[0][0]
    plain_lib = libraries(plain)
    extra = dict(weights_for(plain), level2_router_bias=np.zeros((4, 4), np.float32))
    code, _ = plain_lib.try_create(extra, check_shapes=False)
    assert code == ERROR_UNUSED_WEIGHT


def _assert_contains(parsed, given, path=""):
    for key, value in given.items():
        assert key in parsed, f"config_json lacks {path}{key!r}"
        if isinstance(value, dict):
            _assert_contains(parsed[key], value, f"{path}{key}.")
        else:
            same_kind = isinstance(parsed[key], bool) == isinstance(value, bool)
            assert parsed[key] == value and same_kind, \
                f"config_json has {path}{key}={parsed[key]!r}, config gave {value!r}"


@pytest.mark.parametrize("config,token_counts,tolerance", params()[:3])
def test_config_json_round_trips(libraries, config, token_counts, tolerance):
    """The library's config is the nested config with every level's defaults,
    the leaf FFN's keys in the innermost level only."""
    parsed = json.loads(libraries(config).config_json())
    _assert_contains(parsed, config)
    assert parsed == with_defaults(parsed)
    _assert_contains(parsed, with_defaults(config))
    for key in ("intermediate_size", "activation", "gated"):
        assert key not in parsed
    assert weight_shapes(parsed) == weight_shapes(config)

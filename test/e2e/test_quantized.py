"""Quantized expert weights (docs/QUANTIZATION.md) end to end: int8 and int4
projections with f32 scales per group, dequantized inside the contractions,
judged against the f64 reference evaluated on the dequantized weights with
SPEC §1's tolerance of the activations' dtype."""

import ctypes

import numpy as np
import pytest

from moe_mlir.abi import (ERROR_BAD_PERMUTATION, ERROR_MISSING_WEIGHT, ERROR_UNUSED_WEIGHT,
                          OK, Library, compile_config, ptr)
from moe_mlir.reference import (dequantize, random_input, random_weights, weight_shapes,
                                weight_types)
from test_abi_errors import unaligned_copy
from test_conformance import cfg, check_token_counts


def quantized(fmt, group_size=0, zero_points=None, act_order=False):
    q = {"format": fmt, "group_size": group_size}
    if zero_points is not None:
        q["zero_points"] = zero_points
    if act_order:
        q["act_order"] = True
    return {"expert_weights": q}


# (config, token counts). Row-wise and packed forms both run: fewer rows
# per expert than one vector (8 with AVX2, 16 with AVX-512) take the
# row-wise one, more the packed one; sizes whose rows 4 does not divide
# take the plain contraction.
CONFIGS = [
    (cfg("q8_channel", 64, 96, 8, 2, **quantized("int8")), [0, 1, 3, 64, 257]),
    (cfg("q8_g16_rules_bf16", 32, 48, 16, 4, dtype="bf16", scoring="sigmoid",
         selection_bias=True, n_group=4, topk_group=2, routed_scaling_factor=2.5,
         shared_intermediate_size=32, shared_expert_gate=True,
         **quantized("int8", 16)), [1, 64, 257]),
    (cfg("q8_g6_h18", 18, 30, 4, 2, activation="gelu", gated=False,
         **quantized("int8", 6)), [3, 100]),
    (cfg("q4_g32", 64, 32, 8, 2, **quantized("int4", 32)), [0, 1, 3, 64, 257]),
    (cfg("q4_g32_zeros_shared", 64, 64, 8, 2, shared_intermediate_size=96,
         **quantized("int4", 32, True)), [1, 17, 129]),
    (cfg("q4_channel_h18_f10", 18, 10, 4, 1, **quantized("int4", 0, True)), [1, 3, 64]),
    (cfg("q4_g8_expert_choice", 24, 16, 8, 1, routing="expert_choice",
         capacity_factor=1.5, activation="gelu_tanh", **quantized("int4", 8)), [64]),
    (cfg("q4_g16_f16_swiglu", 32, 48, 8, 2, dtype="f16", activation="clamped_swiglu",
         expert_bias=True, router_weight_on_input=True, **quantized("int4", 16, True)),
     [1, 64]),
    (dict(cfg("q4_hier", 32, 0, 4, 2, **quantized("int4", 16)),
          expert={"num_experts": 2, "top_k": 1, "intermediate_size": 16}), [1, 3, 64]),
    (cfg("q4_g16_act_order_shared", 64, 32, 8, 2, shared_intermediate_size=48,
         **quantized("int4", 16, True, act_order=True)), [0, 1, 3, 64, 257]),
    (cfg("q8_g6_act_order_h18_bf16", 18, 30, 4, 2, dtype="bf16",
         **quantized("int8", 6, act_order=True)), [3, 100]),
    (dict(cfg("q4_hier_act_order", 32, 0, 4, 2, **quantized("int4", 16, act_order=True)),
          expert={"num_experts": 2, "top_k": 1, "intermediate_size": 16}), [1, 64]),
    (cfg("mx_act_order", 64, 32, 4, 2, expert_weights={"format": "mxfp4", "act_order": True}),
     [1, 64]),
    (cfg("f8_g32_shared", 64, 32, 8, 2, shared_intermediate_size=64,
         **quantized("fp8_e4m3", 32)), [1, 17, 129]),
    (cfg("f8_rows_bf16", 48, 24, 4, 2, dtype="bf16", **quantized("fp8_e4m3")), [3, 64]),
    (cfg("mx_swiglu_bias", 64, 64, 8, 2, activation="clamped_swiglu", expert_bias=True,
         expert_weights={"format": "mxfp4"}), [1, 64]),
    (cfg("mx_sigmoid_e16", 32, 32, 16, 4, scoring="sigmoid",
         expert_weights={"format": "mxfp4"}), [1, 257]),
    (cfg("f8_g16_sparsemixer", 48, 32, 16, 2, scoring="sparsemixer", normalize_top_k=False,
         **quantized("fp8_e4m3", 16)), [0, 3, 257]),
    (cfg("mx_expert_choice_gelu", 64, 32, 8, 1, routing="expert_choice", capacity_factor=1.5,
         activation="gelu", gated=False, expert_weights={"format": "mxfp4"}), [64, 257]),
    (cfg("q8_g32_norm_p2_on_input", 64, 96, 8, 4, normalize_p=2, router_weight_on_input=True,
         output_bias=True, **quantized("int8", 32)), [1, 17, 129]),
    (cfg("q4_rows_sigmoid_groups_f16", 32, 48, 16, 4, dtype="f16", scoring="sigmoid",
         n_group=4, topk_group=2, **quantized("int4", 0)), [1, 257]),
    (cfg("w_bf16_h17", 17, 100, 8, 2, expert_weights={"format": "bf16"}), [1, 3, 64]),
    (cfg("w_f16_shared", 32, 48, 8, 2, shared_intermediate_size=32,
         expert_weights={"format": "f16"}), [1, 64]),
]


def needs_ml_dtypes(config):
    """Rounding float weights to fp8_e4m3 or bf16 takes ml_dtypes."""
    return config.get("expert_weights", {}).get("format") in ("fp8_e4m3", "bf16")


def params():
    try:
        import ml_dtypes  # noqa: F401
        missing = False
    except ImportError:
        missing = True
    out = []
    for c, ts in CONFIGS:
        if "expert" in c:
            c = {key: v for key, v in c.items() if key != "intermediate_size"}
        marks = [pytest.mark.skip(reason="ml_dtypes is not installed")] \
            if missing and needs_ml_dtypes(c) else []
        out.append(pytest.param(c, ts, id=c["name"], marks=marks))
    return out


def tolerance(config):
    return 1e-4 if config.get("dtype", "f32") == "f32" else 2e-2


@pytest.mark.parametrize("config,token_counts", params())
def test_quantized_conformance(libraries, config, token_counts):
    check_token_counts(libraries(config), config, token_counts, tolerance(config))


def test_bf16_weights_route_as_f32(libraries):
    pytest.importorskip("ml_dtypes")
    """bf16 projections with f32 activations and router: the same routing,
    bit for bit, as the f32 layer on the same weights, and the same output
    but for the order of f32 sums."""
    config = next(p.values[0] for p in params() if p.values[0]["name"] == "w_bf16_h17")
    dense = {key: v for key, v in config.items() if key != "expert_weights"}
    dense["name"] = "w_bf16_h17_as_f32"
    weights = random_weights(config, 9)
    x = random_input(64, config["hidden_size"], 10)
    lib, f32 = libraries(config), libraries(dense)
    with lib.create(weights) as ctx, f32.create(weights) as ref:
        ids, w = lib.route(ctx, x)
        ids_f32, w_f32 = f32.route(ref, x)
        assert np.array_equal(ids, ids_f32) and np.array_equal(w, w_f32)
        y, y_f32 = lib.forward(ctx, x), f32.forward(ref, x)
        assert np.abs(y - y_f32).max() <= 1e-5 * max(1.0, np.abs(y_f32).max())


def test_weights_are_read_as_quantized(libraries):
    """The library reads each nibble where docs/QUANTIZATION.md puts it:
    swapping a group's two halves (the other common int4 order) changes y."""
    config = params()[3].values[0]
    lib = libraries(config)
    weights = random_weights(config, 5)
    x = random_input(3, config["hidden_size"], 6)
    swapped = dict(weights)
    up = weights["up_proj"]
    swapped["up_proj"] = ((up & 15) << 4) | (up >> 4)
    with lib.create(weights) as ctx, lib.create(swapped) as other:
        assert not np.allclose(lib.forward(ctx, x), lib.forward(other, x), atol=1e-3)


def test_unaligned_scales_are_copied(libraries):
    config = params()[4].values[0]
    lib = libraries(config)
    weights = random_weights(config, 7)
    x = random_input(5, config["hidden_size"], 8)
    with lib.create(weights) as aligned:
        expected = lib.forward(aligned, x)
    arrays = lib.prepare_weights(weights)
    shifted = {key: unaligned_copy(a) if key.endswith("_scales") else a
               for key, a in arrays.items()}
    handle = ctypes.c_void_p()
    assert lib.c_create(ctypes.byref(lib.make_struct(shifted)), ctypes.byref(handle)) == OK
    try:
        y = np.full(expected.shape, np.nan, dtype=np.float32)
        assert lib.c_forward(handle.value, ptr(x), len(x), ptr(y)) == OK
        assert np.array_equal(y, expected)
    finally:
        lib.c_destroy(handle.value)


@pytest.mark.parametrize("index,key", [(0, "up_proj_scales"), (4, "shared_down_proj_zeros"),
                                       (4, "gate_proj_zeros")])
def test_missing_scales_or_zeros(libraries, index, key):
    config = params()[index].values[0]
    lib = libraries(config)
    weights = random_weights(config, 0)
    del weights[key]
    code, ctx = lib.try_create(weights)
    assert code == ERROR_MISSING_WEIGHT and ctx is None


def config_named(name):
    return next(p.values[0] for p in params() if p.values[0]["name"] == name)


def test_bad_permutation_is_refused(libraries):
    """create reads every *_perm row and refuses one that is not a
    permutation of 0 to K - 1 (the kernels read the rows through it)."""
    config = config_named("q4_g16_act_order_shared")
    lib = libraries(config)
    weights = random_weights(config, 0)
    with lib.create(weights):
        pass
    for key, row, column, value in (("down_proj_perm", (3,), 5, 32),
                                    ("gate_proj_perm", (0,), 0, -1),
                                    ("shared_up_proj_perm", (), 7, None)):
        bad = dict(weights)
        perm = weights[key].copy()
        # None: a repeated index, so another is missing.
        perm[row + (column,)] = perm[row + (column + 1,)] if value is None else value
        bad[key] = perm
        code, ctx = lib.try_create(bad)
        assert code == ERROR_BAD_PERMUTATION and ctx is None, key
    assert "permutation" in lib.strerror(ERROR_BAD_PERMUTATION)


def test_unused_zeros(libraries):
    config = params()[3].values[0]
    lib = libraries(config)
    weights = random_weights(config, 0)
    weights["up_proj_zeros"] = np.zeros(weight_shapes(config)["up_proj_scales"], np.uint8)
    code, ctx = lib.try_create(weights, check_shapes=False)
    assert code == ERROR_UNUSED_WEIGHT and ctx is None


def test_header_states_the_layout(tmp_path):
    config = params()[4].values[0]
    compile_config(config, tmp_path)
    header = (tmp_path / f"{config['name']}.h").read_text()
    assert "int4 with an f32 scale for each group of 32" in header
    assert "byte b holds element b in" in header
    assert "const void *up_proj; /* [8][64][32] uint8 */" in header
    assert "const void *up_proj_scales; /* [8][64][2] f32 */" in header
    assert "const void *shared_down_proj_zeros; /* [64][3] uint8 */" in header


def test_arrays_are_packed_as_documented():
    """weight_shapes and weight_types agree with the header's layout."""
    config = params()[4].values[0]
    shapes, types = weight_shapes(config), weight_types(config)
    assert shapes["gate_proj"] == (8, 64, 32) and types["gate_proj"] == np.uint8
    assert shapes["down_proj"] == (8, 64, 32) and shapes["down_proj_scales"] == (8, 64, 2)
    assert shapes["shared_down_proj"] == (64, 48) and shapes["shared_down_proj_zeros"] == (64, 3)
    assert "router" not in types
    w = random_weights(config, 0)
    assert dequantize(config, w)["up_proj"].shape == (8, 64, 64)

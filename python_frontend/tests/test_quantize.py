"""Quantized expert weights in Python (docs/QUANTIZATION.md): the config key,
the reference's dequantization of the documented layout, and rounding float
weights to it."""

import numpy as np
import pytest

from moe_mlir.config import ConfigError, MoEConfig
from moe_mlir.quantize import quantize_projection, quantize_weights
from moe_mlir.reference import dequantize, random_weights, weight_shapes

BASE = {"name": "q", "hidden_size": 8, "intermediate_size": 4, "num_experts": 2, "top_k": 1}


def test_config_round_trip():
    c = MoEConfig(**BASE, expert_weights={"format": "int4", "group_size": 4})
    assert c.expert_weights == {"format": "int4", "group_size": 4, "zero_points": False,
                                "act_order": False}
    assert c.to_dict()["expert_weights"] == c.expert_weights
    assert MoEConfig.from_json(c.to_json()) == c
    assert "expert_weights" not in MoEConfig(**BASE).to_dict()
    with pytest.raises(ConfigError) as e:
        MoEConfig(**BASE, expert_weights={"format": "int4", "group_size": 3})
    assert e.value.key == "expert_weights.group_size"


def test_int4_nibble_order():
    """Within a group of 4, byte b holds element b (low) and b + 2 (high)."""
    config = dict(BASE, expert_weights={"format": "int4", "group_size": 4,
                                        "zero_points": True})
    packed = np.zeros((2, 4, 4), np.uint8)
    packed[0, 0] = [0x21, 0x43, 0x65, 0x87]  # group 0: 1, 3, 2, 4; group 1: 5, 7, 6, 8
    scales = np.ones((2, 4, 2), np.float32)
    scales[0, 0] = [0.5, 2.0]
    zeros = np.zeros((2, 4, 2), np.uint8)
    zeros[0, 0] = [1, 6]
    w = dequantize(config, {"up_proj": packed, "up_proj_scales": scales,
                            "up_proj_zeros": zeros})["up_proj"]
    assert w.dtype == np.float64
    np.testing.assert_array_equal(w[0, 0], [0.0, 1.0, 0.5, 1.5, -2.0, 2.0, 0.0, 4.0])
    # Without zero points the zero is 8.
    config["expert_weights"]["zero_points"] = False
    w = dequantize(config, {"up_proj": packed, "up_proj_scales": scales})["up_proj"]
    np.testing.assert_array_equal(w[0, 0], [-3.5, -2.5, -3.0, -2.0, -6.0, -2.0, -4.0, 0.0])


def test_int8_is_signed():
    config = dict(BASE, expert_weights={"format": "int8"})
    q = np.array([[[-128, -1, 0, 127]]], np.int8)
    w = dequantize(config, {"down_proj": q, "down_proj_scales": np.full((1, 1, 1), 0.5)})
    np.testing.assert_array_equal(w["down_proj"][0, 0], [-64.0, -0.5, 0.0, 63.5])


@pytest.mark.parametrize("fmt,group,zeros,bound", [("int8", 0, False, 0.5 / 127),
                                                   ("int8", 4, False, 0.5 / 127),
                                                   ("int4", 4, False, 0.5 / 7),
                                                   ("int4", 0, True, 0.5 / 15 * 1.01)])
def test_rounding_error_is_half_a_step(fmt, group, zeros, bound):
    """quantize then dequantize is within half a step of each group's
    scale; the step is the group's range over the codes."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 6, 8))
    packed, scales, zero = quantize_projection(w, fmt, group, zeros)
    config = dict(BASE, expert_weights={"format": fmt, "group_size": group,
                                        "zero_points": zeros} if fmt == "int4"
                  else {"format": fmt, "group_size": group})
    arrays = {"up_proj": packed, "up_proj_scales": scales}
    if zero is not None:
        arrays["up_proj_zeros"] = zero
    back = dequantize(config, arrays)["up_proj"]
    g = group or 8
    span = np.abs(w).reshape(3, 6, -1, g).max(-1) if not zeros else \
        np.ptp(np.concatenate([w.reshape(3, 6, -1, g), np.zeros((3, 6, 8 // g, 1))], -1), -1) / 2
    err = np.abs(back - w).reshape(3, 6, -1, g).max(-1)
    assert (err <= bound * 2 * span + 1e-12).all()


def test_random_weights_are_quantized():
    config = dict(BASE, shared_intermediate_size=6,
                  expert_weights={"format": "int4", "group_size": 2, "zero_points": True})
    w = random_weights(config, 1)
    shapes = weight_shapes(config)
    assert set(w) == set(shapes)
    for key, shape in shapes.items():
        assert w[key].shape == shape, key
    assert w["shared_down_proj"].dtype == np.uint8 and w["up_proj_scales"].dtype == np.float32
    assert quantize_weights(BASE, {"up_proj": 1})["up_proj"] == 1


def test_small_float_codes_match_ml_dtypes():
    """The reference's e4m3fn and e2m1 decoders agree with ml_dtypes' on
    every code (NaN aside)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from moe_mlir.reference import E2M1, _fp8_e4m3
    codes = np.arange(256, dtype=np.uint8)
    expected = codes.view(ml_dtypes.float8_e4m3fn).astype(np.float64)
    finite = ~np.isnan(expected)
    np.testing.assert_array_equal(_fp8_e4m3(codes)[finite], expected[finite])
    # ml_dtypes keeps float4_e2m1fn in a byte's low bits.
    fp4 = np.arange(16, dtype=np.uint8).view(ml_dtypes.float4_e2m1fn).astype(np.float64)
    np.testing.assert_array_equal(E2M1, fp4)


def test_mxfp4_and_fp8_round_trip():
    pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(1)
    w = rng.standard_normal((2, 4, 64))
    packed, scales, zeros = quantize_projection(w, "mxfp4", 32)
    assert packed.shape == (2, 4, 32) and scales.dtype == np.uint8 and zeros is None
    config = dict(BASE, expert_weights={"format": "mxfp4"})
    back = dequantize(config, {"up_proj": packed, "up_proj_scales": scales})["up_proj"]
    # e2m1's steps are at most a third of the value (4 to 6), and the block's
    # largest magnitude maps to at most 6.
    step = 2.0 ** (scales.astype(np.float64) - 127)
    assert (np.abs(back - w).reshape(2, 4, 2, 32) <= step[..., None] + 1e-12).all()
    packed, scales, _ = quantize_projection(w, "fp8_e4m3", 16)
    config = dict(BASE, expert_weights={"format": "fp8_e4m3", "group_size": 16})
    back = dequantize(config, {"up_proj": packed, "up_proj_scales": scales})["up_proj"]
    assert np.abs(back - w).max() <= 2.0 ** -4 * np.abs(w).max()

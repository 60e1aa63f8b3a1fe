"""Expert weights in the formats of docs/QUANTIZATION.md, made from float
weights by rounding to nearest (per group of `group_size` along a row, a
whole row for 0).

int8: q = round(w / s), s = max|w| / 127 over the group.
int4 without zero points: q = round(w / s) + 8, s = max|w| / 7 (q clipped to
0..15); with them: s = (max - min) / 15 over the group (its range widened to
take 0), zero = round(-min / s), q = round(w / s) + zero.
fp8_e4m3: q = e4m3(w / s), s = max|w| / 448.
mxfp4: s = 2^e with e the least exponent that brings max|w| / s to 6 or
below, q = the nearest e2m1 value of w / s.
bf16, f16: w rounded to the type (to nearest even).

With "act_order", each projection's columns are stored in an order of its
own before they are grouped: decreasing squared norm over the rows, a
stand-in for the Hessian diagonal an act-order GPTQ sorts by, given as
`<projection>_perm`.
"""

import numpy as np

from .reference import E2M1, PROJECTIONS, group_size, with_defaults


def _ml_dtypes():
    """ml_dtypes (float8 and bf16 arrays), which rounding to fp8_e4m3 and
    bf16 needs."""
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError("rounding to fp8_e4m3 or bf16 needs ml_dtypes "
                          "(pip install ml_dtypes)") from None
    return ml_dtypes


def pack_int4(q, group):
    """[..., K] values 0..15 as [..., K / 2] bytes: within each group of
    `group`, byte b holds element b (low nibble) and b + group / 2 (high)."""
    grouped = q.reshape(q.shape[:-1] + (-1, group))
    half = group // 2
    packed = grouped[..., :half] | (grouped[..., half:] << 4)
    return packed.reshape(q.shape[:-1] + (-1,)).astype(np.uint8)


def quantize_projection(w, fmt, group=0, zero_points=False):
    """(packed, scales, zeros or None) for one projection `w` [..., N, K]."""
    w = np.asarray(w, dtype=np.float64)
    K = w.shape[-1]
    group = group or K
    grouped = w.reshape(w.shape[:-1] + (K // group, group))
    if fmt == "int8":
        amax = np.abs(grouped).max(axis=-1)
        scale = np.where(amax > 0, amax / 127, 1.0)
        q = np.clip(np.rint(grouped / scale[..., None]), -127, 127)
        return q.astype(np.int8).reshape(w.shape), scale.astype(np.float32), None
    if fmt == "fp8_e4m3":
        ml_dtypes = _ml_dtypes()
        amax = np.abs(grouped).max(axis=-1)
        scale = np.where(amax > 0, amax / 448, 1.0).astype(np.float32)
        q = (grouped / scale[..., None]).astype(ml_dtypes.float8_e4m3fn)
        return q.view(np.uint8).reshape(w.shape), scale, None
    if fmt == "mxfp4":
        amax = np.abs(grouped).max(axis=-1)
        exponent = np.ceil(np.log2(np.where(amax > 0, amax, 1.0) / 6.0))
        e = np.clip(exponent + 127, 1, 254)
        scaled = grouped / (2.0 ** (e - 127))[..., None]
        # The nearest of e2m1's magnitudes: which midpoints lie below.
        midpoints = (E2M1[1:8] + E2M1[:7]) / 2
        codes = np.searchsorted(midpoints, np.abs(scaled)).astype(np.uint8)
        codes = np.where(scaled < 0, codes + 8, codes).astype(np.uint8)
        return pack_int4(codes.reshape(w.shape), group), e.astype(np.uint8), None
    if fmt != "int4":
        raise ValueError(f"unknown quantized format {fmt!r}")
    if zero_points:
        lo = np.minimum(grouped.min(axis=-1), 0.0)
        hi = np.maximum(grouped.max(axis=-1), 0.0)
        scale = np.where(hi > lo, (hi - lo) / 15, 1.0)
        zero = np.clip(np.rint(-lo / scale), 0, 15)
    else:
        amax = np.abs(grouped).max(axis=-1)
        scale = np.where(amax > 0, amax / 7, 1.0)
        zero = np.full(scale.shape, 8.0)
    q = np.clip(np.rint(grouped / scale[..., None]) + zero[..., None], 0, 15)
    packed = pack_int4(q.astype(np.uint8).reshape(w.shape), group)
    zeros = zero.astype(np.uint8) if zero_points else None
    return packed, scale.astype(np.float32), zeros


def quantize_weights(config, weights):
    """`weights` (float, in the layout of SPEC §4) for a config with
    "expert_weights": each projection replaced by its quantized elements,
    with its `<projection>_scales` (and `<projection>_zeros` and
    `<projection>_perm`) added, or for
    bf16 and f16 by its values rounded to the type (float32)."""
    c = with_defaults(config)
    q = c.get("expert_weights")
    if q is None or q["format"] == "dense":
        return dict(weights)
    out = dict(weights)
    for p in PROJECTIONS:
        if weights.get(p) is None:
            continue
        if q["format"] in ("bf16", "f16"):
            kind = _ml_dtypes().bfloat16 if q["format"] == "bf16" else np.float16
            out[p] = np.asarray(weights[p], np.float32).astype(kind).astype(np.float32)
            continue
        w = np.asarray(weights[p], dtype=np.float64)
        if q.get("act_order"):
            perm = np.argsort(-(w * w).sum(axis=-2), axis=-1, kind="stable")
            w = np.take_along_axis(w, perm[..., None, :], axis=-1)
            out[p + "_perm"] = perm.astype(np.int32)
        packed, scales, zeros = quantize_projection(
            w, q["format"], group_size(q), q.get("zero_points", False))
        out[p] = packed
        out[p + "_scales"] = scales
        if zeros is not None:
            out[p + "_zeros"] = zeros
    return out

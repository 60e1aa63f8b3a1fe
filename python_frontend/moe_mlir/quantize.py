"""Quantized expert weights in the layout of docs/QUANTIZATION.md, made from
float weights by rounding to nearest (per group of `group_size` along a
row, a whole row for 0).

int8: q = round(w / s), s = max|w| / 127 over the group.
int4 without zero points: q = round(w / s) + 8, s = max|w| / 7 (q clipped to
0..15); with them: s = (max - min) / 15 over the group (its range widened to
take 0), zero = round(-min / s), q = round(w / s) + zero.
"""

import numpy as np

from .reference import PROJECTIONS, with_defaults


def _pack_int4(q, group):
    """[..., K] values 0..15 as [..., K / 2] bytes: within each group of
    `group`, byte b holds element b (low nibble) and b + group / 2 (high)."""
    grouped = q.reshape(q.shape[:-1] + (-1, group))
    half = group // 2
    packed = grouped[..., :half] | (grouped[..., half:] << 4)
    return packed.reshape(q.shape[:-1] + (-1,)).astype(np.uint8)


def quantize_projection(w, fmt, group_size=0, zero_points=False):
    """(packed, scales, zeros or None) for one projection `w` [..., N, K]."""
    w = np.asarray(w, dtype=np.float64)
    K = w.shape[-1]
    group = group_size or K
    grouped = w.reshape(w.shape[:-1] + (K // group, group))
    if fmt == "int8":
        amax = np.abs(grouped).max(axis=-1)
        scale = np.where(amax > 0, amax / 127, 1.0)
        q = np.clip(np.rint(grouped / scale[..., None]), -127, 127)
        return q.astype(np.int8).reshape(w.shape), scale.astype(np.float32), None
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
    packed = _pack_int4(q.astype(np.uint8).reshape(w.shape), group)
    zeros = zero.astype(np.uint8) if zero_points else None
    return packed, scale.astype(np.float32), zeros


def quantize_weights(config, weights):
    """`weights` (float, in the layout of SPEC §4) for a config with
    "expert_weights": each projection replaced by its integers, with its
    `<projection>_scales` (and `<projection>_zeros`) added."""
    c = with_defaults(config)
    q = c.get("expert_weights")
    if q is None or q["format"] == "dense":
        return dict(weights)
    out = dict(weights)
    for p in PROJECTIONS:
        if weights.get(p) is None:
            continue
        packed, scales, zeros = quantize_projection(
            weights[p], q["format"], q.get("group_size", 0), q.get("zero_points", False))
        out[p] = packed
        out[p + "_scales"] = scales
        if zeros is not None:
            out[p + "_zeros"] = zeros
    return out

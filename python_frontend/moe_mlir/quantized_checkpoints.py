"""Quantized experts from their checkpoints' own layouts, repacked once, on
the host, into the arrays of docs/QUANTIZATION.md.

- DeepSeek-V3 / Qwen3 FP8 (`quant_method` "fp8"): `<proj>.weight` in
  float8_e4m3fn with `<proj>.weight_scale_inv`, one f32 multiplier per
  `weight_block_size` block ([bn, bk], 128 × 128); a partial last block
  (a size not a multiple of the block) takes its block's scale, as
  DeepSeek's kernel and transformers do. The library's scales are per row
  and per group of `group_size` along K: each block's scale is repeated
  over its rows, and over groups of gcd(K, bk) where bk does not divide K.
- GPT-OSS MXFP4 (`quant_method` "mxfp4"): `experts.gate_up_proj_blocks`
  [E, 2F, H/32, 16] and `experts.down_proj_blocks` [E, H, F/32, 16], two
  e2m1 values a byte, low nibble first, with `_scales` [.., K/32] of e8m0
  exponents; gate_up's rows interleave gate (even) and up (odd). The
  nibbles are reordered into the library's order within each group of 32.
- GPTQ (`quant_method` "gptq", 4 bits): `<proj>.qweight` [K/8, N] int32,
  eight values along K a word, value i in bits 4i; `<proj>.qzeros`
  [K/g, N/8] int32 along N the same way; `<proj>.scales` [K/g, N] f16;
  `<proj>.g_idx` [K], the group of each column. `checkpoint_format`
  "gptq" stores each zero point minus one. Act-order checkpoints
  (`desc_act`) keep the columns in the input's order with their groups
  scattered along K: the columns are sorted by group (stably) into the
  library's contiguous groups, and the order is `<proj>_perm`
  ("act_order" in the config).
- AWQ (`quant_method` "awq", 4 bits, GEMM packing): `<proj>.qweight`
  [K, N/8] int32, eight values along N a word in the order
  0, 2, 4, 6, 1, 3, 5, 7; `<proj>.qzeros` [K/g, N/8] the same way;
  `<proj>.scales` [K/g, N] f16.
"""

import math

import numpy as np

from .quantize import pack_int4
from .reference import group_size
from .weights import WeightError


def _fail(message):
    raise WeightError(message)


def fp8_block_projection(name, weight, scale_inv, block, group):
    """`weight` [N, K] float8_e4m3fn bits (uint8) and `scale_inv`
    [ceil(N/bn), ceil(K/bk)] -> (bits [N, K], scales [N, K/group]) with
    group dividing K and bk."""
    N, K = weight.shape
    bn, bk = block
    want = (-(-N // bn), -(-K // bk))
    if tuple(scale_inv.shape) != want:
        _fail(f"'{name}_scale_inv' has shape {list(scale_inv.shape)}, want {list(want)} "
              f"for a [{N}, {K}] weight in [{bn}, {bk}] blocks")
    if K % group or bk % group:
        _fail(f"'{name}': a group of {group} does not split its {K} columns in blocks of {bk}")
    rows = np.arange(N) // bn
    columns = (np.arange(K // group) * group) // bk
    scales = np.asarray(scale_inv, dtype=np.float32)[rows[:, None], columns[None, :]]
    return np.ascontiguousarray(weight, dtype=np.uint8), np.ascontiguousarray(scales)


def mxfp4_projection(name, blocks, scales):
    """GPT-OSS `blocks` [..., N, K/32, 16] and `scales` [..., N, K/32] (e8m0)
    -> (bytes [..., N, K/2] in the library's nibble order, scales)."""
    if blocks.shape[-1] != 16 or blocks.shape[:-1] != scales.shape:
        _fail(f"'{name}_blocks' {list(blocks.shape)} with '{name}_scales' "
              f"{list(scales.shape)}: want [.., N, K/32, 16] with [.., N, K/32]")
    b = np.asarray(blocks, dtype=np.uint8)
    values = np.stack([b & 15, b >> 4], axis=-1).reshape(b.shape[:-1] + (32,))
    packed = pack_int4(values.reshape(b.shape[:-2] + (-1,)), 32)
    return packed, np.ascontiguousarray(scales, dtype=np.uint8)


def _unpack_words(words, axis_len, order=None):
    """int32 words holding eight 4-bit values each along their last axis ->
    the values, [..., 8 * words]; value p of a word in bits 4p, placed at
    position order[p] of its eight."""
    w = np.asarray(words).astype(np.uint32)
    nibbles = (w[..., None] >> (4 * np.arange(8, dtype=np.uint32))) & 15
    if order is not None:
        placed = np.empty_like(nibbles)
        placed[..., order] = nibbles
        nibbles = placed
    out = nibbles.reshape(w.shape[:-1] + (-1,))
    assert out.shape[-1] == axis_len
    return out.astype(np.uint8)


def gptq_order(name, g_idx, K, g, act_order):
    """The column order that makes `g_idx`'s groups contiguous: the columns
    sorted by group, stably (the identity without act order, which needs
    g_idx to be k // g already)."""
    contiguous = np.arange(K) // g
    if g_idx is None:
        return np.arange(K)
    g_idx = np.asarray(g_idx).astype(np.int64)
    if g_idx.shape != (K,):
        _fail(f"'{name}.g_idx' has shape {list(g_idx.shape)}, want [{K}]")
    if not act_order:
        if not np.array_equal(g_idx, contiguous):
            _fail(f"'{name}.g_idx' puts a row's groups out of order along K, but "
                  f"quantization_config.desc_act is not true")
        return np.arange(K)
    perm = np.argsort(g_idx, kind="stable")
    if not np.array_equal(g_idx[perm], contiguous):
        _fail(f"'{name}.g_idx' does not give each of the {K // g} groups {g} columns")
    return perm


def gptq_projection(name, qweight, qzeros, scales, g_idx, N, K, group, zero_offset,
                    act_order=False):
    """GPTQ tensors of one [N, K] projection -> (packed [N, K/2], scales
    [N, K/g] f32, zeros [N, K/g] uint8, perm [K] int32): column k of the
    packed rows is the checkpoint's column perm[k] (gptq_order)."""
    g = group or K
    if tuple(qweight.shape) != (K // 8, N) or tuple(scales.shape) != (K // g, N) \
            or tuple(qzeros.shape) != (K // g, N // 8):
        _fail(f"'{name}.qweight' {list(qweight.shape)}, '.qzeros' {list(qzeros.shape)}, "
              f"'.scales' {list(scales.shape)}: want [{K // 8}, {N}], [{K // g}, {N // 8}], "
              f"[{K // g}, {N}] for GPTQ with group_size {group}")
    perm = gptq_order(name, g_idx, K, g, act_order)
    q = _unpack_words(np.ascontiguousarray(np.asarray(qweight).T), K)  # [N, K]
    z = _unpack_words(qzeros, N).astype(np.int64) + zero_offset        # [K/g, N]
    return (pack_int4(np.ascontiguousarray(q[:, perm]), g),
            np.ascontiguousarray(np.asarray(scales, dtype=np.float32).T),
            np.ascontiguousarray(z.T.astype(np.uint8)), perm.astype(np.int32))


AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def awq_projection(name, qweight, qzeros, scales, N, K, group):
    """AWQ (GEMM) tensors of one [N, K] projection -> as gptq_projection."""
    g = group or K
    if tuple(qweight.shape) != (K, N // 8) or tuple(scales.shape) != (K // g, N) \
            or tuple(qzeros.shape) != (K // g, N // 8):
        _fail(f"'{name}.qweight' {list(qweight.shape)}, '.qzeros' {list(qzeros.shape)}, "
              f"'.scales' {list(scales.shape)}: want [{K}, {N // 8}], [{K // g}, {N // 8}], "
              f"[{K // g}, {N}] for AWQ with group_size {group}")
    q = _unpack_words(qweight, N, AWQ_ORDER)      # [K, N]
    z = _unpack_words(qzeros, N, AWQ_ORDER)       # [K/g, N]
    return (pack_int4(np.ascontiguousarray(q.T), g),
            np.ascontiguousarray(np.asarray(scales, dtype=np.float32).T),
            np.ascontiguousarray(z.T))


def fp8_group(block_k, depths):
    """The group the library's scales take for FP8 blocks of `block_k`
    columns: the largest that divides the block and every reduction."""
    g = block_k
    for depth in depths:
        g = math.gcd(g, depth)
    return g


def expert_weights_of(quantization, source, depths):
    """docs/QUANTIZATION.md's "expert_weights" for a Hugging Face
    `quantization_config`; `depths` are the projections' reductions (hidden,
    intermediate and shared intermediate sizes). Errors name the field."""
    def fail(field, message):
        from .hf import HFConfigError
        raise HFConfigError(source, "quantization_config" + (f".{field}" if field else ""),
                            message)
    if not isinstance(quantization, dict):
        fail("", "must be an object")
    method = quantization.get("quant_method")
    if method == "fp8":
        if quantization.get("fmt", "e4m3") != "e4m3":
            fail("fmt", f'"{quantization.get("fmt")}": only e4m3 weights are supported')
        block = quantization.get("weight_block_size")
        if not (isinstance(block, list) and len(block) == 2
                and all(isinstance(b, int) and b > 0 for b in block)):
            fail("weight_block_size", f"must be [rows, columns], got {json_text(block)}")
        return {"format": "fp8_e4m3", "group_size": fp8_group(block[1], depths)}
    if method == "mxfp4":
        return {"format": "mxfp4"}
    if method in ("gptq", "awq"):
        if quantization.get("bits", 4) != 4:
            fail("bits", f"{quantization.get('bits')}: only 4-bit {method} is supported")
        if method == "awq" and str(quantization.get("version", "gemm")).lower() != "gemm":
            fail("version", f"\"{quantization.get('version')}\": only AWQ's GEMM packing "
                 "is supported")
        group = quantization.get("group_size", 128)
        q = {"format": "int4", "group_size": 0 if group == -1 else group, "zero_points": True}
        if method == "gptq" and quantization.get("desc_act"):
            q["act_order"] = True
        return q
    fail("quant_method", f"{json_text(method)} is not one of \"fp8\", \"mxfp4\", "
         "\"gptq\", \"awq\"")


def json_text(value):
    import json
    return json.dumps(value)


def _projection(ckpt, prefix, N, K, q, quantization):
    """One [N, K] projection stored under `prefix` (`...gate_proj`) as the
    library's arrays: {"": elements, "_scales": ..., "_zeros": ...}."""
    fmt = q["format"]
    g = group_size(q)
    if fmt == "fp8_e4m3":
        weight = ckpt.get_raw(prefix + ".weight")
        if weight.shape != (N, K):
            _fail(f"'{prefix}.weight' has shape {list(weight.shape)}, want [{N}, {K}]")
        block = quantization.get("weight_block_size", [128, 128])
        bits, scales = fp8_block_projection(prefix + ".weight", weight,
                                            ckpt.get(prefix + ".weight_scale_inv"), block, g)
        return {"": bits, "_scales": scales}
    if fmt == "int4":
        qweight = ckpt.get_raw(prefix + ".qweight")
        qzeros, scales = ckpt.get_raw(prefix + ".qzeros"), ckpt.get(prefix + ".scales")
        if quantization.get("quant_method") == "awq":
            packed, s, z = awq_projection(prefix, qweight, qzeros, scales, N, K, g)
        else:
            g_idx = ckpt.get_raw(prefix + ".g_idx") if prefix + ".g_idx" in ckpt else None
            offset = 1 if quantization.get("checkpoint_format", "gptq") == "gptq" else 0
            packed, s, z, perm = gptq_projection(prefix, qweight, qzeros, scales, g_idx,
                                                 N, K, g, offset, q.get("act_order", False))
            if q.get("act_order"):
                return {"": packed, "_scales": s, "_zeros": z, "_perm": perm}
        return {"": packed, "_scales": s, "_zeros": z}
    _fail(f"'{prefix}': no loader for {fmt} projections stored one by one")


def _stack(parts):
    return {key: np.stack([p[key] for p in parts]) for key in parts[0]}


def routed_experts(ckpt, p, c, quantization):
    """The routed experts of a quantized checkpoint's block at `p`, as
    {gate_proj, gate_proj_scales, ..., down_proj_zeros}."""
    E, F, H = c.num_experts, c.intermediate_size, c.hidden_size
    q = c.expert_weights
    out = {}
    blocks = f"{p}experts.gate_up_proj_blocks"
    if blocks in ckpt:
        if q["format"] != "mxfp4":
            _fail(f"'{blocks}' holds mxfp4 weights, but the config's format is {q['format']}")
        gate_up, gate_up_scales = mxfp4_projection(
            blocks[:-len("_blocks")], ckpt.get_raw(blocks),
            ckpt.get_raw(f"{p}experts.gate_up_proj_scales"))
        if gate_up.shape != (E, 2 * F, H // 2):
            _fail(f"'{blocks}' holds [{', '.join(map(str, gate_up.shape[:2]))}] rows of "
                  f"{2 * gate_up.shape[2]}, want [{E}, {2 * F}] of {H}")
        # GPT-OSS interleaves gate (even rows) and up (odd rows).
        parts = {"gate_proj": slice(0, None, 2), "up_proj": slice(1, None, 2)}
        for name, rows in parts.items():
            if name == "gate_proj" and not c.gated:
                continue
            out[name] = np.ascontiguousarray(gate_up[:, rows])
            out[name + "_scales"] = np.ascontiguousarray(gate_up_scales[:, rows])
        down, down_scales = mxfp4_projection(
            f"{p}experts.down_proj", ckpt.get_raw(f"{p}experts.down_proj_blocks"),
            ckpt.get_raw(f"{p}experts.down_proj_scales"))
        if down.shape != (E, H, F // 2):
            _fail(f"'{p}experts.down_proj_blocks' has {list(down.shape[:2])} rows of "
                  f"{2 * down.shape[2]}, want [{E}, {H}] of {F}")
        out["down_proj"], out["down_proj_scales"] = down, down_scales
        return out
    names = ("gate_proj", "up_proj", "down_proj")
    if f"{p}experts.0.w1.weight" in ckpt or f"{p}experts.0.w1.qweight" in ckpt:
        names = ("w1", "w3", "w2")
    shapes = {"gate_proj": (F, H), "up_proj": (F, H), "down_proj": (H, F)}
    for ours, theirs in zip(("gate_proj", "up_proj", "down_proj"), names):
        if ours == "gate_proj" and not c.gated:
            continue
        N, K = shapes[ours]
        stacked = _stack([_projection(ckpt, f"{p}experts.{e}.{theirs}", N, K, q, quantization)
                          for e in range(E)])
        for suffix, array in stacked.items():
            out[ours + suffix] = array
    return out


def shared_expert(ckpt, prefixes, c, quantization):
    """The shared expert's quantized projections, from the first of
    `prefixes` (`...shared_experts.`) that holds them."""
    H, Fs = c.hidden_size, c.shared_intermediate_size
    q = c.expert_weights
    for sp in prefixes:
        if not any(f"{sp}up_proj.{n}" in ckpt for n in ("weight", "qweight")):
            continue
        out = {}
        for name, (N, K) in (("gate_proj", (Fs, H)), ("up_proj", (Fs, H)),
                             ("down_proj", (H, Fs))):
            if name == "gate_proj" and not c.gated:
                continue
            for suffix, array in _projection(ckpt, sp + name, N, K, q, quantization).items():
                out["shared_" + name + suffix] = array
        return out
    _fail(f"{ckpt.path}: no quantized shared expert under {prefixes[0]}")

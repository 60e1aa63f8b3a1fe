"""One MoE layer's weights from a safetensors checkpoint, in the SPEC §4 layout.

The safetensors format is read directly: an 8-byte little-endian header
length, a JSON header mapping each tensor name to its dtype, shape and byte
range, then the raw little-endian data. F32, F16 and BF16 tensors are read.

Layouts understood for the routed experts (E experts, hidden H, expert width F):
- one tensor per expert and projection (`experts.{e}.gate_proj.weight` ...,
  Mixtral's `w1`/`w3`/`w2`; nn.Linear layout [F, H] / [H, F]), as most
  families ship;
- stacked: `experts.gate_proj`, `experts.up_proj` [E, F, H] and
  `experts.down_proj` [E, H, F];
- fused: `experts.gate_up_proj` with `experts.down_proj`, either
  [E, 2F, H] with down [E, H, F] (nn.Linear layout: rows 0..F-1 are the gate
  projection, rows F..2F-1 the up projection), or [E, H, 2F] with down
  [E, F, H] (input-major, applied as x @ W: columns 0..F-1 gate, F..2F-1 up;
  Llama 4, OpenAI Privacy Filter). GraniteMoE's and JetMoE's `input_linear` /
  `output_linear` are the first form. GPT-OSS interleaves them instead:
  [E, H, 2F] whose column 2f is gate row f and column 2f + 1 up row f, its
  biases `experts.gate_up_proj_bias` [E, 2F] the same way, and
  `experts.down_proj_bias` [E, H] (docs/FAMILY-RULES.md §4);
- DBRX: `experts.mlp.w1` (gate), `v1` (up), `w2` (down, transposed), each
  [E * F, H].

The block is found under `model.layers.{i}.` (a multimodal Llama 4's under
`language_model.model.layers.{i}.` or `model.language_model.layers.{i}.`) as
`mlp.`, `block_sparse_moe.` or `feed_forward.` (DBRX:
`transformer.blocks.{i}.ffn.`), by its router (`gate.weight`, HunYuan's
`gate.wg.weight`, `router.layer.weight`, `router.gate.weight` or
`router.weight`); the router bias beside it (`gate.bias`, `router.bias`, ...),
the selection bias, shared experts, shared-expert gate and JetMoE's output
bias (`bias`) by the names each family's checkpoints use.
"""

import json
import struct
from pathlib import Path

import numpy as np

from .config import as_config

_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
# Quantized checkpoints' tensors, read as stored: float8 e4m3fn as its bytes.
_RAW_DTYPES = dict(_DTYPES, U8=np.dtype("u1"), I8=np.dtype("i1"), I32=np.dtype("<i4"),
                   F8_E4M3=np.dtype("u1"))


class WeightError(ValueError):
    pass


def _bf16_bits_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


class SafetensorsFile:
    """The tensors of one .safetensors file, read on demand."""

    def __init__(self, path):
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise WeightError(f"{self.path}: not a safetensors file (too short)")
            (n,) = struct.unpack("<Q", raw)
            try:
                header = json.loads(fh.read(n))
            except ValueError:
                raise WeightError(f"{self.path}: not a safetensors file (bad header)") from None
        self.data_start = 8 + n
        self.metadata = header.pop("__metadata__", None)
        self.header = header

    def keys(self):
        return self.header.keys()

    def __contains__(self, key):
        return key in self.header

    def get(self, key):
        """The tensor as float32 (exact for F16 and BF16)."""
        dtype = self.header[key]["dtype"]
        if dtype not in _DTYPES:
            raise WeightError(f"{self.path}: tensor '{key}' has dtype {dtype}; "
                              "only F32, F16 and BF16 are supported")
        raw = self.get_raw(key)
        if dtype == "BF16":
            return _bf16_bits_to_f32(raw)
        return raw.astype(np.float32)

    def get_raw(self, key):
        """The tensor as stored: F8_E4M3 as its bytes (uint8), U8, I8 and I32
        as such, BF16 as its bits (uint16)."""
        info = self.header[key]
        dtype = info["dtype"]
        if dtype not in _RAW_DTYPES:
            raise WeightError(f"{self.path}: tensor '{key}' has dtype {dtype}; "
                              f"only {', '.join(_RAW_DTYPES)} are supported")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * _RAW_DTYPES[dtype].itemsize:
            raise WeightError(f"{self.path}: tensor '{key}' has {end - begin} bytes "
                              f"for shape {list(shape)} {dtype}")
        return np.fromfile(self.path, dtype=_RAW_DTYPES[dtype], count=count,
                           offset=self.data_start + begin).reshape(shape)


class Checkpoint:
    """Every tensor of a checkpoint: a .safetensors file, or a directory of
    them (sharded, with or without model.safetensors.index.json)."""

    def __init__(self, path):
        path = Path(path)
        files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
        if not files:
            raise WeightError(f"{path}: no .safetensors files")
        self.path = path
        self.where = {}
        for file in files:
            st = SafetensorsFile(file)
            for key in st.keys():
                self.where[key] = st

    def __contains__(self, key):
        return key in self.where

    def get(self, key):
        if key not in self.where:
            raise WeightError(f"{self.path}: no tensor '{key}'")
        return self.where[key].get(key)

    def get_raw(self, key):
        if key not in self.where:
            raise WeightError(f"{self.path}: no tensor '{key}'")
        return self.where[key].get_raw(key)

    def config_json(self):
        """The config.json beside the checkpoint, or {}."""
        folder = self.path if self.path.is_dir() else self.path.parent
        try:
            data = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


# Where a family's MoE block sits in decoder layer i, in the order tried
# (checkpoints saved by transformers 5 keep the original hub names; the
# in-memory module names are accepted too).
_BLOCKS = ("mlp.", "block_sparse_moe.", "feed_forward.")
_BLOCK_FIRST = {"mixtral": "block_sparse_moe.", "minimax": "block_sparse_moe.",
                "minimax_m2": "block_sparse_moe.", "kimi_linear": "block_sparse_moe.",
                "granitemoe": "block_sparse_moe.", "granitemoeshared": "block_sparse_moe.",
                "granitemoe_swa": "block_sparse_moe.", "granitemoehybrid": "block_sparse_moe.",
                "phimoe": "block_sparse_moe.", "jamba": "feed_forward.",
                "llama4": "feed_forward.", "llama4_text": "feed_forward."}
# Where decoder layer i sits: text models, then multimodal models' language
# model (Llama 4: `language_model.model.`, as transformers saves it, or
# `model.language_model.`).
_LAYER_PREFIXES = ("model.layers.{}.", "language_model.model.layers.{}.",
                   "model.language_model.layers.{}.")
# Families whose fused gate_up_proj interleaves gate and up columns.
_INTERLEAVED = ("gpt_oss",)
# Tensor names inside the block, in the order tried.
_ROUTERS = ("gate.weight", "gate.wg.weight", "router.layer.weight", "router.gate.weight",
            "router.weight")
_SELECTION_BIASES = ("gate.e_score_correction_bias", "e_score_correction_bias",
                     "moe_statics.e_score_correction_bias",
                     "gate.moe_statics.e_score_correction_bias", "expert_bias",
                     "experts.e_score_correction_bias")
_SHARED = ("shared_experts.", "shared_expert.", "shared_mlp.")


def _switch_prefix(layer):
    if isinstance(layer, str):
        stack, _, block = layer.partition(".")
    else:
        stack, block = "encoder", layer
    sub = {"encoder": 1, "decoder": 2}.get(stack)
    if sub is None:
        raise WeightError(f"switch_transformers layer {layer!r}: want an encoder "
                          "block number or 'encoder.N' / 'decoder.N'")
    return f"{stack}.block.{int(block)}.layer.{sub}.mlp."


def _detect_family(ckpt):
    """Switch Transformers' and DBRX's layouts by their key names; else the
    `model_type` of the config.json beside the checkpoint (GPT-OSS and the
    OpenAI Privacy Filter have the same names for differently laid out
    tensors), or None: every other family is found by its block's tensor
    names."""
    keys = ckpt.where.keys()
    if any(".mlp.router.classifier." in k for k in keys):
        return "switch_transformers"
    if any(k.startswith("transformer.blocks.") and ".ffn.router." in k for k in keys):
        return "dbrx"
    model_type = ckpt.config_json().get("model_type")
    return model_type if isinstance(model_type, str) else None


def _first(ckpt, prefix, names):
    return next((prefix + n for n in names if prefix + n in ckpt), None)


def _check(name, array, shape):
    if tuple(array.shape) != tuple(shape):
        raise WeightError(f"'{name}' has shape {list(array.shape)}, the config wants "
                          f"{list(shape)}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _gate_up_halves(interleaved, F):
    """The index expressions of the gate and up halves of a fused axis of 2F:
    the first and second F, or (interleaved) the even and odd entries."""
    if interleaved:
        return slice(0, None, 2), slice(1, None, 2)
    return slice(0, F), slice(F, None)


def _split_gate_up(name, gate_up, down, down_name, E, F, H, interleaved=False):
    """A fused gate/up tensor with its down projection -> (gate, up, down) in
    nn.Linear layout, from [E, 2F, H] + [E, H, F] or [E, H, 2F] + [E, F, H];
    gate and up halves (see _gate_up_halves) along the 2F axis."""
    g, u = _gate_up_halves(interleaved, F)
    if gate_up.shape == (E, 2 * F, H) and down.shape == (E, H, F):
        return gate_up[:, g, :], gate_up[:, u, :], down
    if gate_up.shape == (E, H, 2 * F) and down.shape == (E, F, H):
        return (gate_up[:, :, g].transpose(0, 2, 1), gate_up[:, :, u].transpose(0, 2, 1),
                down.transpose(0, 2, 1))
    raise WeightError(
        f"'{name}' {list(gate_up.shape)} with '{down_name}' {list(down.shape)}: "
        f"want [E, 2F, H] with [E, H, F] or [E, H, 2F] with [E, F, H] "
        f"(E={E}, F={F}, H={H})")


def _routed_experts(ckpt, p, c, family):
    """(gate [E,F,H] or None, up [E,F,H], down [E,H,F])."""
    E, F, H = c.num_experts, c.intermediate_size, c.hidden_size
    if family == "switch_transformers":
        up = np.stack([_check(n, ckpt.get(n), (F, H)) for n in
                       (f"{p}experts.expert_{e}.wi.weight" for e in range(E))])
        down = np.stack([_check(n, ckpt.get(n), (H, F)) for n in
                         (f"{p}experts.expert_{e}.wo.weight" for e in range(E))])
        return None, up, down

    def finish(name, gate, up, down, down_name):
        return (_check(name, gate, (E, F, H)) if c.gated else None,
                _check(name, up, (E, F, H)), _check(down_name, down, (E, H, F)))

    # Fused gate/up: transformers' in-memory experts, GPT-OSS's and Llama 4's
    # checkpoints, or GraniteMoE's and JetMoE's.
    for fused, down_name in ((f"{p}experts.gate_up_proj", f"{p}experts.down_proj"),
                             (f"{p}input_linear.weight", f"{p}output_linear.weight")):
        if fused in ckpt:
            gate, up, down = _split_gate_up(fused, ckpt.get(fused), ckpt.get(down_name),
                                            down_name, E, F, H,
                                            _interleaved(ckpt, p, family))
            return finish(fused, gate, up, down, down_name)
    # DBRX: w1 (gate), v1 (up) and w2 (down, transposed), each [E * F, H].
    if f"{p}experts.mlp.w1" in ckpt:
        w1, v1, w2 = (f"{p}experts.mlp.{n}" for n in ("w1", "v1", "w2"))
        gate, up, down = (_check(n, ckpt.get(n), (E * F, H)).reshape(E, F, H)
                          for n in (w1, v1, w2))
        return finish(w1, gate, up, down.transpose(0, 2, 1), w2)

    names = ("gate_proj", "up_proj", "down_proj")
    if f"{p}experts.0.w3.weight" in ckpt or f"{p}experts.w3" in ckpt or (
            family in ("mixtral", "minimax", "minimax_m2", "kimi_linear")
            and f"{p}experts.0.up_proj.weight" not in ckpt):
        names = ("w1", "w3", "w2")
    stacked = f"{p}experts.{names[1]}"
    if stacked in ckpt:
        gate = _check(f"{p}experts.{names[0]}", ckpt.get(f"{p}experts.{names[0]}"),
                      (E, F, H)) if c.gated else None
        return (gate, _check(stacked, ckpt.get(stacked), (E, F, H)),
                _check(f"{p}experts.{names[2]}", ckpt.get(f"{p}experts.{names[2]}"),
                       (E, H, F)))

    def per_expert(proj, shape):
        return np.stack([_check(n, ckpt.get(n), shape) for n in
                         (f"{p}experts.{e}.{proj}.weight" for e in range(E))])

    gate = per_expert(names[0], (F, H)) if c.gated else None
    return gate, per_expert(names[1], (F, H)), per_expert(names[2], (H, F))


def _interleaved(ckpt, p, family):
    """Whether the block's fused gate_up_proj interleaves gate and up
    (GPT-OSS) rather than concatenating them. Biased fused experts are
    GPT-OSS's or the OpenAI Privacy Filter's, which differ only in this:
    without a family to tell them apart, that is an error."""
    if family is None and f"{p}experts.gate_up_proj_bias" in ckpt:
        raise WeightError(
            f"{ckpt.path}: '{p}experts.gate_up_proj' with biases is laid out as GPT-OSS "
            "lays it out (gate and up columns interleaved) or as the OpenAI Privacy "
            "Filter does (gate columns first), and no config.json says which: pass "
            "family='gpt_oss' or family='openai_privacy_filter'")
    return family in _INTERLEAVED


def _expert_biases(ckpt, p, c, family):
    """{gate_proj_bias [E, F] (gated), up_proj_bias [E, F], down_proj_bias
    [E, H]}: fused `experts.gate_up_proj_bias` [E, 2F] (split as the gate_up_proj
    columns are) with `experts.down_proj_bias`, or per expert
    `experts.{e}.gate_proj.bias` (Mixtral names: w1 / w3 / w2) and the like."""
    E, F, H = c.num_experts, c.intermediate_size, c.hidden_size
    out = {}
    fused = f"{p}experts.gate_up_proj_bias"
    if fused in ckpt:
        g, u = _gate_up_halves(_interleaved(ckpt, p, family), F)
        gate_up = _check(fused, ckpt.get(fused), (E, 2 * F))
        if c.gated:
            out["gate_proj_bias"] = np.ascontiguousarray(gate_up[:, g])
        out["up_proj_bias"] = np.ascontiguousarray(gate_up[:, u])
        name = f"{p}experts.down_proj_bias"
        out["down_proj_bias"] = _check(name, ckpt.get(name), (E, H))
        return out
    for names in (("gate_proj", "up_proj", "down_proj"), ("w1", "w3", "w2")):
        if f"{p}experts.0.{names[1]}.bias" in ckpt:
            def per_expert(proj, size):
                return np.stack([_check(n, ckpt.get(n), (size,)) for n in
                                 (f"{p}experts.{e}.{proj}.bias" for e in range(E))])
            if c.gated:
                out["gate_proj_bias"] = per_expert(names[0], F)
            out["up_proj_bias"] = per_expert(names[1], F)
            out["down_proj_bias"] = per_expert(names[2], H)
            return out
    raise WeightError(f"{ckpt.path}: no expert biases ('{fused}' or "
                      f"'{p}experts.0.up_proj.bias'), which the config's expert_bias needs")


def _shared_expert(ckpt, p, layer_prefix, c):
    """{shared_gate_proj, shared_up_proj, shared_down_proj}: in the block
    (shared_experts. / shared_expert. / shared_mlp.), or GraniteMoE's
    shared_mlp beside it, fused: input_linear [2Fs, H] (gate rows first) and
    output_linear [H, Fs]."""
    H, Fs = c.hidden_size, c.shared_intermediate_size
    out = {}
    for sp in [p + s for s in _SHARED] + [f"{layer_prefix}shared_mlp."]:
        if f"{sp}up_proj.weight" in ckpt:
            if c.gated:
                out["shared_gate_proj"] = _check(f"{sp}gate_proj.weight",
                                                 ckpt.get(f"{sp}gate_proj.weight"), (Fs, H))
            out["shared_up_proj"] = _check(f"{sp}up_proj.weight",
                                           ckpt.get(f"{sp}up_proj.weight"), (Fs, H))
            out["shared_down_proj"] = _check(f"{sp}down_proj.weight",
                                             ckpt.get(f"{sp}down_proj.weight"), (H, Fs))
            return out
        if f"{sp}input_linear.weight" in ckpt:
            name = f"{sp}input_linear.weight"
            gate_up = _check(name, ckpt.get(name), (2 * Fs, H))
            if c.gated:
                out["shared_gate_proj"] = gate_up[:Fs]
            out["shared_up_proj"] = np.ascontiguousarray(gate_up[Fs:])
            out["shared_down_proj"] = _check(f"{sp}output_linear.weight",
                                             ckpt.get(f"{sp}output_linear.weight"), (H, Fs))
            return out
    raise WeightError(f"{ckpt.path}: no shared expert ('{p}shared_experts.up_proj.weight' "
                      f"or the like), which the config's shared_intermediate_size ({Fs}) "
                      "needs")


def load_layer_weights(path, config, layer, family=None, quantization=None):
    """The weights of MoE layer `layer` of a checkpoint, as {ABI field: float32
    array} in the SPEC §4 layout, holding exactly the weights `config` uses.

    path: a .safetensors file or a directory of shards. config: the layer's
    MoEConfig (from_hf_config gives it). family: the HF `model_type` whose
    layout to read (any of hf.FAMILIES); when None it is told from the key
    names, or from the config.json beside the checkpoint (GPT-OSS's
    interleaved gate/up columns need one of the two). For
    switch_transformers, `layer` is an encoder block number or "encoder.N" /
    "decoder.N".

    A config with quantized "expert_weights" (from_hf_config reads them from
    `quantization_config`) reads its experts from the checkpoint's own
    quantized layout (moe_mlir.quantized_checkpoints) and returns the arrays
    of docs/QUANTIZATION.md for them. quantization: the checkpoint's
    `quantization_config` (GPTQ's checkpoint_format, FP8's block size);
    default the one in the config.json beside the checkpoint.
    """
    c = as_config(config)
    ckpt = Checkpoint(path)
    if family is None:
        family = _detect_family(ckpt)
    E, H, Fs = c.num_experts, c.hidden_size, c.shared_intermediate_size
    if family == "switch_transformers":
        layer_prefix = p = _switch_prefix(layer)
        router_name = f"{p}router.classifier.weight"
        router = router_name if router_name in ckpt else None
    else:
        prefixes = ("transformer.blocks.{}.",) if family == "dbrx" else _LAYER_PREFIXES
        blocks = ("ffn.",) if family == "dbrx" else tuple(dict.fromkeys(
            (_BLOCK_FIRST.get(family, "mlp."),) + _BLOCKS))
        router_names = ("router.layer.weight",) if family == "dbrx" else _ROUTERS
        layer_prefix = prefixes[0].format(layer)
        router, p = None, layer_prefix + blocks[0]
        for prefix in (pre.format(layer) for pre in prefixes):
            for block in blocks:
                router = _first(ckpt, prefix + block, router_names)
                if router:
                    layer_prefix, p = prefix, prefix + block
                    break
            if router:
                break
        router_name = p + router_names[0]
    if router is None:
        raise WeightError(f"{path}: no tensor '{router_name}': layer {layer} is not an "
                          f"MoE layer of this {family + ' ' if family else ''}checkpoint")
    out = {"router": _check(router, ckpt.get(router), (E, H))}
    if c.router_bias:
        # Beside the router's weight: gate.bias, router.bias (GPT-OSS),
        # router.classifier.bias (Switch).
        name = router[:-len("weight")] + "bias"
        out["router_bias"] = _check(name, ckpt.get(name), (E,))
    if c.selection_bias:
        name = _first(ckpt, p, _SELECTION_BIASES) or p + _SELECTION_BIASES[0]
        # Ernie 4.5 keeps it as [1, E].
        out["selection_bias"] = _check(name, ckpt.get(name).reshape(-1), (E,))
    quantized = c.expert_weights is not None and c.expert_weights["format"] in (
        "int8", "int4", "fp8_e4m3", "mxfp4")
    if quantized:
        from . import quantized_checkpoints
        if quantization is None:
            quantization = ckpt.config_json().get("quantization_config", {})
        out.update(quantized_checkpoints.routed_experts(ckpt, p, c, quantization))
    else:
        gate, up, down = _routed_experts(ckpt, p, c, family)
        if gate is not None:
            out["gate_proj"] = gate
        out["up_proj"], out["down_proj"] = up, down
    if c.expert_bias:
        out.update(_expert_biases(ckpt, p, c, family))
    if c.output_bias:
        name = f"{p}bias"  # JetMoeMoE.bias
        out["output_bias"] = _check(name, ckpt.get(name), (H,))
    if Fs > 0 and quantized:
        out.update(quantized_checkpoints.shared_expert(
            ckpt, [p + s for s in _SHARED], c, quantization))
    elif Fs > 0:
        out.update(_shared_expert(ckpt, p, layer_prefix, c))
        if c.shared_expert_gate:
            name = f"{p}shared_expert_gate.weight"
            # nn.Linear(H, 1): [1, H]
            out["shared_expert_gate"] = _check(name, ckpt.get(name).reshape(-1), (H,))
    return out

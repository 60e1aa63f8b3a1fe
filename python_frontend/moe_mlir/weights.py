"""One MoE layer's weights from a safetensors checkpoint, in the SPEC §4 layout.

The safetensors format is read directly: an 8-byte little-endian header
length, a JSON header mapping each tensor name to its dtype, shape and byte
range, then the raw little-endian data. F32, F16 and BF16 tensors are read.

Layouts understood for the routed experts (E experts, hidden H, expert width F):
- one tensor per expert and projection (`experts.{e}.gate_proj.weight` ...,
  nn.Linear layout [F, H] / [H, F]), as every supported family ships;
- stacked: `experts.gate_proj`, `experts.up_proj` [E, F, H] and
  `experts.down_proj` [E, H, F];
- fused: `experts.gate_up_proj` with `experts.down_proj`, either
  [E, 2F, H] with down [E, H, F] (nn.Linear layout: rows 0..F-1 are the gate
  projection, rows F..2F-1 the up projection), or [E, H, 2F] with down
  [E, F, H] (input-major, applied as x @ W: columns 0..F-1 gate, F..2F-1 up).
  Interleaved gate/up columns are not supported.
"""

import json
import struct
from pathlib import Path

import numpy as np

from .config import as_config

_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}


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
        info = self.header[key]
        dtype = info["dtype"]
        if dtype not in _DTYPES:
            raise WeightError(f"{self.path}: tensor '{key}' has dtype {dtype}; "
                              "only F32, F16 and BF16 are supported")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * _DTYPES[dtype].itemsize:
            raise WeightError(f"{self.path}: tensor '{key}' has {end - begin} bytes "
                              f"for shape {list(shape)} {dtype}")
        raw = np.fromfile(self.path, dtype=_DTYPES[dtype], count=count,
                          offset=self.data_start + begin).reshape(shape)
        if dtype == "BF16":
            return _bf16_bits_to_f32(raw)
        return raw.astype(np.float32)


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


def _prefix(family, layer):
    if family == "mixtral":
        return f"model.layers.{layer}.block_sparse_moe."
    if family == "switch_transformers":
        if isinstance(layer, str):
            stack, _, block = layer.partition(".")
        else:
            stack, block = "encoder", layer
        sub = {"encoder": 1, "decoder": 2}.get(stack)
        if sub is None:
            raise WeightError(f"switch_transformers layer {layer!r}: want an encoder "
                              "block number or 'encoder.N' / 'decoder.N'")
        return f"{stack}.block.{int(block)}.layer.{sub}.mlp."
    return f"model.layers.{layer}.mlp."


def _detect_family(ckpt):
    keys = ckpt.where.keys()
    if any(".block_sparse_moe." in k for k in keys):
        return "mixtral"
    if any(".mlp.router.classifier." in k for k in keys):
        return "switch_transformers"
    if any(".mlp.shared_expert_gate." in k or ".mlp.shared_expert." in k for k in keys):
        return "qwen2_moe"
    if any(".e_score_correction_bias" in k for k in keys):
        return "deepseek_v3"
    if any(".mlp.shared_experts." in k for k in keys):
        return "deepseek_v2"
    return "qwen3_moe"  # same key names as OLMoE


def _check(name, array, shape):
    if tuple(array.shape) != tuple(shape):
        raise WeightError(f"'{name}' has shape {list(array.shape)}, the config wants "
                          f"{list(shape)}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _routed_experts(ckpt, p, c, family):
    """(gate [E,F,H] or None, up [E,F,H], down [E,H,F])."""
    E, F, H = c.num_experts, c.intermediate_size, c.hidden_size
    if family == "switch_transformers":
        up = np.stack([_check(n, ckpt.get(n), (F, H)) for n in
                       (f"{p}experts.expert_{e}.wi.weight" for e in range(E))])
        down = np.stack([_check(n, ckpt.get(n), (H, F)) for n in
                         (f"{p}experts.expert_{e}.wo.weight" for e in range(E))])
        return None, up, down

    names = ("w1", "w3", "w2") if family == "mixtral" else ("gate_proj", "up_proj", "down_proj")
    fused = f"{p}experts.gate_up_proj"
    if fused in ckpt:
        gate_up = ckpt.get(fused)
        down_name = f"{p}experts.down_proj"
        down = ckpt.get(down_name)
        if gate_up.shape == (E, 2 * F, H) and down.shape == (E, H, F):
            gate, up = gate_up[:, :F, :], gate_up[:, F:, :]
        elif gate_up.shape == (E, H, 2 * F) and down.shape == (E, F, H):
            gate = gate_up[:, :, :F].transpose(0, 2, 1)
            up = gate_up[:, :, F:].transpose(0, 2, 1)
            down = down.transpose(0, 2, 1)
        else:
            raise WeightError(
                f"'{fused}' {list(gate_up.shape)} with '{down_name}' {list(down.shape)}: "
                f"want [E, 2F, H] with [E, H, F] or [E, H, 2F] with [E, F, H] "
                f"(E={E}, F={F}, H={H})")
        return (_check(fused, gate, (E, F, H)) if c.gated else None,
                _check(fused, up, (E, F, H)), _check(down_name, down, (E, H, F)))
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


def load_layer_weights(path, config, layer, family=None):
    """The weights of MoE layer `layer` of a checkpoint, as {ABI field: float32
    array} in the SPEC §4 layout, holding exactly the weights `config` uses.

    path: a .safetensors file or a directory of shards. config: the layer's
    MoEConfig (from_hf_config gives it). family: the HF `model_type` whose key
    names to read (mixtral, qwen2_moe, qwen3_moe, deepseek_v2, deepseek_v3,
    olmoe, switch_transformers); guessed from the key names when None.
    For switch_transformers, `layer` is an encoder block number or
    "encoder.N" / "decoder.N".
    """
    c = as_config(config)
    ckpt = Checkpoint(path)
    family = family or _detect_family(ckpt)
    p = _prefix(family, layer)
    router_name = f"{p}router.classifier.weight" if family == "switch_transformers" \
        else f"{p}gate.weight"
    if router_name not in ckpt:
        raise WeightError(f"{path}: no tensor '{router_name}': layer {layer} is not an "
                          f"MoE layer of this {family} checkpoint")
    E, H, Fs = c.num_experts, c.hidden_size, c.shared_intermediate_size
    out = {"router": _check(router_name, ckpt.get(router_name), (E, H))}
    if c.router_bias:
        name = f"{p}router.classifier.bias" if family == "switch_transformers" \
            else f"{p}gate.bias"
        out["router_bias"] = _check(name, ckpt.get(name), (E,))
    if c.selection_bias:
        name = f"{p}gate.e_score_correction_bias"
        out["selection_bias"] = _check(name, ckpt.get(name), (E,))
    gate, up, down = _routed_experts(ckpt, p, c, family)
    if gate is not None:
        out["gate_proj"] = gate
    out["up_proj"], out["down_proj"] = up, down
    if Fs > 0:
        sp = f"{p}shared_expert." if family == "qwen2_moe" else f"{p}shared_experts."
        if c.gated:
            out["shared_gate_proj"] = _check(f"{sp}gate_proj.weight",
                                             ckpt.get(f"{sp}gate_proj.weight"), (Fs, H))
        out["shared_up_proj"] = _check(f"{sp}up_proj.weight",
                                       ckpt.get(f"{sp}up_proj.weight"), (Fs, H))
        out["shared_down_proj"] = _check(f"{sp}down_proj.weight",
                                         ckpt.get(f"{sp}down_proj.weight"), (H, Fs))
        if c.shared_expert_gate:
            name = f"{p}shared_expert_gate.weight"
            # nn.Linear(H, 1): [1, H]
            out["shared_expert_gate"] = _check(name, ckpt.get(name).reshape(-1), (H,))
    return out

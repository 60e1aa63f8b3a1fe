"""load_layer_weights: safetensors checkpoints of each family's key names,
stacked and fused expert tensors, F32/F16/BF16."""

import numpy as np
import pytest

from helpers import HF_CONFIGS, to_bf16_bits, write_safetensors
from moe_mlir import WeightError, from_hf_config, load_layer_weights
from moe_mlir.reference import random_weights

LAYER = 1


def hf_checkpoint(family, config, w, layer=LAYER):
    """{key: array} holding `w` (SPEC §4 fields) under `family`'s key names."""
    E = config.num_experts
    if family == "switch_transformers":
        p = f"encoder.block.{layer}.layer.1.mlp."
        t = {f"{p}router.classifier.weight": w["router"]}
        for e in range(E):
            t[f"{p}experts.expert_{e}.wi.weight"] = w["up_proj"][e]
            t[f"{p}experts.expert_{e}.wo.weight"] = w["down_proj"][e]
        return t
    p = f"model.layers.{layer}.block_sparse_moe." if family == "mixtral" \
        else f"model.layers.{layer}.mlp."
    names = ("w1", "w3", "w2") if family == "mixtral" else ("gate_proj", "up_proj", "down_proj")
    t = {f"{p}gate.weight": w["router"]}
    for e in range(E):
        for name, field in zip(names, ("gate_proj", "up_proj", "down_proj")):
            t[f"{p}experts.{e}.{name}.weight"] = w[field][e]
    if "selection_bias" in w:
        t[f"{p}gate.e_score_correction_bias"] = w["selection_bias"]
    sp = f"{p}shared_expert." if family == "qwen2_moe" else f"{p}shared_experts."
    for field in ("gate_proj", "up_proj", "down_proj"):
        if f"shared_{field}" in w:
            t[f"{sp}{field}.weight"] = w[f"shared_{field}"]
    if "shared_expert_gate" in w:
        t[f"{p}shared_expert_gate.weight"] = w["shared_expert_gate"][None, :]
    # A dense neighbour layer, which the loader must not confuse with this one.
    t[f"model.layers.{layer - 1}.mlp.gate_proj.weight"] = np.zeros((4, 4), np.float32)
    return t


FAMILIES = ["mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "olmoe",
            "switch_transformers"]


@pytest.mark.parametrize("family", FAMILIES)
def test_family_key_names(tmp_path, family):
    config = from_hf_config(HF_CONFIGS / f"{family}.json", dtype="f32", capacity_factor=1.0) \
        if family == "switch_transformers" else from_hf_config(HF_CONFIGS / f"{family}.json")
    w = random_weights(config.to_dict(), seed=3)
    path = tmp_path / "model.safetensors"
    write_safetensors(path, hf_checkpoint(family, config, w))
    for fam in (family, None):  # named, then guessed from the keys
        got = load_layer_weights(path, config, LAYER, family=fam)
        assert set(got) == set(config.weight_shapes())
        for key, value in got.items():
            assert value.dtype == np.float32 and value.shape == config.weight_shapes()[key]
            np.testing.assert_array_equal(value, w[key])


def test_sharded_directory_and_dtypes(tmp_path):
    config = from_hf_config(HF_CONFIGS / "qwen2_moe.json")
    w = random_weights(config.to_dict(), seed=4)
    tensors = hf_checkpoint("qwen2_moe", config, w)
    keys = sorted(tensors)
    half = len(keys) // 2
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors",
                      {k: tensors[k] for k in keys[:half]}, dtype="BF16")
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors",
                      {k: tensors[k] for k in keys[half:]}, dtype="F16")
    got = load_layer_weights(tmp_path, config, LAYER, "qwen2_moe")
    bf16_keys = set(keys[:half])
    # Every value is exactly the stored bf16 or f16 number.
    router_key = f"model.layers.{LAYER}.mlp.gate.weight"
    if router_key in bf16_keys:
        want = (to_bf16_bits(w["router"]).astype(np.uint32) << 16).view(np.float32)
    else:
        want = w["router"].astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(got["router"], want)
    np.testing.assert_allclose(got["up_proj"], w["up_proj"], rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("layout", ["linear", "input_major", "stacked"])
def test_fused_and_stacked_experts(tmp_path, layout):
    config = from_hf_config(HF_CONFIGS / "qwen3_moe.json")
    w = random_weights(config.to_dict(), seed=5)
    p = f"model.layers.{LAYER}.mlp."
    t = {f"{p}gate.weight": w["router"]}
    if layout == "linear":  # [E, 2F, H], down [E, H, F]
        t[f"{p}experts.gate_up_proj"] = np.concatenate([w["gate_proj"], w["up_proj"]], axis=1)
        t[f"{p}experts.down_proj"] = w["down_proj"]
    elif layout == "input_major":  # [E, H, 2F], down [E, F, H]
        t[f"{p}experts.gate_up_proj"] = np.concatenate(
            [w["gate_proj"], w["up_proj"]], axis=1).transpose(0, 2, 1)
        t[f"{p}experts.down_proj"] = w["down_proj"].transpose(0, 2, 1)
    else:
        for field in ("gate_proj", "up_proj", "down_proj"):
            t[f"{p}experts.{field}"] = w[field]
    path = tmp_path / "m.safetensors"
    write_safetensors(path, t, dtype="BF16")
    got = load_layer_weights(path, config, LAYER, "qwen3_moe")
    for field in ("gate_proj", "up_proj", "down_proj"):
        want = (to_bf16_bits(w[field]).astype(np.uint32) << 16).view(np.float32)
        np.testing.assert_array_equal(got[field], want)


def test_errors(tmp_path):
    config = from_hf_config(HF_CONFIGS / "mixtral.json")
    w = random_weights(config.to_dict(), seed=6)
    path = tmp_path / "m.safetensors"
    tensors = hf_checkpoint("mixtral", config, w)
    write_safetensors(path, tensors)
    with pytest.raises(WeightError, match="layer 0 is not an MoE layer"):
        load_layer_weights(path, config, 0, "mixtral")
    small = config.replace(num_experts=4, top_k=2, hidden_size=16)
    with pytest.raises(WeightError, match=r"'model.layers.1.block_sparse_moe.gate.weight' "
                                          r"has shape \[8, 32\], the config wants \[4, 16\]"):
        load_layer_weights(path, small, LAYER, "mixtral")
    missing = dict(tensors)
    del missing["model.layers.1.block_sparse_moe.experts.3.w3.weight"]
    write_safetensors(path, missing)
    with pytest.raises(WeightError, match="no tensor 'model.layers.1.block_sparse_moe"
                                          ".experts.3.w3.weight'"):
        load_layer_weights(path, config, LAYER, "mixtral")
    # An unsupported dtype is refused by name.
    bad = tmp_path / "i8.safetensors"
    write_safetensors(bad, {"model.layers.1.block_sparse_moe.gate.weight": w["router"]})
    raw = bytearray(bad.read_bytes())
    i = raw.index(b'"F32"')
    raw[i:i + 5] = b'"I32"'
    bad.write_bytes(bytes(raw))
    with pytest.raises(WeightError, match="has dtype I32"):
        load_layer_weights(bad, config, LAYER, "mixtral")
    (tmp_path / "junk.safetensors").write_bytes(b"abc")
    with pytest.raises(WeightError, match="not a safetensors file"):
        load_layer_weights(tmp_path / "junk.safetensors", config, LAYER)

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


# docs/FAMILY-RULES.md §4: the layouts of GPT-OSS, the OpenAI Privacy Filter,
# Llama 4, JetMoE and PhiMoE checkpoints.

def _rules_config(**extra):
    from moe_mlir import MoEConfig
    return MoEConfig("rules", hidden_size=16, intermediate_size=6, num_experts=4, top_k=2,
                     **extra)


GPT_OSS = dict(router_bias=True, activation="clamped_swiglu", expert_bias=True)


def _gpt_oss_tensors(w, interleaved, p=f"model.layers.{LAYER}.mlp."):
    """GPT-OSS's [E, H, 2F] gate_up_proj (interleaved columns) or the OpenAI
    Privacy Filter's (gate columns first), biases alike, down [E, F, H]."""
    E, F, H = w["gate_proj"].shape
    gate_up = np.empty((E, H, 2 * F), np.float32)
    bias = np.empty((E, 2 * F), np.float32)
    if interleaved:
        gate_up[:, :, 0::2], gate_up[:, :, 1::2] = (w["gate_proj"].transpose(0, 2, 1),
                                                    w["up_proj"].transpose(0, 2, 1))
        bias[:, 0::2], bias[:, 1::2] = w["gate_proj_bias"], w["up_proj_bias"]
    else:
        gate_up[:, :, :F], gate_up[:, :, F:] = (w["gate_proj"].transpose(0, 2, 1),
                                                w["up_proj"].transpose(0, 2, 1))
        bias[:, :F], bias[:, F:] = w["gate_proj_bias"], w["up_proj_bias"]
    return {f"{p}router.weight": w["router"], f"{p}router.bias": w["router_bias"],
            f"{p}experts.gate_up_proj": gate_up, f"{p}experts.gate_up_proj_bias": bias,
            f"{p}experts.down_proj": w["down_proj"].transpose(0, 2, 1),
            f"{p}experts.down_proj_bias": w["down_proj_bias"]}


def _assert_loaded(got, config, w):
    assert set(got) == set(config.weight_shapes())
    for key, value in got.items():
        assert value.dtype == np.float32 and value.flags.c_contiguous
        np.testing.assert_array_equal(value, w[key], err_msg=key)


@pytest.mark.parametrize("family", ["gpt_oss", "openai_privacy_filter"])
def test_gpt_oss_layouts(tmp_path, family):
    import json
    config = _rules_config(**GPT_OSS)
    w = random_weights(config.to_dict(), seed=7)
    write_safetensors(tmp_path / "model.safetensors",
                      _gpt_oss_tensors(w, interleaved=family == "gpt_oss"))
    _assert_loaded(load_layer_weights(tmp_path, config, LAYER, family=family), config, w)
    # Without a family, the two cannot be told apart by their key names ...
    with pytest.raises(WeightError, match="pass family='gpt_oss' or "
                                          "family='openai_privacy_filter'"):
        load_layer_weights(tmp_path, config, LAYER)
    # ... but the config.json beside them says which it is.
    (tmp_path / "config.json").write_text(json.dumps({"model_type": family}))
    _assert_loaded(load_layer_weights(tmp_path, config, LAYER), config, w)
    _assert_loaded(load_layer_weights(tmp_path / "model.safetensors", config, LAYER),
                   config, w)


def test_expert_biases_missing(tmp_path):
    config = _rules_config(**GPT_OSS)
    w = random_weights(config.to_dict(), seed=7)
    t = _gpt_oss_tensors(w, interleaved=True)
    del t[f"model.layers.{LAYER}.mlp.experts.down_proj_bias"]
    write_safetensors(tmp_path / "m.safetensors", t)
    with pytest.raises(WeightError, match="no tensor 'model.layers.1.mlp.experts.down_proj_bias'"):
        load_layer_weights(tmp_path / "m.safetensors", config, LAYER, "gpt_oss")
    # Per-expert nn.Linear biases are read too.
    config = _rules_config(expert_bias=True)
    w = random_weights(config.to_dict(), seed=8)
    p = f"model.layers.{LAYER}.mlp."
    t = {f"{p}gate.weight": w["router"]}
    for e in range(4):
        for field in ("gate_proj", "up_proj", "down_proj"):
            t[f"{p}experts.{e}.{field}.weight"] = w[field][e]
            t[f"{p}experts.{e}.{field}.bias"] = w[f"{field}_bias"][e]
    write_safetensors(tmp_path / "m.safetensors", t)
    _assert_loaded(load_layer_weights(tmp_path / "m.safetensors", config, LAYER), config, w)
    del t[f"{p}experts.0.up_proj.bias"]
    write_safetensors(tmp_path / "m.safetensors", t)
    with pytest.raises(WeightError, match="no expert biases"):
        load_layer_weights(tmp_path / "m.safetensors", config, LAYER)


@pytest.mark.parametrize("prefix", ["model.layers.{}.", "language_model.model.layers.{}.",
                                    "model.language_model.layers.{}."])
def test_llama4_layout(tmp_path, prefix):
    """Llama 4: feed_forward.router, [E, H, 2F] gate_up_proj (gate first),
    down [E, F, H], shared_expert; a multimodal model's under its language
    model."""
    config = _rules_config(scoring="sigmoid", normalize_top_k=False,
                           router_weight_on_input=True, shared_intermediate_size=6)
    w = random_weights(config.to_dict(), seed=9)
    p = prefix.format(LAYER) + "feed_forward."
    t = {f"{p}router.weight": w["router"],
         f"{p}experts.gate_up_proj": np.concatenate([w["gate_proj"], w["up_proj"]],
                                                    axis=1).transpose(0, 2, 1),
         f"{p}experts.down_proj": w["down_proj"].transpose(0, 2, 1),
         # the dense layer before it
         prefix.format(LAYER - 1) + "feed_forward.gate_proj.weight": np.zeros((8, 16))}
    for field in ("gate_proj", "up_proj", "down_proj"):
        t[f"{p}shared_expert.{field}.weight"] = w[f"shared_{field}"]
    write_safetensors(tmp_path / "m.safetensors", t)
    for family in ("llama4", None):
        _assert_loaded(load_layer_weights(tmp_path / "m.safetensors", config, LAYER, family),
                       config, w)
    with pytest.raises(WeightError, match="layer 0 is not an MoE layer"):
        load_layer_weights(tmp_path / "m.safetensors", config, 0)


def test_jetmoe_layout(tmp_path):
    """JetMoE: router.layer, input_linear [E, 2F, H] (the activated half
    first), output_linear [E, H, F], and the block's output bias `bias`."""
    config = _rules_config(output_bias=True)
    w = random_weights(config.to_dict(), seed=10)
    p = f"model.layers.{LAYER}.mlp."
    t = {f"{p}router.layer.weight": w["router"],
         f"{p}input_linear.weight": np.concatenate([w["gate_proj"], w["up_proj"]], axis=1),
         f"{p}output_linear.weight": w["down_proj"], f"{p}bias": w["output_bias"]}
    write_safetensors(tmp_path / "m.safetensors", t)
    _assert_loaded(load_layer_weights(tmp_path / "m.safetensors", config, LAYER, "jetmoe"),
                   config, w)
    del t[f"{p}bias"]
    write_safetensors(tmp_path / "m.safetensors", t)
    with pytest.raises(WeightError, match="no tensor 'model.layers.1.mlp.bias'"):
        load_layer_weights(tmp_path / "m.safetensors", config, LAYER)


def test_phimoe_layout(tmp_path):
    """PhiMoE's hub names: block_sparse_moe.gate and Mixtral's w1/w3/w2."""
    config = _rules_config(scoring="sparsemixer", normalize_top_k=False)
    w = random_weights(config.to_dict(), seed=11)
    p = f"model.layers.{LAYER}.block_sparse_moe."
    t = {f"{p}gate.weight": w["router"]}
    for e in range(4):
        for name, field in zip(("w1", "w3", "w2"), ("gate_proj", "up_proj", "down_proj")):
            t[f"{p}experts.{e}.{name}.weight"] = w[field][e]
    write_safetensors(tmp_path / "m.safetensors", t)
    for family in ("phimoe", None):
        _assert_loaded(load_layer_weights(tmp_path / "m.safetensors", config, LAYER, family),
                       config, w)

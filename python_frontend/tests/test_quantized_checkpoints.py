"""Quantized checkpoints in their own layouts (moe_mlir.quantized_checkpoints):
tiny DeepSeek-V3 FP8, GPT-OSS MXFP4, GPTQ and AWQ checkpoints written here,
read by from_hf_config and load_layer_weights, and judged by what transformers'
own dequantization (or the format's definition) says they hold; GPTQ and AWQ
also by GPTQModel's and AutoAWQ's dequantization, written out here after
their code."""

import json

import numpy as np
import pytest

from helpers import HF_CONFIGS, to_bf16_bits, write_safetensors
from moe_mlir import from_hf_config, load_layer_weights
from moe_mlir.hf import HFConfigError
from moe_mlir.reference import dequantize, random_weights
from moe_mlir.weights import WeightError

torch = pytest.importorskip("torch")

LAYER = 1
FP8_BLOCK = [8, 12]  # partial last blocks along both 32 and 16 columns


def fp8_codes(rng, shape):
    """Random float8 e4m3fn bytes, NaN (0x7f, 0xff) left out."""
    codes = rng.integers(0, 254, size=shape, dtype=np.uint8)
    return np.where(codes >= 0x7F, codes + 1, codes).astype(np.uint8)


def transformers_fp8(bits, scale_inv):
    from transformers.integrations.finegrained_fp8 import _dequantize_fp8_weight
    weight = torch.from_numpy(bits).view(torch.float8_e4m3fn)
    return _dequantize_fp8_weight(weight, torch.from_numpy(scale_inv), FP8_BLOCK,
                                  torch.float64).numpy()


def deepseek_fp8(tmp_path):
    hf = json.loads((HF_CONFIGS / "deepseek_v3.json").read_text())
    hf["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3",
                                 "activation_scheme": "dynamic",
                                 "weight_block_size": FP8_BLOCK}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    E, H, F = hf["n_routed_experts"], hf["hidden_size"], hf["moe_intermediate_size"]
    Fs = F * hf["n_shared_experts"]
    rng = np.random.default_rng(0)
    p = f"model.layers.{LAYER}.mlp."
    tensors = {f"{p}gate.weight": (rng.standard_normal((E, H)) * 0.3, "BF16"),
               f"{p}gate.e_score_correction_bias": rng.standard_normal(E) * 0.01}
    expected = {}

    def projection(prefix, key, N, K):
        bits = fp8_codes(rng, (N, K))
        scale_inv = rng.uniform(0.01, 0.05, (-(-N // FP8_BLOCK[0]), -(-K // FP8_BLOCK[1])))
        tensors[prefix + ".weight"] = (bits, "F8_E4M3")
        tensors[prefix + ".weight_scale_inv"] = scale_inv.astype(np.float32)
        expected.setdefault(key, []).append(transformers_fp8(bits, scale_inv.astype(np.float32)))

    for e in range(E):
        for name, (N, K) in (("gate_proj", (F, H)), ("up_proj", (F, H)), ("down_proj", (H, F))):
            projection(f"{p}experts.{e}.{name}", name, N, K)
    for name, (N, K) in (("gate_proj", (Fs, H)), ("up_proj", (Fs, H)), ("down_proj", (H, Fs))):
        projection(f"{p}shared_experts.{name}", "shared_" + name, N, K)
    write_safetensors(tmp_path / "model.safetensors", tensors)
    return {k: np.stack(v) if not k.startswith("shared_") else v[0]
            for k, v in expected.items()}


def test_deepseek_fp8_block_scales(tmp_path):
    expected = deepseek_fp8(tmp_path)
    config = from_hf_config(tmp_path)
    # Blocks of 12 columns split 32 and 16 columns as 12 + 12 + 8 and 12 + 4:
    # groups of gcd(12, 32, 16) = 4 repeat each block's scale.
    assert config.expert_weights == {"format": "fp8_e4m3", "group_size": 4,
                                     "act_order": False}
    w = load_layer_weights(tmp_path, config, LAYER)
    assert w["up_proj"].dtype == np.uint8 and w["up_proj_scales"].shape == (16, 16, 8)
    got = dequantize(config.to_dict(), w)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_deepseek_fp8_runs(tmp_path):
    """The loaded layer compiles and matches the reference on its weights."""
    from moe_mlir import compile
    from moe_mlir.reference import random_input, reference
    deepseek_fp8(tmp_path)
    config = from_hf_config(tmp_path, dtype="f32")
    w = load_layer_weights(tmp_path, config, LAYER)
    x = random_input(20, config.hidden_size, 1)
    y = compile(config)(w)(x)
    ref = reference(config.to_dict(), w, x)[0]
    assert np.abs(y - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_gpt_oss_mxfp4(tmp_path):
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    hf = {"model_type": "gpt_oss", "hidden_size": 64, "intermediate_size": 32,
          "num_local_experts": 4, "num_experts_per_tok": 2, "torch_dtype": "bfloat16",
          "quantization_config": {"quant_method": "mxfp4",
                                  "modules_to_not_convert": ["model.layers.*.mlp.router"]}}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    E, H, F = 4, 64, 32
    rng = np.random.default_rng(1)
    p = f"model.layers.{LAYER}.mlp."
    blocks = {"gate_up_proj": rng.integers(0, 256, (E, 2 * F, H // 32, 16), dtype=np.uint8),
              "down_proj": rng.integers(0, 256, (E, H, F // 32, 16), dtype=np.uint8)}
    scales = {"gate_up_proj": rng.integers(118, 128, (E, 2 * F, H // 32), dtype=np.uint8),
              "down_proj": rng.integers(118, 128, (E, H, F // 32), dtype=np.uint8)}
    tensors = {f"{p}router.weight": (rng.standard_normal((E, H)), "BF16"),
               f"{p}router.bias": (rng.standard_normal(E), "BF16"),
               f"{p}experts.gate_up_proj_bias": (rng.standard_normal((E, 2 * F)), "BF16"),
               f"{p}experts.down_proj_bias": (rng.standard_normal((E, H)), "BF16")}
    for name in blocks:
        tensors[f"{p}experts.{name}_blocks"] = (blocks[name], "U8")
        tensors[f"{p}experts.{name}_scales"] = (scales[name], "U8")
    write_safetensors(tmp_path / "model.safetensors", tensors)

    config = from_hf_config(tmp_path)
    assert config.expert_weights == {"format": "mxfp4", "group_size": 32,
                                     "act_order": False}
    w = load_layer_weights(tmp_path, config, LAYER)
    got = dequantize(config.to_dict(), w)
    # transformers' dequantization gives GPT-OSS's [E, H, 2F] (gate columns
    # even, up odd) and [E, F, H].
    gate_up = convert_moe_packed_tensors(torch.from_numpy(blocks["gate_up_proj"]),
                                         torch.from_numpy(scales["gate_up_proj"]),
                                         dtype=torch.float64).numpy()
    down = convert_moe_packed_tensors(torch.from_numpy(blocks["down_proj"]),
                                      torch.from_numpy(scales["down_proj"]),
                                      dtype=torch.float64).numpy()
    np.testing.assert_array_equal(got["gate_proj"], gate_up[:, :, 0::2].transpose(0, 2, 1))
    np.testing.assert_array_equal(got["up_proj"], gate_up[:, :, 1::2].transpose(0, 2, 1))
    np.testing.assert_array_equal(got["down_proj"], down.transpose(0, 2, 1))
    assert w["up_proj_bias"].shape == (E, F)


def pack_words(values, axis, order=range(8)):
    """4-bit `values` packed eight to an int32 word along `axis`, value p of
    each eight in bits 4 * position, position order.index(p)."""
    v = np.moveaxis(values.astype(np.uint32), axis, -1)
    v = v.reshape(v.shape[:-1] + (-1, 8))[..., list(order)]
    words = (v << (4 * np.arange(8, dtype=np.uint32))).sum(-1, dtype=np.uint32)
    return np.moveaxis(words.view(np.int32), -1, axis)


def gptq_or_awq_config(tmp_path, method, group, desc_act=False, **options):
    """Qwen3-MoE's config with a 4-bit GPTQ (checkpoint_format "gptq") or
    AWQ quantization_config, written to tmp_path and read back."""
    hf = json.loads((HF_CONFIGS / "qwen3_moe.json").read_text())
    hf["quantization_config"] = {"quant_method": method, "bits": 4, "group_size": group,
                                 "desc_act": desc_act, "sym": False}
    if method == "gptq":
        hf["quantization_config"]["checkpoint_format"] = "gptq"
    (tmp_path / "config.json").write_text(json.dumps(hf))
    return from_hf_config(tmp_path, **options)


def quantized_block(config, seed):
    """A Qwen3-MoE block of `config` to write: (rng, tensors holding its
    router, its experts' projections as (tensor prefix, name, N, K))."""
    E, H, F = config.num_experts, config.hidden_size, config.intermediate_size
    rng = np.random.default_rng(seed)
    p = f"model.layers.{LAYER}.mlp."
    tensors = {f"{p}gate.weight": rng.standard_normal((E, H)).astype(np.float32)}
    projections = [(f"{p}experts.{e}.{name}", name, N, K) for e in range(E)
                   for name, (N, K) in (("gate_proj", (F, H)), ("up_proj", (F, H)),
                                        ("down_proj", (H, F)))]
    return rng, tensors, projections


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_gptq_and_awq(tmp_path, method):
    group = 16
    config = gptq_or_awq_config(tmp_path, method, group)
    assert config.expert_weights == {"format": "int4", "group_size": group,
                                     "zero_points": True, "act_order": False}
    rng, tensors, projections = quantized_block(config, 2)
    expected = {}
    for prefix, name, N, K in projections:
        q = rng.integers(0, 16, (K, N))
        z = rng.integers(1, 16, (K // group, N))
        s = rng.uniform(0.01, 0.1, (K // group, N)).astype(np.float16)
        if method == "gptq":
            # checkpoint_format "gptq" stores zero points minus one
            # (so 1 to 16), along N; the values along K.
            tensors[prefix + ".qweight"] = (pack_words(q, 0), "I32")
            tensors[prefix + ".qzeros"] = (pack_words(z - 1, 1), "I32")
            tensors[prefix + ".g_idx"] = (np.arange(K) // group, "I32")
        else:
            # Both along N, in AWQ's order.
            order = (0, 2, 4, 6, 1, 3, 5, 7)
            tensors[prefix + ".qweight"] = (pack_words(q, 1, order), "I32")
            tensors[prefix + ".qzeros"] = (pack_words(z, 1, order), "I32")
        tensors[prefix + ".scales"] = (s.astype(np.float32), "F16")
        deq = (q - np.repeat(z, group, 0)) * np.repeat(s.astype(np.float64), group, 0)
        expected.setdefault(name, []).append(deq.T)
    write_safetensors(tmp_path / "model.safetensors", tensors)
    w = load_layer_weights(tmp_path, config, LAYER)
    got = dequantize(config.to_dict(), w)
    for name, parts in expected.items():
        np.testing.assert_allclose(got[name], np.stack(parts), rtol=0, atol=0, err_msg=name)


def gptqmodel_dequantize(qweight, qzeros, scales, g_idx):
    """[K, N] as GPTQModel's torch QuantLinear.dequantize_weight computes it
    for 4 bits, after its conversion of checkpoint_format "gptq" (v1), which
    adds 1 to every packed zero point: the shifts 0, 4, ..., 28 unpack
    qweight along K (word i, shift j: row 8i + j) and qzeros along N, and a
    row's group is g_idx's."""
    wf = torch.arange(0, 32, 4, dtype=torch.int32)
    qweight, qzeros = torch.from_numpy(qweight), torch.from_numpy(qzeros)
    zeros = torch.bitwise_right_shift(qzeros.unsqueeze(2).expand(-1, -1, 8), wf.unsqueeze(0))
    zeros = (torch.bitwise_and(zeros, 15) + 1).reshape(scales.shape)
    weight = torch.bitwise_right_shift(qweight.unsqueeze(1).expand(-1, 8, -1), wf.unsqueeze(-1))
    weight = torch.bitwise_and(weight, 15).reshape(-1, weight.shape[2])
    g = torch.from_numpy(np.asarray(g_idx, dtype=np.int64))
    scales = torch.from_numpy(scales.astype(np.float64))
    return (scales[g] * (weight - zeros[g])).numpy()


AUTOAWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]


def autoawq_dequantize(qweight, qzeros, scales, group):
    """[K, N] as AutoAWQ's dequantize_gemm computes it for 4 bits: the
    shifts 0, 4, ..., 28 unpack qweight and qzeros along N, then each run of
    eight columns is reordered by AWQ_REVERSE_ORDER."""
    def unpack(words):
        w = torch.from_numpy(words)
        values = torch.bitwise_right_shift(w[:, :, None], torch.arange(0, 32, 4)[None, None, :])
        return values.reshape(w.shape[0], -1)
    iweight, izeros = unpack(qweight), unpack(qzeros)
    order = torch.arange(iweight.shape[-1]).view(-1, 8)[:, AUTOAWQ_REVERSE_ORDER].reshape(-1)
    iweight = torch.bitwise_and(iweight[:, order], 15)
    izeros = torch.bitwise_and(izeros[:, order], 15)
    scales = torch.from_numpy(scales.astype(np.float64)).repeat_interleave(group, dim=0)
    return ((iweight - izeros.repeat_interleave(group, dim=0)) * scales).numpy()


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_gptq_and_awq_match_their_libraries(tmp_path, method):
    """Random packed words, loaded and dequantized as the library takes them,
    against GPTQModel's and AutoAWQ's own unpacking (written here after
    their code, not after this package's reading of the layouts)."""
    group = 16
    config = gptq_or_awq_config(tmp_path, method, group)
    rng, tensors, projections = quantized_block(config, 3)
    words = lambda shape: rng.integers(-2**31, 2**31, shape, dtype=np.int64).astype(np.int32)
    expected = {}
    for prefix, name, N, K in projections:
        s = rng.uniform(0.01, 0.1, (K // group, N)).astype(np.float16).astype(np.float32)
        if method == "gptq":
            # v1 zero points are stored minus one; GPTQModel's +1 carries
            # out of a nibble of 15, which real checkpoints never hold.
            qweight = words((K // 8, N))
            qzeros = pack_words(rng.integers(0, 15, (K // group, N)), 1)
            g_idx = np.arange(K, dtype=np.int32) // group
            tensors[prefix + ".g_idx"] = (g_idx, "I32")
            deq = gptqmodel_dequantize(qweight, qzeros, s, g_idx)
        else:
            qweight, qzeros = words((K, N // 8)), words((K // group, N // 8))
            deq = autoawq_dequantize(qweight, qzeros, s, group)
        tensors[prefix + ".qweight"] = (qweight, "I32")
        tensors[prefix + ".qzeros"] = (qzeros, "I32")
        tensors[prefix + ".scales"] = (s, "F16")
        expected.setdefault(name, []).append(deq.T)
    write_safetensors(tmp_path / "model.safetensors", tensors)
    got = dequantize(config.to_dict(), load_layer_weights(tmp_path, config, LAYER))
    for name, parts in expected.items():
        np.testing.assert_array_equal(got[name], np.stack(parts), err_msg=name)


def test_refused_quantization_configs(tmp_path):
    hf = json.loads((HF_CONFIGS / "qwen3_moe.json").read_text())
    for q, field in (({"quant_method": "gptq", "bits": 8}, "bits"),
                     ({"quant_method": "awq", "bits": 4, "version": "exllama"}, "version"),
                     ({"quant_method": "bitsandbytes"}, "quant_method"),
                     ({"quant_method": "fp8", "weight_block_size": 128}, "weight_block_size")):
        with pytest.raises(HFConfigError) as e:
            from_hf_config(dict(hf, quantization_config=q))
        assert f"quantization_config.{field}" in str(e.value)


def act_order_g_idx(rng, K, group):
    """g_idx as an act-order GPTQ leaves it: the columns quantized in a
    permuted order (GPTQ's Hessian diagonal, decreasing), column perm[i]
    in group i // group, stored in the input's order."""
    perm = rng.permutation(K)
    g_idx = np.empty(K, np.int32)
    g_idx[perm] = np.arange(K) // group
    return g_idx


@pytest.mark.parametrize("desc_act", [False, True])
def test_gptq_act_order_matches_gptqmodel(tmp_path, desc_act):
    """An act-order GPTQ checkpoint (desc_act, g_idx scattered along K) loads
    as "act_order" with each projection's columns sorted into contiguous
    groups and `<proj>_perm` saying where each came from: dequantized, it
    equals GPTQModel's dequantization through g_idx, and the library run on
    it matches the reference on GPTQModel's weights."""
    from moe_mlir import compile
    from moe_mlir.reference import random_input, reference
    group = 16
    config = gptq_or_awq_config(tmp_path, "gptq", group, desc_act, dtype="f32")
    assert config.expert_weights.get("act_order") == desc_act
    rng, tensors, projections = quantized_block(config, 4)
    expected = {}
    for prefix, name, N, K in projections:
        s = rng.uniform(0.01, 0.1, (K // group, N)).astype(np.float16).astype(np.float32)
        qweight = pack_words(rng.integers(0, 16, (K, N)), 0)
        qzeros = pack_words(rng.integers(0, 15, (K // group, N)), 1)
        g_idx = act_order_g_idx(rng, K, group) if desc_act else np.arange(K) // group
        tensors[prefix + ".qweight"] = (qweight, "I32")
        tensors[prefix + ".qzeros"] = (qzeros, "I32")
        tensors[prefix + ".scales"] = (s, "F16")
        tensors[prefix + ".g_idx"] = (g_idx.astype(np.int32), "I32")
        expected.setdefault(name, []).append(gptqmodel_dequantize(qweight, qzeros, s, g_idx).T)
    write_safetensors(tmp_path / "model.safetensors", tensors)
    w = load_layer_weights(tmp_path, config, LAYER)
    assert ("up_proj_perm" in w) == desc_act
    got = dequantize(config.to_dict(), w)
    for name, parts in expected.items():
        np.testing.assert_array_equal(got[name], np.stack(parts), err_msg=name)
    if not desc_act:
        return
    x = random_input(20, config.hidden_size, 1)
    y = compile(config)(w)(x)
    dense_config = {k: v for k, v in config.to_dict().items() if k != "expert_weights"}
    dense = {k: v for k, v in w.items() if not k.startswith(("gate_proj", "up_proj", "down_proj"))}
    dense.update({name: np.stack(parts) for name, parts in expected.items()})
    ref = reference(dense_config, dense, x)[0]
    assert np.abs(y - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_scattered_g_idx_needs_desc_act():
    """A g_idx that scatters groups along K loads only as act order, and an
    act-order g_idx must give every group its group_size columns."""
    from moe_mlir.quantized_checkpoints import gptq_projection
    N, K, g = 8, 32, 16
    qweight = np.zeros((K // 8, N), np.int32)
    qzeros = np.zeros((K // g, N // 8), np.int32)
    scales = np.ones((K // g, N), np.float32)
    scattered = np.arange(K) % 2
    with pytest.raises(WeightError, match="desc_act is not true"):
        gptq_projection("w", qweight, qzeros, scales, scattered, N, K, g, 1)
    *_, perm = gptq_projection("w", qweight, qzeros, scales, scattered, N, K, g, 1, True)
    np.testing.assert_array_equal(perm, np.r_[0:K:2, 1:K:2])
    uneven = np.minimum(np.arange(K) // 10, 1)
    with pytest.raises(WeightError, match="does not give each of the 2 groups 16 columns"):
        gptq_projection("w", qweight, qzeros, scales, uneven, N, K, g, 1, True)

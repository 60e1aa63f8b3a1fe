"""Hugging Face config.json -> MoEConfig for each supported family, and the
fields that cannot be honoured."""

import json

import pytest

from helpers import HF_CONFIGS
from moe_mlir import HFConfigError, MoEConfig, from_hf_config, is_moe_layer


def hf(family):
    return json.loads((HF_CONFIGS / f"{family}.json").read_text())


def fields(c, **expected):
    got = {k: getattr(c, k) for k in expected}
    assert got == expected


def test_mixtral():
    c = from_hf_config(HF_CONFIGS / "mixtral.json")
    assert isinstance(c, MoEConfig) and c.name == "mixtral_moe"
    fields(c, hidden_size=32, intermediate_size=48, num_experts=8, top_k=2, dtype="bf16",
           activation="silu", gated=True, scoring="softmax", normalize_top_k=True,
           routed_scaling_factor=1.0, n_group=1, shared_intermediate_size=0,
           capacity_factor=0.0)


def test_model_directory_name_and_dtype(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(hf("mixtral")))
    c = from_hf_config(tmp_path, name="layer0", dtype="f32")
    assert c.name == "layer0" and c.dtype == "f32"


def test_qwen2_moe():
    c = from_hf_config(hf("qwen2_moe"))
    fields(c, hidden_size=32, intermediate_size=24, num_experts=12, top_k=4,
           normalize_top_k=False, shared_intermediate_size=88, shared_expert_gate=True,
           scoring="softmax", gated=True)


def test_qwen3_moe():
    c = from_hf_config(hf("qwen3_moe"))
    fields(c, hidden_size=32, intermediate_size=16, num_experts=16, top_k=4,
           normalize_top_k=True, shared_intermediate_size=0, shared_expert_gate=False)


def test_deepseek_v2_group_limited_greedy():
    c = from_hf_config(hf("deepseek_v2"))
    fields(c, num_experts=16, top_k=6, intermediate_size=16, scoring="softmax",
           n_group=4, topk_group=3, group_score="max", selection_bias=False,
           normalize_top_k=False, routed_scaling_factor=16.0,
           shared_intermediate_size=32, shared_expert_gate=False)


def test_deepseek_v2_greedy_and_normalized():
    d = hf("deepseek_v2")
    d.update(topk_method="greedy", norm_topk_prob=True)
    c = from_hf_config(d)
    # greedy ignores groups; V2 scales only when it does not normalize.
    fields(c, n_group=1, topk_group=1, normalize_top_k=True, routed_scaling_factor=1.0)
    d.update(topk_method="noaux_tc", norm_topk_prob=False)
    fields(from_hf_config(d), selection_bias=True, n_group=4, topk_group=3,
           group_score="top2_sum", routed_scaling_factor=16.0)


def test_deepseek_v3():
    c = from_hf_config(hf("deepseek_v3"))
    fields(c, num_experts=16, top_k=4, intermediate_size=16, scoring="sigmoid",
           selection_bias=True, n_group=4, topk_group=2, group_score="top2_sum",
           normalize_top_k=True, routed_scaling_factor=2.5, shared_intermediate_size=16)


def test_olmoe():
    c = from_hf_config(hf("olmoe"))
    fields(c, hidden_size=32, intermediate_size=16, num_experts=16, top_k=4,
           normalize_top_k=False, dtype="f32", shared_intermediate_size=0)


def test_switch_transformers():
    d = hf("switch_transformers")
    c = from_hf_config(d, tokens_per_batch=32)
    fields(c, hidden_size=32, intermediate_size=64, num_experts=8, top_k=1, gated=False,
           activation="relu", normalize_top_k=False, router_bias=False)
    # ceil(cf * T * k / E) gives back expert_capacity for T = tokens_per_batch.
    import math
    assert math.ceil(c.capacity_factor * 32 / 8) == 8
    assert from_hf_config(d, capacity_factor=1.25).capacity_factor == 1.25
    d2 = dict(d, capacity_factor=2.0)
    assert from_hf_config(d2).capacity_factor == 2.0


def test_activations():
    for act, want in (("gelu", "gelu"), ("gelu_new", "gelu_tanh"),
                      ("gelu_pytorch_tanh", "gelu_tanh"), ("swish", "silu"), ("relu", "relu")):
        assert from_hf_config(dict(hf("qwen3_moe"), hidden_act=act)).activation == want


def test_sparse_layers():
    assert not is_moe_layer(hf("deepseek_v3"), 0) and is_moe_layer(hf("deepseek_v3"), 1)
    assert is_moe_layer(hf("qwen3_moe"), 0)
    assert not is_moe_layer(dict(hf("qwen3_moe"), mlp_only_layers=[0]), 0)
    assert not is_moe_layer(hf("switch_transformers"), 0)
    assert is_moe_layer(hf("switch_transformers"), 1)


BAD = [
    ("mixtral", {"hidden_act": "quick_gelu"}, "hidden_act", '"quick_gelu" is not an activation'),
    ("olmoe", {"hidden_act": "relu2"}, "hidden_act", "is not an activation"),
    ("deepseek_v2", {"topk_method": "sinkhorn"}, "topk_method",
     '"sinkhorn" is not supported for deepseek_v2'),
    ("deepseek_v3", {"topk_method": "greedy"}, "topk_method",
     '"greedy" is not supported for deepseek_v3'),
    ("deepseek_v3", {"scoring_func": "sqrtsoftplus"}, "scoring_func", "is not a SPEC"),
    ("switch_transformers", {"is_gated_act": True}, "is_gated_act", "not gated"),
    ("switch_transformers", {}, "expert_capacity", "is a fixed token count"),
    ("switch_transformers", {"dense_act_fn": "gelu_10", "capacity_factor": 1.0},
     "dense_act_fn", "is not an activation"),
    ("mixtral", {"model_type": "dbrx"}, "model_type", '"dbrx" is not one of'),
    ("mixtral", {"num_local_experts": None}, "num_local_experts", "is required"),
    ("mixtral", {"num_local_experts": "8"}, "num_local_experts", "must be an integer"),
    ("mixtral", {"num_experts_per_tok": 9}, "num_experts_per_tok",
     "(9) must not exceed the experts routing may choose from (8)"),
    ("qwen2_moe", {"moe_intermediate_size": 0}, "moe_intermediate_size", "must be at least 1"),
    ("deepseek_v3", {"n_group": 3}, "n_group", "must divide 'num_experts'"),
    ("deepseek_v3", {"routed_scaling_factor": 0}, "routed_scaling_factor",
     "must be finite and positive"),
    ("olmoe", {"torch_dtype": "float8_e4m3fn"}, "torch_dtype", "has no SPEC §2 dtype"),
]


@pytest.mark.parametrize("family,changes,field,message", BAD,
                         ids=[f"{b[0]}-{b[2]}" for b in BAD])
def test_errors_name_the_field(family, changes, field, message):
    d = hf(family)
    for k, v in changes.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    with pytest.raises(HFConfigError) as e:
        from_hf_config(d)
    assert e.value.field == field
    assert message in e.value.message
    assert f"'{field}'" in str(e.value)

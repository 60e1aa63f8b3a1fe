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


def test_qwen3_moe_as_transformers_5_writes_it():
    # Qwen3MoeConfig.attribute_map: num_experts -> num_local_experts; and its
    # norm_topk_prob defaults to false.
    d = hf("qwen3_moe")
    d["num_local_experts"] = d.pop("num_experts")
    del d["norm_topk_prob"]
    fields(from_hf_config(d), num_experts=16, normalize_top_k=False)
    with pytest.raises(HFConfigError) as e:  # a SPEC rule broken names the field read
        from_hf_config(dict(d, num_local_experts=0))
    assert e.value.field == "num_local_experts"
    with pytest.raises(HFConfigError, match="'num_experts' is required for this model "
                                            "family \\(or 'num_local_experts'\\)"):
        from_hf_config({k: v for k, v in d.items() if k != "num_local_experts"})


def test_deepseek_v2_group_limited_greedy():
    c = from_hf_config(hf("deepseek_v2"))
    fields(c, num_experts=16, top_k=6, intermediate_size=16, scoring="softmax",
           n_group=4, topk_group=3, group_score="max", selection_bias=False,
           normalize_top_k=False, routed_scaling_factor=16.0,
           shared_intermediate_size=32, shared_expert_gate=False)


def test_deepseek_v2_greedy_and_normalized():
    d = hf("deepseek_v2")
    d.update(topk_method="greedy", norm_topk_prob=True)
    # transformers' DeepseekV2TopkRouter never renormalizes and always scales.
    fields(from_hf_config(d), n_group=1, topk_group=1, normalize_top_k=False,
           routed_scaling_factor=16.0)
    # DeepSeek's remote code renormalizes and then drops the scale ...
    fields(from_hf_config(d, deepseek_v2_routing="remote_code"), n_group=1,
           normalize_top_k=True, routed_scaling_factor=1.0)
    # ... but only for top_k > 1.
    fields(from_hf_config(dict(d, num_experts_per_tok=1), deepseek_v2_routing="remote_code"),
           normalize_top_k=False, routed_scaling_factor=16.0)
    d.update(topk_method="noaux_tc", norm_topk_prob=False)
    fields(from_hf_config(d, deepseek_v2_routing="remote_code"), selection_bias=True,
           n_group=4, topk_group=3, group_score="top2_sum", routed_scaling_factor=16.0)
    with pytest.raises(HFConfigError, match="DeepseekV2TopkRouter has no noaux_tc"):
        from_hf_config(d)
    with pytest.raises(ValueError, match="deepseek_v2_routing"):
        from_hf_config(d, deepseek_v2_routing="deepseek")


def test_deepseek_v2_class_defaults():
    # transformers' DeepseekV2Config: greedy, 2 shared experts, scale 1.
    d = {k: v for k, v in hf("deepseek_v2").items()
         if k not in ("topk_method", "n_shared_experts", "routed_scaling_factor",
                      "norm_topk_prob", "n_group", "topk_group", "scoring_func")}
    fields(from_hf_config(d), n_group=1, normalize_top_k=False, routed_scaling_factor=1.0,
           shared_intermediate_size=32)
    with pytest.raises(HFConfigError, match="'mlp_bias' is true: the shared experts"):
        from_hf_config(dict(d, mlp_bias=True))


def test_deepseek_v3():
    c = from_hf_config(hf("deepseek_v3"))
    fields(c, num_experts=16, top_k=4, intermediate_size=16, scoring="sigmoid",
           selection_bias=True, n_group=4, topk_group=2, group_score="top2_sum",
           normalize_top_k=True, routed_scaling_factor=2.5, shared_intermediate_size=16)
    # top_k 1 still renormalizes, as transformers does (the weight is then the scale).
    fields(from_hf_config(dict(hf("deepseek_v3"), num_experts_per_tok=1)), normalize_top_k=True)


def test_deepseek_v3_class_defaults():
    # DeepseekV3Config: 8 groups, 4 kept, normalized, scale 2.5, 1 shared expert.
    d = {k: v for k, v in hf("deepseek_v3").items()
         if k not in ("n_group", "topk_group", "norm_topk_prob", "routed_scaling_factor",
                      "n_shared_experts", "topk_method", "scoring_func")}
    d["n_routed_experts"] = 32
    fields(from_hf_config(d), n_group=8, topk_group=4, normalize_top_k=True,
           routed_scaling_factor=2.5, shared_intermediate_size=16)
    d["num_local_experts"] = d.pop("n_routed_experts")
    assert from_hf_config(d).num_experts == 32


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
    ("mixtral", {"model_type": "no_such_moe"}, "model_type", '"no_such_moe" is not one of'),
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


def _tiny(model_type, **extra):
    return dict(model_type=model_type, hidden_size=32, **extra)


# Families added beside the original ones: the mapping of each (the numbers
# against transformers itself are in test_hf_transformers.py).
NEW = [
    (_tiny("minimax", intermediate_size=48, num_local_experts=8, num_experts_per_tok=2),
     dict(num_experts=8, intermediate_size=48, normalize_top_k=True)),
    (_tiny("granitemoeshared", intermediate_size=48, num_local_experts=8, num_experts_per_tok=2,
           shared_intermediate_size=64),
     dict(normalize_top_k=True, shared_intermediate_size=64, shared_expert_gate=False)),
    (_tiny("qwen3_next", moe_intermediate_size=16, num_experts=8, num_experts_per_tok=2),
     dict(normalize_top_k=True, shared_intermediate_size=512, shared_expert_gate=True)),
    (_tiny("flex_olmo", intermediate_size=16, num_local_experts=8, num_experts_per_tok=2),
     dict(num_experts=8, normalize_top_k=False)),
    (_tiny("mellum", moe_intermediate_size=16, num_local_experts=8, num_experts_per_tok=2),
     dict(num_experts=8, normalize_top_k=True)),
    (_tiny("jamba", intermediate_size=16, num_experts=8, num_experts_per_tok=2),
     dict(normalize_top_k=False)),
    (_tiny("hunyuan_v1_moe", intermediate_size=16, num_experts=8, moe_topk=2),
     dict(top_k=2, normalize_top_k=True, shared_intermediate_size=16)),
    (_tiny("ernie4_5_moe", moe_intermediate_size=16, moe_num_experts=8, moe_k=2),
     dict(num_experts=8, top_k=2, selection_bias=True, normalize_top_k=True,
          shared_intermediate_size=32)),
    (dict(model_type="dbrx", d_model=32, ffn_config=dict(ffn_hidden_size=16, moe_num_experts=8,
                                                          moe_top_k=2)),
     dict(hidden_size=32, intermediate_size=16, normalize_top_k=True)),
    (dict(model_type="dbrx", d_model=32, ffn_config=dict(
        ffn_hidden_size=16, moe_num_experts=8, moe_top_k=2, moe_normalize_expert_weights=None,
        ffn_act_fn={"name": "gelu"})),
     dict(normalize_top_k=False, activation="gelu", normalize_p=1.0)),
    # DbrxFFN divides by torch.norm(p): FAMILY-RULES' normalize_p.
    (dict(model_type="dbrx", d_model=32, ffn_config=dict(
        ffn_hidden_size=16, moe_num_experts=8, moe_top_k=2, moe_normalize_expert_weights=2)),
     dict(normalize_top_k=True, normalize_p=2.0)),
    (dict(model_type="dbrx", d_model=32, ffn_config=dict(
        ffn_hidden_size=16, moe_num_experts=8, moe_top_k=2, moe_normalize_expert_weights=1)),
     dict(normalize_top_k=True, normalize_p=1.0)),
    (_tiny("glm4_moe", moe_intermediate_size=16, n_routed_experts=8, num_experts_per_tok=2),
     dict(scoring="sigmoid", selection_bias=True, n_group=1, normalize_top_k=True,
          routed_scaling_factor=1.0, shared_intermediate_size=16)),
    (_tiny("dots1", moe_intermediate_size=16, n_routed_experts=8, num_experts_per_tok=2,
           n_shared_experts=2, n_group=4, topk_group=2),
     dict(scoring="sigmoid", selection_bias=True, n_group=4, topk_group=2,
          group_score="top2_sum", normalize_top_k=False, shared_intermediate_size=32)),
    (_tiny("kimi_linear", moe_intermediate_size=16, num_experts=8, num_experts_per_token=2,
           num_expert_group=2, topk_group=1, moe_renormalize=False),
     dict(num_experts=8, top_k=2, n_group=2, topk_group=1, normalize_top_k=False,
          routed_scaling_factor=2.446, shared_intermediate_size=16)),
    (_tiny("mimo_v2_flash", moe_intermediate_size=16, n_routed_experts=8, num_experts_per_tok=2),
     dict(selection_bias=True, shared_intermediate_size=0)),
    (_tiny("afmoe", moe_intermediate_size=16, num_experts=8, num_experts_per_tok=2),
     dict(scoring="sigmoid", selection_bias=True, normalize_top_k=True,
          shared_intermediate_size=32)),
    (_tiny("cohere2_moe", intermediate_size=16, num_experts=8, num_experts_per_tok=2,
           expert_selection_fn="sigmoid", norm_topk_prob=False),
     dict(scoring="sigmoid", normalize_top_k=False, shared_intermediate_size=0)),
    (_tiny("mistral4", moe_intermediate_size=16, n_routed_experts=8, num_experts_per_tok=2,
           n_group=4, topk_group=2),
     dict(scoring="softmax", selection_bias=False, n_group=4, topk_group=2,
          group_score="top2_sum", shared_intermediate_size=16)),
    # docs/FAMILY-RULES.md's families.
    (_tiny("gpt_oss", intermediate_size=16, num_local_experts=8, num_experts_per_tok=2),
     dict(scoring="softmax", normalize_top_k=True, router_bias=True, expert_bias=True,
          activation="clamped_swiglu", gated=True, swiglu_alpha=1.702, swiglu_limit=7.0,
          output_bias=False, router_weight_on_input=False, shared_intermediate_size=0)),
    (_tiny("gpt_oss", intermediate_size=16, num_experts=8, num_experts_per_tok=2,
           swiglu_alpha=1.5, swiglu_limit=3.5, hidden_act="gelu"),
     dict(num_experts=8, activation="clamped_swiglu", swiglu_alpha=1.5, swiglu_limit=3.5)),
    (_tiny("openai_privacy_filter", intermediate_size=16, num_local_experts=8,
           num_experts_per_tok=4, swiglu_limit=5.0),
     dict(top_k=4, router_bias=True, expert_bias=True, normalize_top_k=True,
          routed_scaling_factor=1.0, activation="clamped_swiglu", swiglu_limit=5.0)),
    (_tiny("llama4_text", intermediate_size=16, num_local_experts=8, num_experts_per_tok=1,
           intermediate_size_mlp=64),
     dict(scoring="sigmoid", normalize_top_k=False, router_weight_on_input=True, top_k=1,
          intermediate_size=16, shared_intermediate_size=16, shared_expert_gate=False,
          activation="silu")),
    (dict(model_type="llama4", text_config=_tiny("llama4_text", intermediate_size=16,
                                                 num_local_experts=8, num_experts_per_tok=2),
          vision_config={"hidden_size": 8}, dtype="bfloat16"),
     dict(hidden_size=32, num_experts=8, top_k=2, scoring="sigmoid", normalize_top_k=False,
          router_weight_on_input=True, shared_intermediate_size=16, dtype="bf16")),
    (_tiny("jetmoe", intermediate_size=16, num_local_experts=8, num_experts_per_tok=2,
           activation_function="gelu"),
     dict(normalize_top_k=True, output_bias=True, activation="gelu", expert_bias=False,
          shared_intermediate_size=0)),
    (_tiny("phimoe", intermediate_size=16, num_local_experts=8, num_experts_per_tok=2),
     dict(scoring="sparsemixer", sparsemixer_eps=0.01, normalize_top_k=False, top_k=2)),
    (_tiny("phimoe", intermediate_size=16, num_local_experts=8, num_experts_per_tok=2,
           router_jitter_noise=0.2),
     dict(scoring="sparsemixer", sparsemixer_eps=0.2)),
]


@pytest.mark.parametrize("data,expected", NEW, ids=[d["model_type"] + str(i)
                                                     for i, (d, _) in enumerate(NEW)])
def test_more_families(data, expected):
    fields(from_hf_config(data), **expected)


# Families SPEC §1 and FAMILY-RULES cannot express: refused naming the
# construct they lack.
REFUSED = [
    ("deepseek_v4", "hash-routed layers choose experts by token id"),
    ("glm5_next", "live in its nested text_config"),
    ("hy_v4", "but its shared expert does not"),
    ("bailing_hybrid", "clamp after the activation, min(act(gate), limit)"),
    ("step3p7", "per-layer swiglu_limits"),
    ("kolibri1", "raw logit + e_score_correction_bias"),
    ("longcat_flash", "identity"),
    ("qwen3_vl_moe", "multimodal"),
]


@pytest.mark.parametrize("model_type,message", REFUSED)
def test_refused_families_name_the_construct(model_type, message):
    with pytest.raises(HFConfigError) as e:
        from_hf_config(_tiny(model_type))
    assert e.value.field == "model_type"
    assert f'"{model_type}": ' in e.value.message and message in e.value.message


REFUSED_FIELDS = [
    (_tiny("cohere2_moe", intermediate_size=16, num_experts=8, num_experts_per_tok=2,
           num_shared_experts=1), "shared_expert_combination_strategy", '"average" averages'),
    (_tiny("axk2", moe_intermediate_size=16, n_routed_experts=8, num_experts_per_tok=2,
           n_group=2, topk_group=1), "n_group", "not -inf"),
    (_tiny("laguna", moe_intermediate_size=16, num_experts=8, num_experts_per_tok=2,
           moe_router_logit_softcapping=30.0), "moe_router_logit_softcapping", "soft-caps"),
    (_tiny("ernie4_5_moe", moe_intermediate_size=16, moe_num_experts=8, moe_k=2,
           moe_norm_min=0.5), "moe_norm_min", "exceeds top_k / num_experts"),
    (_tiny("ernie4_5_moe", moe_intermediate_size=16, moe_num_experts=8, moe_k=2, use_bias=True),
     "use_bias", "biases"),
    (dict(model_type="dbrx", d_model=32, ffn_config=dict(
        ffn_hidden_size=16, moe_num_experts=8, moe_top_k=2,
        moe_normalize_expert_weights=float("inf"))),
     "ffn_config.moe_normalize_expert_weights", "divides the top-k weights by their largest"),
    (dict(model_type="dbrx", d_model=32, ffn_config=dict(
        ffn_hidden_size=16, moe_num_experts=8, moe_top_k=2, moe_normalize_expert_weights=-2)),
     "ffn_config.moe_normalize_expert_weights", "must be finite and positive"),
    (dict(model_type="dbrx", d_model=32, ffn_config=dict(
        ffn_hidden_size=16, moe_num_experts=8, moe_top_k=2, moe_normalize_expert_weights="2")),
     "ffn_config.moe_normalize_expert_weights", 'must be a number or null, got "2"'),
    (_tiny("phimoe", intermediate_size=16, num_local_experts=8, num_experts_per_tok=4),
     "num_experts_per_tok", "(4): transformers' sparsemixer routing chooses exactly 2 experts"),
    (_tiny("phimoe", intermediate_size=16, num_local_experts=8, num_experts_per_tok=2,
           router_jitter_noise=-0.1), "router_jitter_noise", "must be finite and not negative"),
    (_tiny("gpt_oss", intermediate_size=16, num_local_experts=8, num_experts_per_tok=2,
           swiglu_limit=0), "swiglu_limit", "must be finite and positive"),
    (_tiny("jetmoe", intermediate_size=16, num_local_experts=8, num_experts_per_tok=2,
           activation_function="quick_gelu"), "activation_function", "is not an activation"),
    (dict(model_type="llama4", text_config=_tiny("llama4_text", num_local_experts=8,
                                                 num_experts_per_tok=1)),
     "text_config.intermediate_size", "is required"),
    (dict(model_type="llama4", text_config=_tiny("llama4_text", intermediate_size=16,
                                                 num_local_experts=8, num_experts_per_tok=9)),
     "text_config.num_experts_per_tok", "(9) must not exceed"),
    (dict(model_type="dbrx", d_model=32, ffn_config=dict(moe_num_experts=8, moe_top_k=2)),
     "ffn_config.ffn_hidden_size", "is required"),
    (_tiny("hunyuan_v1_moe", intermediate_size=16, num_experts=8, moe_topk=[2, 2]),
     "moe_topk", "per-layer list"),
    (_tiny("hy_v3", moe_intermediate_size=16, num_experts=8, num_experts_per_tok=2,
           mlp_bias=True), "mlp_bias", "biases"),
]


@pytest.mark.parametrize("data,field,message", REFUSED_FIELDS,
                         ids=[f"{d['model_type']}-{f}" for d, f, _ in REFUSED_FIELDS])
def test_refused_fields(data, field, message):
    with pytest.raises(HFConfigError) as e:
        from_hf_config(data)
    assert e.value.field == field and message in e.value.message


def test_moe_layers_of_more_families():
    v32 = _tiny("deepseek_v32", num_hidden_layers=5)
    assert [is_moe_layer(v32, i) for i in range(5)] == [False] * 3 + [True] * 2
    assert [is_moe_layer(dict(v32, mlp_layer_types=["sparse", "dense"]), i)
            for i in range(2)] == [True, False]
    ernie = _tiny("ernie4_5_moe", num_hidden_layers=4, moe_layer_interval=2)
    assert [is_moe_layer(ernie, i) for i in range(4)] == [False, True, False, True]
    jamba = _tiny("jamba")
    assert [is_moe_layer(jamba, i) for i in range(4)] == [False, True, False, True]
    flint = _tiny("flint")
    assert [is_moe_layer(flint, i) for i in range(3)] == [False, False, True]
    assert is_moe_layer(dict(flint, mlp_only_layers=[]), 0)
    assert not is_moe_layer(_tiny("glm4_moe"), 0) and is_moe_layer(_tiny("glm4_moe"), 1)


def test_moe_layers_of_llama4():
    """Llama 4 interleaves dense and MoE layers: moe_layers, else every
    interleave_moe_layer_step-th from step - 1 on; the multimodal model keeps
    them in text_config."""
    text = _tiny("llama4_text", num_hidden_layers=6, interleave_moe_layer_step=2)
    assert [is_moe_layer(text, i) for i in range(7)] == [False, True] * 3 + [False]
    assert all(is_moe_layer(_tiny("llama4_text", num_hidden_layers=3), i) for i in range(3))
    assert [is_moe_layer(dict(text, moe_layers=[0, 5]), i) for i in range(6)] == \
        [True, False, False, False, False, True]
    mm = dict(model_type="llama4", text_config=dict(text, interleave_moe_layer_step=3))
    assert [is_moe_layer(mm, i) for i in range(6)] == [False, False, True] * 2
    # Every JetMoE, PhiMoE and GPT-OSS layer is an MoE layer.
    assert all(is_moe_layer(_tiny(m), 3) for m in ("jetmoe", "phimoe", "gpt_oss"))

"""MoEConfig: the SPEC §2 keys, defaults, JSON round trip, and every error
worded as moe-compile words it."""

import json
import subprocess

import pytest

from conftest import tool
from moe_mlir import ConfigError, MoEConfig

BASE = {"name": "m", "hidden_size": 8, "intermediate_size": 4, "num_experts": 4, "top_k": 2}


def test_defaults_and_round_trip(tmp_path):
    c = MoEConfig(**BASE)
    assert (c.dtype, c.activation, c.gated, c.scoring, c.normalize_top_k) == \
        ("f32", "silu", True, "softmax", True)
    assert (c.n_group, c.topk_group, c.group_score, c.routing) == \
        (1, 1, "top2_sum", "token_choice")
    assert c.routed_scaling_factor == 1.0 and c.capacity_factor == 0.0
    assert list(json.loads(c.to_json())) == list(c.to_dict())
    assert MoEConfig.from_json(c.to_json()) == c
    path = tmp_path / "m.json"
    path.write_text(c.to_json(indent=1))
    assert MoEConfig.from_json(path) == c
    assert MoEConfig.from_json(str(path)) == c
    assert MoEConfig.from_dict(BASE) == c


def test_numbers_are_normalized():
    c = MoEConfig.from_dict({**BASE, "routed_scaling_factor": 2, "capacity_factor": 1})
    assert isinstance(c.routed_scaling_factor, float) and c.capacity_factor == 1.0
    assert c.replace(top_k=3).top_k == 3


def test_weight_shapes():
    c = MoEConfig(**BASE, shared_intermediate_size=6, shared_expert_gate=True,
                  selection_bias=True, gated=False)
    assert c.weight_shapes() == {
        "router": (4, 8), "selection_bias": (4,), "up_proj": (4, 4, 8),
        "down_proj": (4, 8, 4), "shared_up_proj": (6, 8), "shared_down_proj": (8, 6),
        "shared_expert_gate": (8,)}


LEAF = {"num_experts": 2, "top_k": 1, "intermediate_size": 4}
_LEAF_RULE = ("belongs to the innermost 'expert': a level with an 'expert' has no FFN "
              "of its own")

# (changes to BASE, key named, message) as moe-compile reports them.
BAD = [
    ({"name": None}, "name", "is required"),
    ({"top_k": None}, "top_k", "is required"),
    ({"num_expert": 4}, None, "unknown key 'num_expert'"),
    ({"zzz": 1, "aaa": 1}, None, "unknown key 'aaa'"),
    ({"hidden_size": "8"}, "hidden_size", 'must be an integer, got "8"'),
    ({"hidden_size": 8.5}, "hidden_size", "must be an integer, got 8.5"),
    ({"hidden_size": True}, "hidden_size", "must be an integer, got true"),
    ({"num_experts": 0, "top_k": 1}, "num_experts", "must be at least 1, got 0"),
    ({"name": "9lives"}, "name", 'must be a C identifier, got "9lives"'),
    ({"name": 7}, "name", "must be a string, got 7"),
    ({"top_k": 5}, "top_k", "(5) must not exceed the experts routing may choose from (4)"),
    ({"num_experts": 8, "top_k": 3, "n_group": 4, "topk_group": 1}, "top_k",
     "(3) must not exceed the experts routing may choose from (2 in 'topk_group' groups)"),
    ({"num_experts": 6, "n_group": 4}, "n_group", "(4) must divide 'num_experts' (6)"),
    ({"num_experts": 8, "n_group": 2, "topk_group": 3}, "topk_group",
     "(3) must not exceed 'n_group' (2)"),
    ({"top_k": 1, "n_group": 4}, "group_score",
     '"top2_sum" needs at least 2 experts per group, but groups have 1'),
    ({"activation": "swish"}, "activation",
     'must be one of "silu", "gelu", "gelu_tanh", "relu", "clamped_swiglu", got "swish"'),
    ({"dtype": "f64"}, "dtype", 'must be one of "f32", "bf16", "f16", got "f64"'),
    ({"gated": 1}, "gated", "must be true or false, got 1"),
    ({"routed_scaling_factor": "2"}, "routed_scaling_factor", 'must be a number, got "2"'),
    ({"routed_scaling_factor": 0}, "routed_scaling_factor", "must be finite and positive"),
    ({"capacity_factor": -0.5}, "capacity_factor", "must be finite and not negative"),
    ({"routing": "expert_choice"}, "capacity_factor",
     'must be positive for "expert_choice" routing'),
    ({"routing": "expert_choice", "capacity_factor": 1, "scoring": "sigmoid"}, "scoring",
     'must be "softmax" for "expert_choice" routing'),
    ({"routing": "expert_choice", "capacity_factor": 1, "n_group": 2}, "n_group",
     'must be 1 for "expert_choice" routing'),
    ({"routing": "expert_choice", "capacity_factor": 1, "selection_bias": True},
     "selection_bias", 'is not used by "expert_choice" routing'),
    ({"shared_expert_gate": True}, "shared_expert_gate",
     "needs a shared expert ('shared_intermediate_size' > 0)"),
    ({"shared_intermediate_size": -1}, "shared_intermediate_size",
     "must be at least 0, got -1"),
    ({"target": "tpu"}, "target", 'must be one of "cpu", "cuda", got "tpu"'),
    ({"gpu_arch": 90}, "gpu_arch", "must be a string, got 90"),
    ({"gpu_arch": "sm_70"}, "gpu_arch",
     'must be a comma-separated list of NVIDIA targets from sm_75 on, such as '
     '"sm_80,sm_90", got "sm_70"'),
    ({"gpu_arch": "sm_80,compute_90"}, "gpu_arch",
     'must be a comma-separated list of NVIDIA targets from sm_75 on, such as '
     '"sm_80,sm_90", got "sm_80,compute_90"'),
    ({"gpu_arch": "sm_90, sm_90"}, "gpu_arch", "names sm_90 twice"),
    # Hierarchical MoE: errors name the key by its path.
    ({"expert": LEAF}, "intermediate_size", _LEAF_RULE),
    ({"intermediate_size": None, "gated": False, "expert": LEAF}, "gated", _LEAF_RULE),
    ({"intermediate_size": None, "expert": 4}, "expert", "must be an object, got 4"),
    ({"intermediate_size": None, "expert": {**LEAF, "k": 1}}, None,
     "unknown key 'expert.k'"),
    ({"intermediate_size": None, "expert": {**LEAF, "name": "x"}}, "expert.name",
     "is inherited from the top level: give it there only"),
    ({"intermediate_size": None, "expert": {**LEAF, "shared_expert_gate": False}},
     "expert.shared_expert_gate", "is not supported inside 'expert': inner levels route "
     "by token choice, dropless, without shared experts"),
    ({"intermediate_size": None, "expert": {**LEAF, "routing": "expert_choice"}},
     "expert.routing", "must be \"token_choice\" inside 'expert': inner levels route by "
     "token choice"),
    ({"intermediate_size": None, "expert": {"num_experts": 2, "top_k": 1}},
     "expert.intermediate_size", "is required"),
    ({"intermediate_size": None, "expert": {"top_k": 1, "expert": LEAF}},
     "expert.num_experts", "is required"),
    ({"intermediate_size": None, "expert": {"num_experts": 2, "top_k": 1,
                                            "activation": "relu", "expert": LEAF}},
     "expert.activation", _LEAF_RULE),
    ({"intermediate_size": None, "expert": {**LEAF, "top_k": 3}}, "expert.top_k",
     "(3) must not exceed the experts routing may choose from (2)"),
    ({"intermediate_size": None, "expert": {**LEAF, "n_group": 2, "topk_group": 3}},
     "expert.topk_group", "(3) must not exceed 'expert.n_group' (2)"),
    ({"intermediate_size": None, "expert": {"num_experts": 2, "top_k": 1,
                                            "expert": {**LEAF, "scoring": "max"}}},
     "expert.expert.scoring", 'must be one of "softmax", "sigmoid", "sparsemixer", got "max"'),
    ({"intermediate_size": None, "expert": {"num_experts": 2, "top_k": 1,
                                            "expert": {**LEAF, "n_group": 3}}},
     "expert.expert.n_group", "(3) must divide 'expert.expert.num_experts' (2)"),
    ({"intermediate_size": None, "expert": {
        "num_experts": 65536, "top_k": 1, "expert": {**LEAF, "num_experts": 65536}}},
     "expert.expert.num_experts", "makes more than 2147483647 leaf experts"),
    # docs/FAMILY-RULES.md §2: a key where its rule does not apply names it.
    ({"normalize_p": 0}, "normalize_p", "must be finite and positive"),
    ({"sparsemixer_eps": 0.1}, "sparsemixer_eps",
     'is only used by "scoring": "sparsemixer"'),
    ({"scoring": "sparsemixer", "sparsemixer_eps": -0.1}, "sparsemixer_eps",
     "must be finite and not negative"),
    ({"scoring": "sparsemixer", "selection_bias": True}, "selection_bias",
     'is not used by "sparsemixer" scoring, which chooses by the logits'),
    ({"scoring": "sparsemixer", "n_group": 2, "topk_group": 1, "group_score": "max"},
     "n_group", 'must be 1 for "sparsemixer" scoring'),
    ({"routing": "expert_choice", "capacity_factor": 1, "scoring": "sparsemixer"}, "scoring",
     'must be "softmax" for "expert_choice" routing'),
    ({"swiglu_limit": 3}, "swiglu_limit", 'is only used by "activation": "clamped_swiglu"'),
    ({"activation": "clamped_swiglu", "gated": False}, "activation",
     "\"clamped_swiglu\" needs a gated FFN ('gated': true)"),
    ({"activation": "clamped_swiglu", "swiglu_limit": 0}, "swiglu_limit",
     "must be finite and positive"),
    ({"expert_bias": 1}, "expert_bias", "must be true or false, got 1"),
    ({"router_weight_on_input": "yes"}, "router_weight_on_input",
     'must be true or false, got "yes"'),
    ({"intermediate_size": None, "expert": {**LEAF, "output_bias": True}},
     "expert.output_bias", "is given at the top level only: it applies to the whole layer "
     "(its leaf experts, its output)"),
    ({"intermediate_size": None, "expert": {**LEAF, "normalize_p": -1}},
     "expert.normalize_p", "must be finite and positive"),
    ({"intermediate_size": None, "swiglu_alpha": 1.0, "expert": LEAF}, "swiglu_alpha",
     _LEAF_RULE),
]


def _bad(changes):
    d = dict(BASE)
    for k, v in changes.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    return d


@pytest.mark.parametrize("changes,key,message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_errors_match_moe_compile(tmp_path, changes, key, message):
    data = _bad(changes)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as e:
        MoEConfig.from_json(path)
    assert e.value.key == key and e.value.message == message
    expected = f"{path}: '{key}' {message}" if key else f"{path}: {message}"
    assert str(e.value) == expected
    proc = subprocess.run([str(tool("moe-compile")), str(path), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"moe-compile: error: {expected}"


def test_constructor_validates():
    with pytest.raises(ConfigError, match=r"^<config>: 'top_k' \(5\) must not exceed"):
        MoEConfig(**{**BASE, "top_k": 5})
    with pytest.raises(ConfigError, match="'hidden_size' must be an integer"):
        MoEConfig(**{**BASE, "hidden_size": 8.0})
    with pytest.raises(ConfigError, match="'top_k' must be at least 1"):
        MoEConfig(**BASE).replace(top_k=0)


def test_document_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid JSON"):
        MoEConfig.from_json('{"name": ')
    with pytest.raises(ConfigError, match="must hold one JSON object"):
        MoEConfig.from_dict([1, 2])
    with pytest.raises(ConfigError, match="cannot read"):
        MoEConfig.from_json(tmp_path / "absent.json")


HIERARCHICAL = {"name": "h", "hidden_size": 8, "num_experts": 4, "top_k": 2,
                "expert": {"num_experts": 3, "top_k": 2, "scoring": "sigmoid",
                           "expert": {"num_experts": 2, "top_k": 1,
                                      "intermediate_size": 5, "gated": False}}}


def test_hierarchical_round_trip_and_shapes():
    c = MoEConfig.from_dict(HIERARCHICAL)
    # The leaf FFN's keys are the innermost level's, mirrored at the top.
    assert (c.intermediate_size, c.gated, c.activation) == (5, False, "silu")
    data = c.to_dict()
    assert "intermediate_size" not in data and list(data)[-1] == "expert"
    assert list(data["expert"])[:2] == ["num_experts", "top_k"]
    assert data["expert"]["expert"]["intermediate_size"] == 5
    assert MoEConfig.from_json(c.to_json()) == c
    assert MoEConfig.from_dict(data) == c
    assert c.replace(top_k=1).route_width == 2 and c.route_width == 4
    assert len(c.levels) == 3
    assert c.weight_shapes()["up_proj"] == (4, 3, 2, 5, 8)
    # The level fields, then FAMILY-RULES' four biases, last in every struct.
    assert c.weight_keys()[-25:-18] == ("level3_router", "level3_router_bias",
                                        "level3_selection_bias", "gate_proj_bias",
                                        "up_proj_bias", "down_proj_bias", "output_bias")
    # Constructed directly, the leaf keys come from the innermost level.
    d = MoEConfig("h", 8, None, 4, 2, expert=HIERARCHICAL["expert"])
    assert d == c


def test_configs_do_not_share_state():
    """moe-compile's answers are cached; a config changed by its user must
    not change the next one made from the same keys."""
    shard = {**BASE, "expert_shard": {"first": 1, "count": 2}}
    a = MoEConfig.from_dict(shard)
    a.expert_shard["count"] = 3
    assert MoEConfig.from_dict(shard).expert_shard == {"first": 1, "count": 2}
    assert MoEConfig.from_dict(shard).to_dict()["expert_shard"]["count"] == 2


def test_family_rule_keys_defaults_and_round_trip():
    """docs/FAMILY-RULES.md §2: the new keys' defaults; sparsemixer_eps and
    swiglu_* exist only with their rule on, as moe-compile reports them."""
    c = MoEConfig(**BASE)
    assert (c.normalize_p, c.sparsemixer_eps, c.router_weight_on_input, c.swiglu_alpha,
            c.swiglu_limit, c.expert_bias, c.output_bias) == \
        (1.0, None, False, None, None, False, False)
    assert "sparsemixer_eps" not in c.to_dict() and "swiglu_alpha" not in c.to_dict()
    r = MoEConfig(**BASE, scoring="sparsemixer", normalize_p=2, activation="clamped_swiglu",
                  swiglu_limit=3, router_weight_on_input=True, expert_bias=True,
                  output_bias=True)
    assert (r.normalize_p, r.sparsemixer_eps, r.swiglu_alpha, r.swiglu_limit) == \
        (2.0, 0.01, 1.702, 3.0)
    data = r.to_dict()
    for key in ("normalize_p", "sparsemixer_eps", "router_weight_on_input", "swiglu_alpha",
                "swiglu_limit", "expert_bias", "output_bias"):
        assert key in data
    assert list(json.loads(r.to_json())) == list(data)
    assert MoEConfig.from_json(r.to_json()) == r and MoEConfig.from_dict(data) == r
    # The rule's keys go with it.
    assert r.replace(scoring="softmax", sparsemixer_eps=None).sparsemixer_eps is None
    with pytest.raises(ConfigError, match="'sparsemixer_eps' is only used by"):
        r.replace(scoring="softmax")


def test_family_rule_weight_shapes():
    c = MoEConfig(**BASE, expert_bias=True, output_bias=True)
    shapes = c.weight_shapes()
    assert (shapes["gate_proj_bias"], shapes["up_proj_bias"], shapes["down_proj_bias"],
            shapes["output_bias"]) == ((4, 4), (4, 4), (4, 8), (8,))
    assert "gate_proj_bias" not in c.replace(gated=False).weight_shapes()
    assert c.weight_keys()[10:14] == ("gate_proj_bias", "up_proj_bias", "down_proj_bias",
                                      "output_bias")
    # Stacked over a hierarchy's levels like the leaf FFNs; a shard's own.
    h = MoEConfig.from_dict({**HIERARCHICAL, "expert_bias": True})
    assert h.weight_shapes()["up_proj_bias"] == (4, 3, 2, 5)
    assert h.weight_shapes()["down_proj_bias"] == (4, 3, 2, 8)
    assert "gate_proj_bias" not in h.weight_shapes()  # its leaves are not gated
    shard = c.replace(expert_shard={"first": 1, "count": 2})
    assert shard.weight_shapes()["up_proj_bias"] == (2, 4)
    assert shard.weight_shapes()["output_bias"] == (8,)


def test_hierarchical_family_rules():
    """normalize_p and sparsemixer per level; clamped_swiglu in the leaf,
    mirrored at the top like activation."""
    h = MoEConfig.from_dict({
        "name": "h", "hidden_size": 8, "num_experts": 4, "top_k": 2, "normalize_p": 3,
        "expert": {"num_experts": 3, "top_k": 2, "scoring": "sparsemixer",
                   "sparsemixer_eps": 0.2, "intermediate_size": 5,
                   "activation": "clamped_swiglu", "swiglu_alpha": 1.5}})
    assert (h.normalize_p, h.sparsemixer_eps, h.activation, h.swiglu_alpha, h.swiglu_limit) \
        == (3.0, None, "clamped_swiglu", 1.5, 7.0)
    level = h.to_dict()["expert"]
    assert (level["scoring"], level["sparsemixer_eps"], level["normalize_p"],
            level["swiglu_alpha"]) == ("sparsemixer", 0.2, 1.0, 1.5)
    assert "swiglu_alpha" not in h.to_dict() and "sparsemixer_eps" not in h.to_dict()
    assert MoEConfig.from_json(h.to_json()) == h

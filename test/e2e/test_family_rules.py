"""The layer rules of docs/FAMILY-RULES.md (p-norm weights, sparsemixer,
weights on the expert input, clamped SwiGLU, expert and output biases) end
to end on the CPU: every kernel form the CPU lowering has (fused and
unfused activation, combine and gather), f32 and bf16, hierarchical levels
and expert shards, against the f64 reference by SPEC §1's rule."""

import json

import numpy as np
import pytest

from moe_mlir.abi import Library, compile_config
from moe_mlir.reference import random_input, random_weights
from test_conformance import cfg, check_token_counts
from test_expert_shard import sharded_forward, shard_of

# One config per rule, then all of them in one layer; sizes off tile
# multiples. A small swiglu_limit makes the clamps bind on random weights.
RULES = [
    cfg("fr_dbrx_p2", 17, 24, 8, 3, normalize_p=2.0),
    cfg("fr_p_half_scaled", 16, 20, 8, 2, normalize_p=0.5, routed_scaling_factor=2.0),
    cfg("fr_phimoe", 20, 28, 8, 2, scoring="sparsemixer", normalize_top_k=False),
    cfg("fr_sparsemixer_k3_eps", 16, 12, 6, 3, scoring="sparsemixer",
        sparsemixer_eps=0.2, normalize_top_k=False),
    cfg("fr_llama4", 24, 20, 8, 1, scoring="sigmoid", normalize_top_k=False,
        router_weight_on_input=True, shared_intermediate_size=24),
    cfg("fr_on_input_k2", 17, 36, 4, 2, router_weight_on_input=True),
    cfg("fr_gpt_oss", 18, 22, 8, 2, router_bias=True, activation="clamped_swiglu",
        swiglu_limit=0.75, swiglu_alpha=1.5, expert_bias=True),
    cfg("fr_swiglu_shared", 16, 20, 4, 2, activation="clamped_swiglu",
        swiglu_limit=1.0, shared_intermediate_size=12),
    # GLM-5-Next's clamp: silu(min(g, L)) · clamp(u, ±L), DeepSeek-V3 routing.
    cfg("fr_glm5_clamp", 16, 20, 8, 2, scoring="sigmoid", selection_bias=True,
        n_group=4, topk_group=2, activation="clamped_swiglu", swiglu_alpha=1.0,
        swiglu_limit=0.8, swiglu_up_offset=0.0, shared_intermediate_size=12),
    cfg("fr_plain_bias", 16, 20, 4, 2, gated=False, activation="gelu", expert_bias=True),
    cfg("fr_jetmoe", 17, 24, 8, 2, output_bias=True),
    cfg("fr_everything", 20, 24, 8, 2, scoring="sparsemixer", normalize_p=3.0,
        router_weight_on_input=True, activation="clamped_swiglu", swiglu_limit=1.0,
        expert_bias=True, output_bias=True, shared_intermediate_size=16,
        shared_expert_gate=True, capacity_factor=1.0),
]
TOKENS = [0, 1, 7, 64]


def rules(*names):
    return [next(c for c in RULES if c["name"] == name) for name in names]

# --cpu-pipeline-options with each fusion turned off: the unfused forms
# compute whole projections apart from the activation, or lower combine
# apart from the experts, or copy the rows out before packing them.
UNFUSED = ["fuse-activation=false", "fuse-combine=false", "fuse-gather=false"]


def compile_library(config, directory, *args):
    return Library(compile_config(config, directory, args), config["name"], config)


@pytest.mark.parametrize("config", RULES, ids=lambda c: c["name"])
def test_rule_conforms(tmp_path, config):
    check_token_counts(compile_library(config, tmp_path), config, TOKENS)


@pytest.mark.parametrize("form", UNFUSED)
@pytest.mark.parametrize("config", rules("fr_llama4", "fr_gpt_oss", "fr_everything"),
                         ids=lambda c: c["name"])
def test_rule_conforms_unfused(tmp_path, config, form):
    args = [f"--cpu-pipeline-options={form}"]
    check_token_counts(compile_library(config, tmp_path, *args), config, TOKENS)


@pytest.mark.parametrize("config", rules("fr_dbrx_p2", "fr_phimoe", "fr_llama4", "fr_gpt_oss",
                                         "fr_jetmoe", "fr_glm5_clamp"),
                         ids=lambda c: c["name"])
def test_rule_conforms_bf16(tmp_path, config):
    config = dict(config, name=config["name"] + "_bf16", dtype="bf16")
    check_token_counts(compile_library(config, tmp_path), config, TOKENS, 2e-2)


def test_inner_level_rules(tmp_path):
    """Sparsemixer and the p-norm at an inner level, clamped SwiGLU and
    biases at the leaves of a hierarchy."""
    config = {"name": "fr_hier", "hidden_size": 16, "num_experts": 4, "top_k": 2,
              "normalize_p": 2.0, "expert_bias": True, "output_bias": True,
              "router_weight_on_input": True,
              "expert": {"num_experts": 4, "top_k": 2, "intermediate_size": 12,
                         "scoring": "sparsemixer", "normalize_top_k": False,
                         "activation": "clamped_swiglu", "swiglu_limit": 1.0}}
    check_token_counts(compile_library(config, tmp_path), config, TOKENS)


SHARDED = ("gate_proj", "up_proj", "down_proj", "gate_proj_bias", "up_proj_bias",
           "down_proj_bias")


def test_shards_apply_the_rules(tmp_path):
    """Expert shards of a layer with weights on the input, expert biases
    and an output bias give forward's bits."""
    layer = cfg("fr_shard_layer", 16, 20, 6, 2, router_weight_on_input=True,
                activation="clamped_swiglu", swiglu_limit=1.0, expert_bias=True,
                output_bias=True, shared_intermediate_size=12)
    weights = random_weights(layer, 3)
    x = random_input(33, layer["hidden_size"], 4)
    whole = compile_library(layer, tmp_path / "whole")
    with whole.create(weights) as ctx:
        y = whole.forward(ctx, x)
    shards = []
    for first, count in ((0, 4), (4, 2)):
        lib = compile_library(shard_of(layer, first, count), tmp_path / f"s{first}")
        own = {k: (v[first:first + count] if k in SHARDED else v)
               for k, v in weights.items()}
        shards.append((first, lib, lib.create(own)))
    sharded = sharded_forward(shards, x)
    for _, _, ctx in shards:
        ctx.destroy()
    assert np.array_equal(sharded, y)


def test_config_json_names_the_rules(tmp_path):
    """The library's config_json carries every rule's key, and the defaults
    of the parameters the config left out."""
    config = rules("fr_everything")[0]
    parsed = json.loads(compile_library(config, tmp_path).config_json())
    for key, value in config.items():
        assert parsed[key] == value, f"config_json has {key}={parsed[key]!r}"
    assert parsed["swiglu_alpha"] == 1.702 and parsed["sparsemixer_eps"] == 0.01

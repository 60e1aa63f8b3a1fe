"""compile() + the callable layer against the f64 reference of SPEC §1, the
library cache, and CompileError."""

import json
import os

import numpy as np
import pytest

import moe_mlir
from conftest import tool
from helpers import HF_CONFIGS
from moe_mlir import CompileError, ConfigError, MoEConfig, compile, from_hf_config
from moe_mlir.abi import representable
from moe_mlir.reference import (near_ties, random_input, random_weights, reference,
                                routing_ties)


@pytest.fixture(autouse=True)
def _compiler():
    os.environ.setdefault("MOE_COMPILE", str(tool("moe-compile")))


CONFIGS = [
    MoEConfig("fe_mixtral", 32, 48, 8, 2),
    from_hf_config(HF_CONFIGS / "deepseek_v3.json", name="fe_v3", dtype="f32"),
    from_hf_config(HF_CONFIGS / "qwen2_moe.json", name="fe_qwen2", dtype="bf16"),
    from_hf_config(HF_CONFIGS / "switch_transformers.json", name="fe_switch",
                   capacity_factor=1.0),
]


def check(config, layer, weights, x):
    tol = 1e-4 if config.dtype == "f32" else 2e-2
    # The reference sees the numbers the library sees.
    w = {k: representable(v, config.dtype) for k, v in weights.items()}
    xr = representable(x, config.dtype)
    ref, ref_ids, _, choice = reference(config.to_dict(), w, xr)
    y = layer(x)
    ids, _ = layer.route(x)
    tied, _ = near_ties(config.to_dict(), choice)
    if tied.any():
        forced, _, _, _ = reference(config.to_dict(), w, xr, forced_ids=ids)
        ref = np.where(tied[:, None], forced, ref)
    assert np.array_equal(ids[~tied], ref_ids[~tied])
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.abs(y - ref).max() <= tol * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_matches_reference(config):
    compiled = compile(config)
    assert compiled.config_json() == json.loads(config.to_json())
    weights = random_weights(config.to_dict(), seed=1)
    with compiled(weights) as layer:
        check(config, layer, weights, random_input(37, config.hidden_size, seed=2))
        # Leading dimensions are kept.
        x3 = random_input(6, config.hidden_size, seed=3).reshape(2, 3, -1)
        assert layer(x3).shape == x3.shape
        ids, w = layer.route(x3)
        assert ids.shape == (2, 3, config.route_width) and ids.dtype == np.int32
        assert layer(np.zeros((0, config.hidden_size), np.float32)).shape == \
            (0, config.hidden_size)


def test_hierarchical_layer():
    """A layer whose experts are MoE layers compiles and runs like any other;
    route() gives leaf ids."""
    config = MoEConfig.from_dict({
        "name": "fe_hier", "hidden_size": 16, "num_experts": 4, "top_k": 2,
        "expert": {"num_experts": 3, "top_k": 2, "scoring": "sigmoid",
                   "intermediate_size": 8}})
    compiled = compile(config)
    assert compiled.config_json() == json.loads(config.to_json())
    weights = random_weights(config.to_dict(), seed=1)
    assert "level2_router" in weights
    x = random_input(9, 16, seed=2)
    ref, ref_ids, _, _ = reference(config.to_dict(), weights, x)
    kept = ~routing_ties(config.to_dict(), weights, x)
    with compiled(weights) as layer:
        y = layer(x)
        ids, _ = layer.route(x)
    assert ids.shape == (9, 4) and ids.max() < 12
    assert np.array_equal(ids[kept], ref_ids[kept])
    assert np.abs(y - ref)[kept].max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_bf16_native_arrays():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    config = CONFIGS[2]
    weights = random_weights(config.to_dict(), seed=1)
    layer = compile(config)(weights)
    x = random_input(5, config.hidden_size, seed=2)
    y = layer(x.astype(ml_dtypes.bfloat16))
    assert y.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(y.astype(np.float32), layer(x))


def test_cache_hit(tmp_path, monkeypatch):
    monkeypatch.setenv("MOE_MLIR_CACHE", str(tmp_path / "cache"))
    config = MoEConfig("fe_cached", 16, 8, 4, 2)
    calls = []
    real = moe_mlir.abi.compile_config

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(moe_mlir.abi, "compile_config", counting)
    first = compile(config)
    assert not first.cached and len(calls) == 1
    assert first.path.parent.parent == tmp_path / "cache"
    mtime = first.path.stat().st_mtime_ns
    second = compile(MoEConfig.from_dict(config.to_dict()))
    assert second.cached and len(calls) == 1
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime
    assert first.header_path.is_file()
    # Another config is another library.
    assert not compile(config.replace(top_k=1)).cached and len(calls) == 2
    # Only finished entries are left in the cache.
    assert all(not p.name.startswith(".") for p in (tmp_path / "cache").iterdir())


def test_compile_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="'target' must be one of"):
        compile(MoEConfig("fe_err", 16, 8, 4, 2), target="tpu")
    with pytest.raises(ConfigError, match="'top_k'"):
        compile({"name": "x", "hidden_size": 8, "intermediate_size": 4, "num_experts": 2,
                 "top_k": 3})
    # moe-compile's own failures come back with its message.
    with pytest.raises(CompileError) as e:
        compile(MoEConfig("fe_err", 16, 8, 4, 2), extra_args=("--no-such-flag",))
    assert "no-such-flag" in e.value.message
    monkeypatch.setenv("MOE_COMPILE", str(tmp_path / "absent"))
    with pytest.raises(CompileError, match="not found"):
        compile(MoEConfig("fe_err", 16, 8, 4, 2))


def test_weights_checked():
    config = MoEConfig("fe_check", 16, 8, 4, 2)
    compiled = compile(config)
    w = random_weights(config.to_dict(), seed=0)
    with pytest.raises(ValueError, match="missing weights \\['down_proj'\\]"):
        compiled({k: v for k, v in w.items() if k != "down_proj"})
    with pytest.raises(ValueError, match="not used"):
        compiled({**w, "router_bias": np.zeros(4, np.float32)})
    with pytest.raises(KeyError, match="unknown weights"):
        compiled({**w, "wg": w["gate_proj"]})
    with pytest.raises(ValueError, match="shape"):
        compiled({**w, "router": w["router"][:, :8]})
    layer = compiled(w)
    with pytest.raises(ValueError, match=r"want \[..., 16\]"):
        layer(np.zeros((3, 8), np.float32))
    layer.close()
    with pytest.raises(RuntimeError, match="closed"):
        layer(np.zeros((3, 16), np.float32))


# docs/FAMILY-RULES.md's rules, compiled, against the reference.
RULES = {
    "fe_sparsemixer": dict(hidden_size=32, intermediate_size=24, num_experts=8, top_k=3,
                           scoring="sparsemixer", sparsemixer_eps=0.1, normalize_p=2.0,
                           routed_scaling_factor=1.5, expert_bias=True, output_bias=True),
    "fe_swiglu_rwoi": dict(hidden_size=32, intermediate_size=24, num_experts=8, top_k=2,
                           scoring="sigmoid", normalize_top_k=False,
                           router_weight_on_input=True, activation="clamped_swiglu",
                           swiglu_limit=0.8, swiglu_alpha=1.2, shared_intermediate_size=16,
                           expert_bias=True, router_bias=True),
    "fe_gpt_oss_bf16": dict(hidden_size=32, intermediate_size=24, num_experts=8, top_k=2,
                            dtype="bf16", router_bias=True, activation="clamped_swiglu",
                            swiglu_limit=1.0, expert_bias=True),
    "fe_ungated_biases": dict(hidden_size=32, intermediate_size=24, num_experts=8, top_k=2,
                              gated=False, activation="gelu", expert_bias=True,
                              output_bias=True, router_weight_on_input=True,
                              normalize_p=0.7),
    "fe_rules_hier": dict(hidden_size=32, num_experts=3, top_k=2, normalize_p=3.0,
                          expert_bias=True, output_bias=True, shared_intermediate_size=16,
                          expert={"num_experts": 4, "top_k": 2, "scoring": "sparsemixer",
                                  "sparsemixer_eps": 0.2, "router_bias": True,
                                  "intermediate_size": 12, "activation": "clamped_swiglu",
                                  "swiglu_limit": 0.9}),
    "fe_rules_hier_rwoi": dict(hidden_size=32, num_experts=3, top_k=2, scoring="sigmoid",
                               normalize_top_k=False, router_weight_on_input=True,
                               expert_bias=True,
                               expert={"num_experts": 4, "top_k": 2, "normalize_p": 2.0,
                                       "intermediate_size": 12}),
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_family_rules_match_reference(name):
    config = MoEConfig.from_dict(dict(RULES[name], name=name))
    compiled = compile(config)
    assert compiled.config_json() == json.loads(config.to_json())
    weights = random_weights(config.to_dict(), seed=1)
    w = {k: representable(v, config.dtype) for k, v in weights.items()}
    x = random_input(64, config.hidden_size, seed=2)
    xr = representable(x, config.dtype)
    ref, ref_ids, _, _ = reference(config.to_dict(), w, xr)
    kept = ~routing_ties(config.to_dict(), w, xr)
    assert kept.mean() > 0.75
    with compiled(weights) as layer:
        y = layer(x)
        ids, _ = layer.route(x)
    tol = 1e-4 if config.dtype == "f32" else 2e-2
    assert np.array_equal(ids[kept], ref_ids[kept])
    assert np.abs(y - ref)[kept].max() <= tol * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("quantized", [None, {"format": "int4", "group_size": 8,
                                               "zero_points": True, "act_order": True}])
def test_family_rules_in_expert_shards(quantized):
    """Shards of a layer with expert biases, the routing weight on the
    experts' input and an output bias: run_experts applies the first two,
    combine adds the output bias; together they give forward's y. Quantized,
    each shard takes its experts' scales, zero points and column orders."""
    from moe_mlir.distributed import _shard_weights
    extra = {} if quantized is None else {"expert_weights": quantized}
    config = MoEConfig.from_dict(dict(RULES["fe_swiglu_rwoi"], output_bias=True, **extra,
                                      name="fe_rules_shard" + ("_q4" if quantized else "")))
    weights = random_weights(config.to_dict(), seed=3)
    x = random_input(40, config.hidden_size, seed=4)
    with compile(config)(weights) as whole:
        y = whole(x)
    shards = []
    for first, count in ((0, 3), (3, 3), (6, 2)) if quantized is None else ((0, 5), (5, 3)):
        shard = config.replace(expert_shard={"first": first, "count": count})
        shards.append((first, count, compile(shard)(_shard_weights(config, weights, first,
                                                                   count))))
    ids, route_w = shards[0][2].route(x)
    expert_out = np.zeros(ids.shape + (config.hidden_size,), np.float32)
    for first, count, layer in shards:
        slots = [(t, j) for e in range(first, first + count)
                 for t, j in zip(*np.nonzero(ids == e))]
        counts = np.bincount(ids[(ids >= first) & (ids < first + count)] - first,
                             minlength=count)
        rows = np.array([x[t] for t, _ in slots], np.float32).reshape(-1, config.hidden_size)
        out = layer.run_experts(rows, counts, np.array([route_w[s] for s in slots], np.float32))
        for s, row in zip(slots, out):
            expert_out[s] = row
    sharded = shards[0][2].combine(x, ids, expert_out)
    np.testing.assert_allclose(sharded, y, rtol=1e-5, atol=1e-5)
    ref, _, _, _ = reference(config.to_dict(), weights, x)
    kept = ~routing_ties(config.to_dict(), weights, x)
    assert np.abs(sharded - ref)[kept].max() <= 1e-4 * max(1.0, np.abs(ref).max())
    for _, _, layer in shards:
        layer.close()

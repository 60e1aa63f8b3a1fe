"""Expert parallelism on torch.distributed (gloo, loopback): torchrun runs
expert_parallel_worker.py on 2 and 4 ranks, each rank holding a shard of the
experts, and every rank's outputs must equal the single-process layer's on
the same tokens: bit for bit without a shared expert, where each expert
sees the same rows in the same order as in one process
(docs/EXPERT_PARALLEL.md), within SPEC §1's tolerance otherwise."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import moe_mlir  # noqa: E402
from moe_mlir.abi import representable  # noqa: E402
from moe_mlir.reference import reference  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from expert_parallel_worker import case_inputs  # noqa: E402

SMALL = {"hidden_size": 32, "intermediate_size": 48, "num_experts": 8}
# Uneven token counts, none on some ranks; enough rows on some experts for
# the packed form.
UNEVEN = {"2": [37, 0], "4": [11, 0, 29, 3]}
LARGE = {"2": [150, 90], "4": [70, 0, 120, 50]}
V3 = {**SMALL, "top_k": 3, "scoring": "sigmoid", "n_group": 4, "topk_group": 2,
      "selection_bias": True, "routed_scaling_factor": 2.5,
      "shared_intermediate_size": 32}

CASES = {
    "softmax": {"config": {"name": "ep_softmax", **SMALL, "top_k": 2},
                "tokens": LARGE},
    "deepseek_v3": {"config": {"name": "ep_v3", **V3}, "tokens": LARGE},
    "deepseek_v2": {"config": {"name": "ep_v2", **SMALL, "top_k": 2, "n_group": 2,
                               "topk_group": 1, "group_score": "max",
                               "normalize_top_k": False, "gated": False,
                               "activation": "gelu"}, "tokens": UNEVEN},
    "router_bias_shared_gate": {"config": {
        "name": "ep_gate", **SMALL, "top_k": 2, "router_bias": True,
        "normalize_top_k": False, "shared_intermediate_size": 24,
        "shared_expert_gate": True}, "tokens": UNEVEN},
    "capacity": {"config": {"name": "ep_capacity", **SMALL, "top_k": 2,
                            "capacity_factor": 1.0}, "tokens": LARGE},
    "bf16": {"config": {"name": "ep_bf16", **SMALL, "top_k": 2, "dtype": "bf16"},
             "tokens": LARGE},
    "bf16_deepseek_v3": {"config": {"name": "ep_bf16_v3", **V3, "dtype": "bf16"},
                         "tokens": UNEVEN},
    # Experts 4-7 never win: ranks 1 (of 2) and 2, 3 (of 4) receive no row.
    "idle_experts": {"config": {"name": "ep_idle", **SMALL, "top_k": 2,
                                "router_bias": True},
                     "weights": {"router_bias": [0.0] * 4 + [-1e4] * 4},
                     "tokens": UNEVEN},
    "hierarchical": {"config": {"name": "ep_levels", "hidden_size": 32,
                                "num_experts": 2, "top_k": 1,
                                "expert": {"num_experts": 4, "top_k": 2,
                                           "intermediate_size": 48}},
                     "tokens": UNEVEN},
    "shard_weights": {"config": {"name": "ep_softmax", **SMALL, "top_k": 2},
                      "tokens": UNEVEN, "shard_weights": True},
    "torch": {"config": {"name": "ep_softmax", **SMALL, "top_k": 2},
              "tokens": UNEVEN, "torch": True},
    # 6 experts: shards of 3 and 3 on 2 ranks, 1, 2, 1 and 2 on 4.
    "uneven_shards": {"config": {"name": "ep_six", **SMALL, "num_experts": 6,
                                 "top_k": 2}, "tokens": LARGE},
    "torch_bf16": {"config": {"name": "ep_bf16", **SMALL, "top_k": 2, "dtype": "bf16"},
                   "tokens": UNEVEN, "torch": "bf16"},
    "no_tokens": {"config": {"name": "ep_softmax", **SMALL, "top_k": 2},
                  "tokens": {"2": [0, 0], "4": [0, 0, 0, 0]}},
    "call_error": {"config": {"name": "ep_softmax", **SMALL, "top_k": 2},
                   "tokens": UNEVEN, "error": "call"},
    "config_mismatch": {"config": {"name": "ep_softmax", **SMALL, "top_k": 2},
                        "tokens": UNEVEN, "error": "config"},
    "config_shard": {"config": {"name": "ep_softmax", **SMALL, "top_k": 2},
                     "tokens": UNEVEN, "error": "config_shard"},
    "shard_size": {"config": {"name": "ep_softmax", **SMALL, "top_k": 2},
                   "tokens": UNEVEN, "error": "shard_size"},
    # Each rank takes its experts' scales, zero points and column orders.
    "int4_act_order": {"config": {"name": "ep_q4", **SMALL, "top_k": 2,
                                  "expert_weights": {"format": "int4", "group_size": 16,
                                                     "zero_points": True,
                                                     "act_order": True}},
                       "tokens": LARGE},
}
for i, case in enumerate(CASES.values()):
    case["seed"] = 10 * i + 1


def tolerance(config):
    return 1e-4 if config.get("dtype", "f32") == "f32" else 2e-2


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("moe_mlir_cache")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory, cache):
    """Every rank's results for a world size, run once."""
    runs = {}

    def get(world):
        if world not in runs:
            runs[world] = run_ranks(world, tmp_path_factory.mktemp(f"world{world}"), cache)
        return runs[world]

    return get


def run_ranks(world, tmp_path, cache):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.fail("torchrun is not on PATH although torch imports")
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps(CASES))
    env = dict(os.environ, MOE_MLIR_CACHE=str(cache), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [torchrun, "--standalone", f"--nproc-per-node={world}",
         str(HERE / "expert_parallel_worker.py"), str(cases), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return [np.load(tmp_path / f"rank{r}.npz") for r in range(world)]


@pytest.mark.parametrize("world", [2, 4])
def test_matches_one_process(world, ranks, cache, monkeypatch):
    monkeypatch.setenv("MOE_MLIR_CACHE", str(cache))
    ranks = ranks(world)
    failures = []
    for name, case in CASES.items():
        if case.get("error", "call") != "call":
            continue
        config, weights, x, _ = case_inputs(case, 0, world)
        counts = case["tokens"][str(world)]
        bounds = np.cumsum([0] + counts)
        y = np.concatenate([ranks[r][f"{name}/y"] for r in range(world)])
        layer = moe_mlir.compile(config)(weights)
        if config.get("capacity_factor"):
            # Capacity applies to each rank's own batch.
            one = np.concatenate([layer(x[bounds[r]:bounds[r + 1]])
                                  for r in range(world) if counts[r]])
        else:
            one = layer(x)
        # The f64 reference sees what the layer sees: bf16 rounds x and the
        # weights first.
        dtype = config.get("dtype", "f32")
        if not len(x):
            assert y.shape == (0, config["hidden_size"]), name
            continue
        ref = reference(config, {k: representable(v, dtype) for k, v in weights.items()},
                        representable(x, dtype))[0]
        layer.close()
        scale = max(1.0, float(np.abs(ref).max()))
        exact = not config.get("shared_intermediate_size")
        if exact and not np.array_equal(y, one):
            failures.append(f"{name}: not bit-identical to one process "
                            f"(max diff {np.abs(y - one).max():.3g})")
        if np.abs(y - one).max() > tolerance(config) * scale:
            failures.append(f"{name}: off one process by {np.abs(y - one).max():.3g}")
        if not config.get("capacity_factor") and \
                np.abs(y - ref).max() > tolerance(config) * scale:
            failures.append(f"{name}: off the f64 reference by {np.abs(y - ref).max():.3g}")
        if case.get("torch") is True:
            for r in range(world):
                assert "no backward" in str(ranks[r][f"{name}/grad_error"]), name
        if case.get("error") == "call":
            # Rank 1 raised its own error, every other rank one naming it.
            for r in range(world):
                message = str(ranks[r][f"{name}/call_error"])
                expected = ("x has shape" if r == 1 else
                            "the call failed on rank(s) 1, which raised the error")
                assert expected in message, (name, r, message)
    assert not failures, "\n".join(failures)


def test_errors_on_every_rank(ranks):
    ranks = ranks(2)
    for r in range(2):
        mismatch = str(ranks[r]["config_mismatch/error"])
        assert "rank 1's config differs from rank 0's" in mismatch, mismatch
        assert '"top_k": 1' in mismatch and '"top_k": 2' in mismatch, mismatch
        shard = str(ranks[r]["config_shard/error"])
        assert "rank 1: ValueError: takes the whole layer's config" in shard, shard
        size = str(ranks[r]["shard_size/error"])
        assert "rank 1: ValueError: weight 'up_proj' has shape (1, 48, 32)" in size, size
        assert "rank 0:" not in size, size

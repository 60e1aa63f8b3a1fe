"""One rank of test_expert_parallel.py, started by torchrun: runs every case
of the JSON file argv[1] through moe_mlir.distributed.ExpertParallelLayer on
gloo and writes this rank's outputs (or the error a case expects) to
argv[2]/rank<r>.npz. The test compares them with the single-process layer.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python_frontend"))

from moe_mlir.distributed import ExpertParallelLayer  # noqa: E402
from moe_mlir.reference import random_weights  # noqa: E402


def case_inputs(case, rank, world):
    """(the config, the whole layer's weights, every rank's tokens
    concatenated, this rank's slice of them)."""
    config = case["config"]
    weights = random_weights(config, case["seed"])
    for key, value in case.get("weights", {}).items():
        weights[key] = np.asarray(value, dtype=np.float32)
    counts = case["tokens"][str(world)]
    x = np.random.default_rng(case["seed"] + 1).standard_normal(
        (sum(counts), config["hidden_size"])).astype(np.float32)
    start = sum(counts[:rank])
    return config, weights, x, x[start:start + counts[rank]]


def run_case(case, rank, world):
    config, weights, _, x = case_inputs(case, rank, world)
    error = case.get("error")
    if error == "config" and rank == 1:
        config = dict(config, top_k=config["top_k"] - 1)
    if error == "config_shard" and rank == 1:
        config = dict(config, expert_shard={"first": 0, "count": 1})
    if error == "shard_size" and rank == 1:
        weights = dict(weights, up_proj=weights["up_proj"][:1])
    try:
        layer = ExpertParallelLayer(config, weights)
    except ValueError as e:
        return {"error": np.array(str(e))}
    if case.get("shard_weights"):
        # Again, from only this rank's shard of the expert weights.
        layer.close()
        keep = {k: (v[layer.first:layer.first + layer.count]
                    if k in ("gate_proj", "up_proj", "down_proj") else v)
                for k, v in weights.items()}
        layer = ExpertParallelLayer(config, keep)
    if error == "call":
        # Rank 1 passes a wrong x: every rank raises, and the next call works.
        try:
            layer(x[:, :-1] if rank == 1 else x)
            call_error = ""
        except (ValueError, RuntimeError) as e:
            call_error = str(e)
        y = layer(x)
        layer.close()
        return {"y": y, "call_error": np.array(call_error)}
    if case.get("torch") == "bf16":
        y = layer(torch.from_numpy(x).to(torch.bfloat16))
        assert y.dtype == torch.bfloat16
        layer.close()
        return {"y": y.float().numpy()}
    if case.get("torch"):
        with torch.no_grad():
            y = layer(torch.from_numpy(x)).numpy()
        try:
            layer(torch.from_numpy(x).requires_grad_())
            grad_error = ""
        except RuntimeError as e:
            grad_error = str(e)
        layer.close()
        return {"y": y, "grad_error": np.array(grad_error)}
    y = layer(x)
    layer.close()
    return {"y": y}


def main():
    cases = json.loads(Path(sys.argv[1]).read_text())
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    results = {}
    for name, case in cases.items():
        for key, value in run_case(case, rank, world).items():
            results[f"{name}/{key}"] = value
    np.savez(Path(sys.argv[2]) / f"rank{rank}.npz", **results)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

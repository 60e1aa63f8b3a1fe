#!/usr/bin/env python3
"""Expert parallelism's cost on one machine: the layer sharded over 2 ranks
(moe_mlir.distributed on gloo, one thread each) against the whole layer in
one process on both cores, on the same tokens. A measurement, not a test.

On one machine the ranks share its cores and memory, so sharding cannot
make the layer faster; what this shows is the overhead: tokens/s of each,
and how a sharded call's time splits into routing, the all-to-all
exchanges (which include waiting for the slower rank), the experts and the
combine. It writes its section into docs/PERFORMANCE.md (bench/run keeps it
there). Run it through bench/expert_parallel.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python_frontend"))
sys.path.insert(0, str(ROOT / "bench"))

import moe_mlir  # noqa: E402
from report import write_section  # noqa: E402
from run import SHAPES, cpu_flags, cpu_model  # noqa: E402

SECTION = "## Expert parallelism: 2 ranks against 1 process"
PARTS = ("route", "exchange", "experts", "combine")


def shape_config(short, dtype):
    label, H, F, E, k, Fs, normalize = SHAPES[short]
    return label, {"name": f"ep_{short}", "hidden_size": H, "intermediate_size": F,
                   "num_experts": E, "top_k": k, "shared_intermediate_size": Fs,
                   "normalize_top_k": normalize, "dtype": dtype}


def weights_for(config, first, count, seed=0):
    """The layer's weights with experts [first, first + count) only; each
    expert's from its own seed, so that every rank draws the same ones."""
    H, F, E = config["hidden_size"], config["intermediate_size"], config["num_experts"]
    Fs = config["shared_intermediate_size"]
    rng = np.random.default_rng(seed)
    w = {"router": rng.standard_normal((E, H), dtype=np.float32) / np.sqrt(H)}
    if Fs:
        w["shared_gate_proj"] = rng.standard_normal((Fs, H), dtype=np.float32) / np.sqrt(H)
        w["shared_up_proj"] = rng.standard_normal((Fs, H), dtype=np.float32) / np.sqrt(H)
        w["shared_down_proj"] = rng.standard_normal((H, Fs), dtype=np.float32) / np.sqrt(Fs)
    experts = {"gate_proj": [], "up_proj": [], "down_proj": []}
    for e in range(first, first + count):
        r = np.random.default_rng((seed, e))
        experts["gate_proj"].append(r.standard_normal((F, H), dtype=np.float32) / np.sqrt(H))
        experts["up_proj"].append(r.standard_normal((F, H), dtype=np.float32) / np.sqrt(H))
        experts["down_proj"].append(r.standard_normal((H, F), dtype=np.float32) / np.sqrt(F))
    w.update({key: np.stack(value) for key, value in experts.items()})
    return w


def tokens(T, H, rank):
    return np.random.default_rng((7, rank)).standard_normal((T, H), dtype=np.float32)


def worker(args):
    """One rank under torchrun: times the sharded layer per token count and
    prints one JSON line per count from rank 0."""
    import torch
    import torch.distributed as dist
    from moe_mlir.distributed import ExpertParallelLayer, shard_bounds

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    _, config = shape_config(args.shape, args.dtype)
    bounds = shard_bounds(config["num_experts"], world)
    layer = ExpertParallelLayer(config, weights_for(config, bounds[rank],
                                                    bounds[rank + 1] - bounds[rank]))
    for T in args.tokens:
        x = tokens(T, config["hidden_size"], rank)
        layer(x)  # warm-up
        calls = []
        for _ in range(args.calls):
            dist.barrier()
            start = time.perf_counter()
            layer(x)
            elapsed = time.perf_counter() - start
            # A call ends when its slowest rank does; the parts are averaged.
            # The rank that waits least in the exchange is the slower one, so
            # the least exchange time is closest to the transfers alone.
            row = torch.tensor([elapsed] + [layer.timings[p] for p in PARTS],
                               dtype=torch.float64)
            slowest = row[:1].clone()
            least = row[PARTS.index("exchange") + 1:][:1].clone()
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
            dist.all_reduce(least, op=dist.ReduceOp.MIN)
            dist.all_reduce(row, op=dist.ReduceOp.SUM)
            calls.append([float(slowest[0])] + [float(v) / world for v in row[1:]]
                         + [float(least[0])])
        if rank == 0:
            median = lambda i: statistics.median(c[i] for c in calls)  # noqa: E731
            print(json.dumps({"T": T, "call": median(0),
                              **{p: median(i + 1) for i, p in enumerate(PARTS)},
                              "least_exchange": median(len(PARTS) + 1)}),
                  flush=True)
    layer.close()
    dist.destroy_process_group()


def one_process(config, token_counts, calls, world):
    """Median seconds of the whole layer on every rank's tokens at once, on
    all of the process's threads."""
    layer = moe_mlir.compile(config)(weights_for(config, 0, config["num_experts"]))
    times = {}
    for T in token_counts:
        x = np.concatenate([tokens(T, config["hidden_size"], r) for r in range(world)])
        layer(x)
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            layer(x)
            samples.append(time.perf_counter() - start)
        times[T] = statistics.median(samples)
    layer.close()
    return times


def sharded(short, dtype, token_counts, calls, world):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={world}", __file__, "--worker", "--shapes", short,
               "--dtype", dtype, "--tokens", ",".join(map(str, token_counts)),
               "--calls", str(calls)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"bench/expert_parallel: the ranks failed:\n{proc.stderr[-4000:]}")
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {row["T"]: row for row in rows}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="olmoe,qwen3")
    p.add_argument("--dtype", default="f32", choices=("f32", "bf16"))
    p.add_argument("--tokens", default="8,128,512", help="tokens per rank")
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--output", default=str(ROOT / "docs" / "PERFORMANCE.md"),
                   help="the file whose section this writes ('' writes none)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.tokens = [int(t) for t in args.tokens.split(",")]
    if args.worker:
        args.shape = args.shapes
        return worker(args)

    world = 2
    lines = [SECTION, "",
             f"- Machine: {cpu_model()}, {os.cpu_count()} CPUs, AVX-512: "
             f"{'yes' if 'avx512f' in cpu_flags() else 'no'}; "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- Command: `bench/expert_parallel --shapes {args.shapes} --dtype {args.dtype} "
             f"--tokens {','.join(map(str, args.tokens))}`",
             f"- 1 process: the whole layer on both ranks' tokens (2·T) with "
             f"{os.environ.get('OMP_NUM_THREADS', 'all')} OpenMP threads; 2 ranks: "
             "`moe_mlir.distributed.ExpertParallelLayer` on gloo (loopback), one thread "
             "each, T tokens each. Median of "
             f"{args.calls} calls after a warm-up; a sharded call lasts until its slower "
             "rank ends. Its parts are the ranks' mean; *exchange* is the four "
             "`all_to_all_single` calls (counts, rows and weights out, results back), "
             "waiting for the other rank included; *least exchange* is the rank that "
             "waited least, closest to the transfers alone.",
             "",
             "| shape | T per rank | 1 process ms | 1 process tokens/s | 2 ranks ms "
             "| 2 ranks tokens/s | 2 ranks / 1 process | exchange ms (share) "
             "| least exchange ms (share) | route ms | experts ms | combine ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for short in args.shapes.split(","):
        label, config = shape_config(short, args.dtype)
        print(f"{label}: sharded over {world} ranks", flush=True)
        ranks = sharded(short, args.dtype, args.tokens, args.calls, world)
        print(f"{label}: one process", flush=True)
        alone = one_process(config, args.tokens, args.calls, world)
        for T in args.tokens:
            r, one = ranks[T], alone[T]
            line = (f"| {label} | {T} | {one * 1e3:.1f} | {world * T / one:.0f} "
                    f"| {r['call'] * 1e3:.1f} | {world * T / r['call']:.0f} "
                    f"| {one / r['call']:.2f} "
                    f"| {r['exchange'] * 1e3:.1f} ({r['exchange'] / r['call']:.0%}) "
                    f"| {r['least_exchange'] * 1e3:.1f} "
                    f"({r['least_exchange'] / r['call']:.0%}) "
                    f"| {r['route'] * 1e3:.1f} | {r['experts'] * 1e3:.1f} "
                    f"| {r['combine'] * 1e3:.1f} |")
            print(line, flush=True)
            lines.append(line)
    text = "\n".join(lines) + "\n"
    if args.output:
        write_section(Path(args.output), SECTION, text)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Same-process A/B of two moe-compile builds on bench/run's shapes.

Both libraries are compiled from the same config, share one set of
weights, and are called alternately (A, B, A, B, ...) after a warm-up
each, so that drift in the machine's load hits both alike. Prints a
markdown table per data type of the median forward times and their ratio
(B / A); with --output, also writes them as the "## Compiler A/B" section
of that file (docs/PERFORMANCE.md), which bench/run keeps.

    bench/ab.py --baseline OLD/moe-compile --candidate build/bin/moe-compile \\
        --shapes qwen3,olmoe --tokens 1,8,32,128,512 --dtypes f32,bf16

--dtypes takes bench/run's weight formats too (int4, mxfp4, ...): the
experts' projections in that format, f32 activations.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  bench/run.py: shapes, weights, the Layer binding
from report import write_section  # noqa: E402
from run import abi  # noqa: E402

HEADING = "## Compiler A/B"

# Parts of a layer, timed alone, by --shapes as bench/run's shapes are:
# DeepSeek-V2-Lite's shared expert with two routed experts of 16 columns.
PARTS = {
    "deepseek_shared": ("DeepSeek-V2-Lite shared expert", 2048, 16, 2, 1, 2816, False),
}
SHAPES = {**run.SHAPES, **PARTS}


def compile_with(moe_compile, config, outdir):
    os.environ["MOE_COMPILE"] = str(moe_compile)
    return abi.compile_config(config, outdir)


def measure(args, dtype, tokens):
    """Rows of the A/B table for `dtype`, printed as they come."""
    rows = []
    for key in args.shapes.split(","):
        label, H, F, E, k, Fs, norm = SHAPES[key]
        fmt = run.WEIGHT_FORMATS.get(dtype)
        act = "f32" if fmt else dtype
        config = {"name": f"ab_{key}", "hidden_size": H, "intermediate_size": F,
                  "num_experts": E, "top_k": k, "normalize_top_k": norm,
                  "dtype": act, "shared_intermediate_size": Fs}
        if fmt:
            config["expert_weights"] = fmt
        weights = run.expert_arrays(config, run.make_weights(SHAPES[key], seed=0))
        with tempfile.TemporaryDirectory() as scratch:
            layers = [run.Layer(compile_with(c, config, Path(scratch) / tag),
                                config["name"], config, weights)
                      for tag, c in (("a", args.baseline), ("b", args.candidate))]
            rng = np.random.default_rng(1)
            for T in tokens:
                x = run.encode(rng.standard_normal((T, H), dtype=np.float32), act)
                ys = [np.empty_like(x) for _ in layers]
                times = [[], []]
                for i, layer in enumerate(layers):
                    layer.forward(x, ys[i])  # warm-up
                t0 = time.perf_counter()
                layers[0].forward(x, ys[0])
                reps = max(3, min(15, int(args.budget / max(time.perf_counter() - t0, 1e-6))))
                for _ in range(reps):
                    for i, layer in enumerate(layers):
                        t0 = time.perf_counter()
                        layer.forward(x, ys[i])
                        times[i].append(time.perf_counter() - t0)
                a, b = (statistics.median(t) * 1e3 for t in times)
                rows.append(f"| {label} | {T} | {a:.2f} | {b:.2f} | {b / a:.3f} |")
                print(rows[-1], flush=True)
            for layer in layers:
                layer.close()
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, help="moe-compile A")
    p.add_argument("--candidate", required=True, help="moe-compile B")
    p.add_argument("--shapes", default=",".join(run.SHAPES),
                   help=f"of {', '.join(SHAPES)}")
    p.add_argument("--tokens", default="1,8,32,128,512,2048")
    p.add_argument("--dtypes", default="f32,bf16",
                   help="activation dtypes, or bench/run's weight formats "
                        "(with f32 activations): " + ", ".join(run.WEIGHT_FORMATS))
    p.add_argument("--budget", type=float, default=2.0,
                   help="seconds of calls per library and cell (at least 3)")
    p.add_argument("--output", type=Path, default=None,
                   help="write the tables into this file's A/B section")
    args = p.parse_args()
    tokens = [int(t) for t in args.tokens.split(",")]
    header = "| shape | T | A ms | B ms | B / A |\n|---|--:|--:|--:|--:|"
    tables = []
    for dtype in args.dtypes.split(","):
        print(f"{dtype}\n{header}", flush=True)
        tables.append(f"### {dtype}\n\n{header}\n" + "\n".join(measure(args, dtype, tokens)))
    if args.output:
        text = (f"{HEADING}\n\n"
                f"- Machine: {run.cpu_model()}, {os.cpu_count()} CPUs; "
                f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
                f"- Command: `bench/ab.py {' '.join(sys.argv[1:])}`\n"
                "- A is the baseline build, B the candidate; medians of alternating "
                "calls in one process, 2 threads (the OpenMP default here).\n\n"
                + "\n\n".join(tables) + "\n")
        write_section(args.output, HEADING, text)


if __name__ == "__main__":
    main()

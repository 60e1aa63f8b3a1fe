#!/usr/bin/env python3
"""What the rules of docs/FAMILY-RULES.md cost: one layer at GPT-OSS-20B's
shape (H = F = 2880, 32 experts, top-4) compiled plain (SiLU, no biases)
and with each family's rules, the same weights and tokens, forward timed
in one process. A measurement, not a test. It writes its section into
docs/PERFORMANCE.md (bench/run keeps it there). Run it through
bench/family_rules.
"""

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from run import Layer, cpu_flags, cpu_model, encode, fmt_ms, settle  # noqa: E402
from report import write_section  # noqa: E402
from moe_mlir import abi  # noqa: E402
from moe_mlir.reference import weight_shapes  # noqa: E402

SECTION = "## Family rules: their cost against the plain layer"
H, F, E, K = 2880, 2880, 32, 4
# name: (what it shows, the config's rule keys)
VARIANTS = {
    "plain": ("SiLU, softmax + normalize", {}),
    "gpt_oss": ("router and expert biases, clamped SwiGLU",
                {"router_bias": True, "activation": "clamped_swiglu",
                 "expert_bias": True}),
    "llama4": ("sigmoid, weights on the experts' input",
               {"scoring": "sigmoid", "normalize_top_k": False,
                "router_weight_on_input": True}),
    "jetmoe": ("output bias", {"output_bias": True}),
    "phimoe": ("sparsemixer", {"scoring": "sparsemixer", "normalize_top_k": False}),
    "dbrx": ("2-norm weights", {"normalize_p": 2.0}),
}


def weights(dtype, seed=0):
    """Every weight any variant reads, encoded in `dtype`."""
    rng = np.random.default_rng(seed)

    def normal(shape, fan_in):
        return encode(rng.standard_normal(shape, dtype=np.float32) / np.sqrt(fan_in), dtype)

    return {"router": normal((E, H), H), "router_bias": normal((E,), 1),
            "gate_proj": normal((E, F, H), H), "up_proj": normal((E, F, H), H),
            "down_proj": normal((E, H, F), F), "gate_proj_bias": normal((E, F), 1),
            "up_proj_bias": normal((E, F), 1), "down_proj_bias": normal((E, H), 1),
            "output_bias": normal((H,), 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", default="f32", choices=("f32", "bf16"))
    p.add_argument("--tokens", default="1,32,256")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--output", default=str(ROOT / "docs" / "PERFORMANCE.md"),
                   help="the file whose section this writes ('' writes none)")
    args = p.parse_args()
    tokens = [int(t) for t in args.tokens.split(",")]
    arrays = weights(args.dtype)
    rng = np.random.default_rng(1)
    xs = {T: encode(rng.standard_normal((T, H), dtype=np.float32), args.dtype)
          for T in tokens}
    # Every variant is built first, then timed in rounds that visit each in
    # turn, so that drifts of the machine fall on all of them alike.
    layers = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, (_, rules) in VARIANTS.items():
            config = {"name": f"fr_{name}", "hidden_size": H, "intermediate_size": F,
                      "num_experts": E, "top_k": K, "dtype": args.dtype, **rules}
            so = abi.compile_config(config, Path(scratch) / name)
            used = {k: v for k, v in arrays.items() if k in weight_shapes(config)}
            layers[name] = Layer(so, config["name"], config, used)
    samples = {(name, T): [] for name in VARIANTS for T in tokens}
    for T in tokens:
        y = np.empty_like(xs[T])
        for layer in layers.values():
            layer.forward(xs[T], y)
        for _ in range(args.rounds):
            for name, layer in layers.items():
                settle()
                start = time.perf_counter()
                layer.forward(xs[T], y)
                samples[name, T].append(time.perf_counter() - start)
        print(f"T={T}: " + ", ".join(
            f"{name} {fmt_ms(statistics.median(samples[name, T]))} ms"
            for name in VARIANTS), flush=True)
    for layer in layers.values():
        layer.close()
    times = {key: statistics.median(value) for key, value in samples.items()}

    lines = [SECTION, "",
             f"- Machine: {cpu_model()}, {os.cpu_count()} CPUs, AVX-512: "
             f"{'yes' if 'avx512f' in cpu_flags() else 'no'}; "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- Command: `bench/family_rules --dtype {args.dtype} --tokens {args.tokens} "
             f"--rounds {args.rounds}`",
             f"- One layer of H = F = {H}, {E} experts, top-{K} ({args.dtype}), the same "
             "weights and tokens for every variant (routing rules choose other experts, "
             "so the rows per expert differ); forward's median over "
             f"{args.rounds} rounds that call each variant in turn, after a warm-up, "
             "and its ratio to the plain layer's.",
             "",
             "| variant | rules | " + " | ".join(f"T = {T} ms (× plain)" for T in tokens)
             + " |",
             "|---|---|" + "---:|" * len(tokens)]
    for name, (what, _) in VARIANTS.items():
        cells = [f"{fmt_ms(times[name, T])} ({times[name, T] / times['plain', T]:.2f})"
                 for T in tokens]
        lines.append(f"| {name} | {what} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        write_section(Path(args.output), SECTION, text)


if __name__ == "__main__":
    main()

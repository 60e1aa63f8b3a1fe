#!/usr/bin/env python3
"""GPU benchmark of the libraries moe-compile generates for "target": "cuda",
at the CPU benchmark's model shapes (bench/run.py's SHAPES and token counts).

A measurement, not a test. For each shape and token count it times one
forward call of the generated library and, where PyTorch with CUDA is
installed, in the same process and on the same inputs:

- the Hugging Face Mixtral-style eager block (router, top-k, a loop over
  experts with index_add_), in the same dtype;
- a grouped-GEMM block on torch._grouped_mm (tokens sorted by expert, one
  grouped GEMM per projection), where this PyTorch and GPU support it.

Times are CUDA-event medians of back-to-back calls on one stream after
warm-up; the library runs through forward_async on PyTorch's current stream.
Without PyTorch the library alone is timed, with the CUDA driver
(moe_mlir.cuda) and wall-clock time around synchronous calls. It prints a
markdown report and writes it to docs/PERFORMANCE-GPU.md. On a machine
without a GPU it says so and exits with status 2, writing nothing.
"""

import argparse
import ctypes
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python_frontend"))
sys.path.insert(0, str(ROOT / "bench"))
from moe_mlir import abi  # noqa: E402
from moe_mlir.cuda import unavailable_reason  # noqa: E402
from run import DEFAULT_TOKENS, QUICK_TOKENS, SHAPES, hf_block  # noqa: E402

WARMUP = 3


def torch_cuda():
    """torch when it has CUDA, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def config_of(short, shape, dtype, arch):
    label, H, F, E, k, Fs, normalize = shape
    config = {"name": f"bench_gpu_{short}_{dtype}", "hidden_size": H,
              "intermediate_size": F, "num_experts": E, "top_k": k, "dtype": dtype,
              "normalize_top_k": normalize, "target": "cuda"}
    if Fs:
        config["shared_intermediate_size"] = Fs
    if arch:
        config["gpu_arch"] = arch
    return config


def active_flops(shape, T):
    _, H, F, _, k, Fs, _ = shape
    return 2 * T * 3 * H * (k * F + Fs)


# --------------------------------------------------------------------------
# timing


def time_cuda(torch, fn, reps):
    """Median milliseconds of `fn` on the current stream, by CUDA events."""
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_wall(fn, reps):
    """Median milliseconds of the synchronous `fn`."""
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


# --------------------------------------------------------------------------
# the layer's weights, on the device


def torch_weights(torch, shape, dtype, seed):
    _, H, F, E, _, Fs, _ = shape
    gen = torch.Generator(device="cuda").manual_seed(seed)
    dt = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[dtype]

    def rand(*size, fan_in):
        return (torch.randn(*size, generator=gen, device="cuda", dtype=torch.float32)
                / fan_in ** 0.5).to(dt)

    w = {"router": rand(E, H, fan_in=H), "gate_proj": rand(E, F, H, fan_in=H),
         "up_proj": rand(E, F, H, fan_in=H), "down_proj": rand(E, H, F, fan_in=F)}
    if Fs:
        w.update(shared_gate_proj=rand(Fs, H, fan_in=H), shared_up_proj=rand(Fs, H, fan_in=H),
                 shared_down_proj=rand(H, Fs, fan_in=Fs))
    return w, dt


def grouped_mm(torch, shape, w):
    """Tokens sorted by expert and one torch._grouped_mm per projection; None
    where this PyTorch has no _grouped_mm."""
    if not hasattr(torch, "_grouped_mm"):
        return None
    import torch.nn.functional as Fn
    _, _, _, E, k, Fs, normalize = shape
    # _grouped_mm multiplies [rows, K] by [E, K, N]: weights transposed once.
    gate_t = w["gate_proj"].transpose(1, 2).contiguous()
    up_t = w["up_proj"].transpose(1, 2).contiguous()
    down_t = w["down_proj"].transpose(1, 2).contiguous()

    @torch.no_grad()
    def forward(x):
        T = x.shape[0]
        logits = Fn.linear(x, w["router"])
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
        rw, sel = torch.topk(probs, k, dim=-1)
        if normalize:
            rw = rw / rw.sum(dim=-1, keepdim=True)
        flat = sel.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=E)
        offs = torch.cumsum(counts, 0).to(torch.int32)
        rows = x[order // k]
        hidden = Fn.silu(torch._grouped_mm(rows, gate_t, offs=offs)) * \
            torch._grouped_mm(rows, up_t, offs=offs)
        down = torch._grouped_mm(hidden, down_t, offs=offs)
        weighted = down * rw.reshape(-1)[order, None].to(down.dtype)
        out = torch.zeros_like(x).index_add_(0, order // k, weighted)
        if Fs:
            out += Fn.linear(Fn.silu(Fn.linear(x, w["shared_gate_proj"]))
                             * Fn.linear(x, w["shared_up_proj"]), w["shared_down_proj"])
        return out

    try:
        forward(torch.zeros(8, w["router"].shape[1], device="cuda", dtype=w["router"].dtype))
    except (RuntimeError, NotImplementedError) as e:  # GPU or dtype not supported
        print(f"bench/gpu: torch._grouped_mm unavailable: {e}", file=sys.stderr)
        return None
    return forward


# --------------------------------------------------------------------------
# the generated library


class TorchLayer:
    """The library on PyTorch's tensors and current stream."""

    def __init__(self, torch, so, config, w):
        self.torch = torch
        self.lib = abi.Library(so, config["name"], config)
        self.w = w
        struct = self.lib.Weights(**{key: t.data_ptr() for key, t in w.items()})
        handle = ctypes.c_void_p()
        self.lib.check(self.lib.c_create(ctypes.byref(struct), ctypes.byref(handle)))
        self.handle = handle.value

    def __call__(self, x, y):
        stream = self.torch.cuda.current_stream().cuda_stream
        self.lib.check(self.lib.c_forward_async(self.handle, x.data_ptr(), x.shape[0],
                                                y.data_ptr(), stream))

    def close(self):
        self.lib.c_destroy(self.handle)


def library_alone(so, config, T, reps, seed):
    """Without PyTorch: weights from numpy through the driver, synchronous
    forward calls timed on the host."""
    from moe_mlir.reference import random_input, random_weights
    lib = abi.Library(so, config["name"], config)
    with lib.create(random_weights(config, seed)) as ctx:
        from moe_mlir.cuda import driver
        cuda = driver()
        x = cuda.upload(abi.encode(random_input(T, config["hidden_size"], seed), config["dtype"]))
        y = cuda.empty(x.shape, x.dtype)
        return time_wall(lambda: lib.check(lib.c_forward(ctx.handle, x.ctypes_pointer, T,
                                                         y.ctypes_pointer)), reps)


# --------------------------------------------------------------------------
# report


def fmt(ms):
    return "n/a" if ms is None else f"{ms:.3f}"


def tflops(flops, ms):
    return "n/a" if ms is None else f"{flops / ms / 1e9:.1f}"


def report(results, args, device, torch):
    lines = ["# GPU performance", "",
             f"Measured by `bench/gpu {' '.join(args.argv)}` on "
             f"{datetime.date.today().isoformat()}: {device}, "
             + (f"PyTorch {torch.__version__} (CUDA {torch.version.cuda})." if torch
                else "no PyTorch (the library alone, wall-clock time)."),
             "", f"Data type {args.dtype}; medians of {args.reps} calls after {WARMUP} "
             "warm-up calls; TFLOP/s counts the active FLOPs (routed top-k experts and "
             "the shared expert), 2·T·3·H·(k·F + Fs).", ""]
    for short, rows in results.items():
        label = SHAPES[short][0]
        lines += [f"## {label}", "",
                  "| tokens | moe-mlir ms | TFLOP/s | HF eager ms | TFLOP/s | "
                  "_grouped_mm ms | TFLOP/s | vs eager | vs grouped | max diff |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for T, (ours, eager, grouped, difference) in rows.items():
            flops = active_flops(SHAPES[short], T)
            ratio = (lambda other: "n/a" if other is None or ours is None
                     else f"{other / ours:.2f}x")
            lines.append(f"| {T} | {fmt(ours)} | {tflops(flops, ours)} | {fmt(eager)} | "
                         f"{tflops(flops, eager)} | {fmt(grouped)} | {tflops(flops, grouped)} "
                         f"| {ratio(eager)} | {ratio(grouped)} | "
                         f"{'n/a' if difference is None else f'{difference:.1e}'} |")
        lines.append("")
    lines += ["`vs eager` and `vs grouped` are the baseline's time over moe-mlir's: "
              "above 1 means moe-mlir is faster. `max diff` is max|y − y_eager| over "
              "max(1, max|y_eager|), a check that both computed the same layer.", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer token counts")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--tokens", help="comma-separated token counts")
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "f16", "f32"))
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--gpu-arch", help="gpu_arch of the compiled layers "
                        "(default: the config default)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "PERFORMANCE-GPU.md"))
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    tokens = ([int(t) for t in args.tokens.split(",")] if args.tokens
              else QUICK_TOKENS if args.quick else DEFAULT_TOKENS)

    reason = unavailable_reason()
    if reason:
        print(f"bench/gpu: no GPU to measure on ({reason}); nothing written",
              file=sys.stderr)
        return 2
    torch = torch_cuda()
    device = torch.cuda.get_device_name() if torch else __import__(
        "moe_mlir.cuda", fromlist=["driver"]).driver().name()
    if not torch:
        print("bench/gpu: no PyTorch with CUDA: timing the library alone", file=sys.stderr)

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as scratch:
        for short in args.shapes.split(","):
            shape = SHAPES[short]
            config = config_of(short, shape, args.dtype, args.gpu_arch)
            so = abi.compile_config(config, Path(scratch) / short)
            rows = results[short] = {}
            if torch:
                w, dt = torch_weights(torch, shape, args.dtype, seed=1)
                layer = TorchLayer(torch, so, config, w)
                eager, grouped = hf_block(torch, shape, w), grouped_mm(torch, shape, w)
            for T in tokens:
                print(f"bench/gpu: {shape[0]}, {T} tokens", file=sys.stderr)
                if not torch:
                    rows[T] = (library_alone(so, config, T, args.reps, seed=T), None, None,
                               None)
                    continue
                x = torch.randn(T, shape[1], device="cuda", dtype=torch.float32).to(dt)
                y = torch.empty_like(x)
                # The same layer both ways, before timing either.
                layer(x, y)
                reference = eager(x).float()
                difference = float((y.float() - reference).abs().max()
                                   / reference.abs().max().clamp(min=1))
                ours = time_cuda(torch, lambda: layer(x, y), args.reps)
                theirs = time_cuda(torch, lambda: eager(x), args.reps)
                fast = time_cuda(torch, lambda: grouped(x), args.reps) if grouped else None
                rows[T] = (ours, theirs, fast, difference)
            if torch:
                layer.close()
                del w, layer
                torch.cuda.empty_cache()
    text = report(results, args, device, torch)
    print(text)
    Path(args.output).write_text(text)
    print(f"\nwrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

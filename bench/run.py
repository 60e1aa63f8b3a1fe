#!/usr/bin/env python3
"""CPU benchmark of the libraries moe-compile generates, at real model shapes.

A measurement, not a test. For each shape and token count it times the
library's forward call and puts beside it, measured in the same process:

- the compute limit: Debian's OpenBLAS (cblas_sgemm) doing the same active
  FLOPs on tokens already grouped by expert (routing, gather, activation and
  combine for free);
- the memory limit: a STREAM-style triad (bench/triad.c), against which the
  decode token counts' weight bandwidth is compared;
- the same layer compiled with every fusion off, and run on 1 thread;
- PyTorch's eager HF-style loop over experts, where torch is installed.

It prints one markdown table per section and writes the same markdown to
docs/PERFORMANCE.md (docs/PERFORMANCE-<dtype>.md for another --dtype). A
--dtype of WEIGHT_FORMATS keeps f32 activations and stores the experts'
projections in that format (docs/QUANTIZATION.md); decode is then judged on
the bytes streamed: packed weights plus scales and zero points. Run it
through bench/run, which installs what it needs.
"""

import argparse
import ctypes
import datetime
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OPENBLAS = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"

# name: (label, hidden H, intermediate F, experts E, top k, shared Fs, normalize_top_k)
SHAPES = {
    "mixtral": ("Mixtral-8x7B", 4096, 14336, 8, 2, 0, True),
    "qwen3": ("Qwen3-30B-A3B", 2048, 768, 128, 8, 0, True),
    "deepseek": ("DeepSeek-V2-Lite", 2048, 1408, 64, 6, 2816, False),
    "olmoe": ("OLMoE-1B-7B", 2048, 1024, 64, 8, 0, False),
}
DEFAULT_TOKENS = [1, 8, 32, 128, 512]
QUICK_TOKENS = [1, 32, 128]
DECODE_MAX = 32  # token counts up to this are "decode" (memory bound)
PREFILL_MIN = 128  # token counts from this are "prefill" (compute bound)
ABLATION_TOKENS = 128
THREAD_TOKENS = (1, 128)
DISABLE_ALL = "gate,gather,activation,combine"
BYTES = {"f32": 4, "bf16": 2, "f16": 2}
# --dtype values that store the experts' projections in another format,
# beside f32 activations: their "expert_weights" (docs/QUANTIZATION.md).
WEIGHT_FORMATS = {
    "bf16-weights": {"format": "bf16"},
    "f16-weights": {"format": "f16"},
    "int8": {"format": "int8"},
    "int4": {"format": "int4", "group_size": 128},
    "int4-zp": {"format": "int4", "group_size": 128, "zero_points": True},
    "int4-act-order": {"format": "int4", "group_size": 128, "zero_points": True,
                       "act_order": True},
    "fp8_e4m3": {"format": "fp8_e4m3", "group_size": 128},
    "mxfp4": {"format": "mxfp4"},
}
PREFILL_TARGET = 0.9  # ours / OpenBLAS
DECODE_TARGET = 0.8  # weight bandwidth / triad
PEAK_SGEMM_SIZE = 2048  # the decode roofline's compute limit: an n³ sgemm
THREADS_TARGET_PER_THREAD = 0.9  # speedup >= 0.9 x threads (1.8 x on 2)


sys.path.insert(0, str(ROOT / "python_frontend"))
from moe_mlir import abi  # noqa: E402  the generated libraries' ctypes binding
from report import kept_sections  # noqa: E402


class Layer:
    """A compiled library plus a live context; weights already encoded."""

    def __init__(self, so, name, config, arrays):
        self.lib = abi.Library(so, name, config)
        self.arrays = arrays  # the context keeps pointers into these
        struct = self.lib.make_struct(arrays)
        handle = ctypes.c_void_p()
        self.lib.check(self.lib.c_create(ctypes.byref(struct), ctypes.byref(handle)))
        self.handle = handle.value

    def forward(self, x, y):
        self.lib.check(self.lib.c_forward(self.handle, x.ctypes.data, x.shape[0],
                                          y.ctypes.data))

    def route(self, x):
        T = x.shape[0]
        k = self.lib.width
        ids = np.empty((T, k), dtype=np.int32)
        w = np.empty((T, k), dtype=np.float32)
        self.lib.check(self.lib.c_route(self.handle, x.ctypes.data, T, ids.ctypes.data,
                                        w.ctypes.data))
        return ids, w

    def close(self):
        if self.handle is not None:
            self.lib.c_destroy(self.handle)
            self.handle = None


# --------------------------------------------------------------------------
# data


def uniform(rng, shape, std):
    """Uniform values of mean 0 and standard deviation `std`, as float32:
    several times faster than a normal draw for Mixtral's 5.6 GB."""
    a = rng.random(shape, dtype=np.float32)
    a -= np.float32(0.5)
    a *= np.float32(std * 12 ** 0.5)
    return a


def encode(a, dtype):
    """`a` (float32) in the library's storage type, converted in slices so
    that no temporary is larger than one expert."""
    if dtype == "f32":
        return a
    if dtype == "f16":
        return a.astype(np.float16)
    out = np.empty(a.shape, dtype=np.uint16)
    flat_in = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)
    flat_out = out.reshape(flat_in.shape)
    for i in range(flat_in.shape[0]):
        bits = flat_in[i].view(np.uint32)
        flat_out[i] = (bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) >> 16
    return out


def decode(a, dtype):
    """A library's storage type back to float32."""
    if dtype == "bf16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def make_weights(shape, seed):
    _, H, F, E, _, Fs, _ = shape
    rng = np.random.default_rng(seed)
    w = {
        "router": uniform(rng, (E, H), H ** -0.5),
        "gate_proj": uniform(rng, (E, F, H), H ** -0.5),
        "up_proj": uniform(rng, (E, F, H), H ** -0.5),
        "down_proj": uniform(rng, (E, H, F), F ** -0.5),
    }
    if Fs:
        w["shared_gate_proj"] = uniform(rng, (Fs, H), H ** -0.5)
        w["shared_up_proj"] = uniform(rng, (Fs, H), H ** -0.5)
        w["shared_down_proj"] = uniform(rng, (H, Fs), Fs ** -0.5)
    return w


# --------------------------------------------------------------------------
# timing


def weight_bytes(r, T):
    """Bytes of the experts that received a token at T, plus the shared one:
    what the library's arrays hold (packed weights, scales, zero points)."""
    return r["active"][T] * r["expert_bytes"] + r["shared_bytes"]


def expert_arrays(config, weights):
    """The library's arrays for `weights` (float32): encoded in the
    activations' dtype, or with a weight format, each expert's projections
    rounded to it (moe_mlir.quantize) one expert at a time."""
    from moe_mlir.quantize import quantize_weights
    fmt = config.get("expert_weights")
    if fmt is None:
        return {key: encode(v, config["dtype"]) for key, v in weights.items()}
    out = {"router": weights["router"]}
    routed = [quantize_weights(config, {p: weights[p][e] for p in
                                        ("gate_proj", "up_proj", "down_proj")})
              for e in range(weights["up_proj"].shape[0])]
    for key in list(routed[0]):
        out[key] = np.stack([part[key] for part in routed])
        for part in routed:
            del part[key]
    shared = {key: v for key, v in weights.items() if key.startswith("shared_")}
    out.update(quantize_weights(config, shared))
    from moe_mlir.reference import weight_types
    for key, kind in weight_types(config).items():
        if isinstance(kind, str):
            out[key] = encode(out[key], kind)
    return out


def array_bytes(arrays, shared):
    """Bytes of one routed expert's arrays, or of the shared expert's."""
    total = 0
    for key, a in arrays.items():
        if key == "router" or key.startswith("shared_") != shared:
            continue
        total += a.nbytes if shared else a.nbytes // a.shape[0]
    return total


def time_calls(fn, budget, min_reps, max_reps=15):
    """Warm up once, then the median of several calls: as many as fit in
    `budget` seconds, at least `min_reps`. Returns (median seconds, reps)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    reps = max(min_reps, min(max_reps, int(budget / max(first, 1e-6))))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), reps


def settle():
    """Lets the idle OpenMP / OpenBLAS threads of the phase before stop
    spinning, so that they do not take cores from the next phase."""
    time.sleep(0.3)


# --------------------------------------------------------------------------
# OpenBLAS, OpenMP, triad


class OpenBLAS:
    RowMajor, NoTrans, Trans = 101, 111, 112

    def __init__(self, threads):
        self.lib = ctypes.CDLL(OPENBLAS)
        f = self.lib.cblas_sgemm
        i, fl, p = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
        f.argtypes = [i, i, i, i, i, i, fl, p, i, p, i, fl, p, i]
        f.restype = None
        self.sgemm = f
        self.lib.openblas_set_num_threads.argtypes = [ctypes.c_int]
        self.lib.openblas_set_num_threads(threads)
        self.lib.openblas_get_corename.restype = ctypes.c_char_p
        self.lib.openblas_get_config.restype = ctypes.c_char_p
        self.corename = self.lib.openblas_get_corename().decode()
        self.config = self.lib.openblas_get_config().decode().strip()

    def gemm_bt(self, M, N, K, A, B, C):
        """C[M,N] = A[M,K] · B[N,K]^T, row-major (B in nn.Linear layout)."""
        self.sgemm(self.RowMajor, self.NoTrans, self.Trans, M, N, K, 1.0, A, K, B, K,
                   0.0, C, N)

    def peak_gflops(self, n=PEAK_SGEMM_SIZE, reps=3):
        """The best rate of an n³ sgemm: the decode roofline's compute limit,
        whatever token counts the run measures."""
        a, b, c = (np.ones((n, n), dtype=np.float32) for _ in range(3))
        self.gemm_bt(n, n, n, a.ctypes.data, b.ctypes.data, c.ctypes.data)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            self.gemm_bt(n, n, n, a.ctypes.data, b.ctypes.data, c.ctypes.data)
            best = min(best, time.perf_counter() - t0)
        return 2 * n ** 3 / best / 1e9


class GroupedGEMMs:
    """The active FLOPs of one forward call as OpenBLAS GEMMs on tokens that
    are already grouped by expert, in preallocated contiguous buffers."""

    def __init__(self, blas, shape, weights, counts, T):
        _, H, F, E, _, Fs, _ = shape
        self.blas, self.H, self.F, self.Fs, self.T = blas, H, F, Fs, T
        rows = int(counts.sum())
        self.x = np.ones((max(rows, T), H), dtype=np.float32)
        self.g = np.ones((max(rows, 1), max(F, Fs)), dtype=np.float32)
        self.u = np.ones_like(self.g)
        self.y = np.empty((max(rows, T), H), dtype=np.float32)
        self.w = weights
        self.plan = []  # (expert, first row, rows)
        offset = 0
        for e in range(E):
            n = int(counts[e])
            if n:
                self.plan.append((e, offset, n))
                offset += n
        if Fs:  # the shared expert's intermediate may be wider than a routed one's
            self.gs = np.ones((T, Fs), dtype=np.float32)
            self.us = np.ones_like(self.gs)

    def __call__(self):
        H, F, blas = self.H, self.F, self.blas
        wg, wu, wd = self.w["gate_proj"], self.w["up_proj"], self.w["down_proj"]
        xs, gs, us, ys = (a.ctypes.data for a in (self.x, self.g, self.u, self.y))
        for e, r, n in self.plan:
            x = xs + r * H * 4
            blas.gemm_bt(n, F, H, x, wg[e].ctypes.data, gs + r * F * 4)
            blas.gemm_bt(n, F, H, x, wu[e].ctypes.data, us + r * F * 4)
            blas.gemm_bt(n, H, F, gs + r * F * 4, wd[e].ctypes.data, ys + r * H * 4)
        if self.Fs:
            T, Fs = self.T, self.Fs
            blas.gemm_bt(T, Fs, H, xs, self.w["shared_gate_proj"].ctypes.data,
                         self.gs.ctypes.data)
            blas.gemm_bt(T, Fs, H, xs, self.w["shared_up_proj"].ctypes.data,
                         self.us.ctypes.data)
            blas.gemm_bt(T, H, Fs, self.gs.ctypes.data,
                         self.w["shared_down_proj"].ctypes.data, ys)


def openmp_runtime():
    """libomp.so.5, as already loaded by a generated library."""
    omp = ctypes.CDLL("libomp.so.5")
    omp.omp_set_num_threads.argtypes = [ctypes.c_int]
    omp.omp_set_num_threads.restype = None
    return omp


def run_triad(scratch, threads, reps):
    exe = Path(scratch) / "triad"
    if not exe.exists():
        subprocess.run(["clang-22", "-O3", "-march=native", "-fopenmp",
                        str(ROOT / "bench" / "triad.c"), "-o", str(exe)], check=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([str(exe), str(threads), str(reps)], check=True,
                         capture_output=True, text=True, env=env).stdout.split()
    fields = dict(zip(out[0::2], out[1::2]))
    return float(fields["best_GBps"]), float(fields["median_GBps"])


# --------------------------------------------------------------------------
# PyTorch eager (HF Mixtral-style loop over experts)


def hf_block(torch, shape, w):
    """Hugging Face's Mixtral sparse MoE block, eager, over the weight
    tensors `w` (SPEC §4 names): a function of x. bench/gpu uses it too."""
    import torch.nn.functional as Fn
    _, H, F, E, k, Fs, normalize = shape

    def mlp(v, g, u, d):
        return Fn.linear(Fn.silu(Fn.linear(v, g)) * Fn.linear(v, u), d)

    @torch.no_grad()
    def forward(x):
        logits = Fn.linear(x, w["router"])
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
        rw, sel = torch.topk(probs, k, dim=-1)
        if normalize:
            rw = rw / rw.sum(dim=-1, keepdim=True)
        rw = rw.to(x.dtype)
        out = torch.zeros_like(x)
        mask = Fn.one_hot(sel, num_classes=E).permute(2, 1, 0)
        for e in range(E):
            idx, top = torch.where(mask[e])
            if top.numel() == 0:
                continue
            cur = mlp(x[top], w["gate_proj"][e], w["up_proj"][e], w["down_proj"][e])
            out.index_add_(0, top, cur * rw[top, idx, None])
        if Fs:
            out += mlp(x, w["shared_gate_proj"], w["shared_up_proj"],
                       w["shared_down_proj"])
        return out

    return forward


def torch_eager(shape, weights, x, threads, budget, min_reps):
    import torch
    torch.set_num_threads(threads)
    w = {key: torch.from_numpy(v) for key, v in weights.items()}
    xt = torch.from_numpy(x)
    forward = hf_block(torch, shape, w)
    return time_calls(lambda: forward(xt), budget, min_reps)[0]


# --------------------------------------------------------------------------
# machine description


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def physical_cores():
    try:
        out = subprocess.run(["lscpu", "-p=CORE,SOCKET"], capture_output=True,
                             text=True).stdout
        return len({line for line in out.splitlines() if not line.startswith("#")})
    except OSError:
        return os.cpu_count()


def cpu_seconds_busy():
    """Seconds of CPU time every process spent so far, and seconds stolen by
    the hypervisor (from /proc/stat)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    steal = fields[7] if len(fields) > 7 else 0
    return busy / hz, steal / hz


def own_cpu_seconds():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# --------------------------------------------------------------------------
# markdown


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "--:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


class Report:
    def __init__(self):
        self.parts = []

    def add(self, text=""):
        print(text, flush=True)
        self.parts.append(text)

    def text(self):
        return "\n".join(self.parts).rstrip() + "\n"


def fmt_ms(s):
    ms = s * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


def met(ok):
    return "met" if ok else "not met"


# --------------------------------------------------------------------------


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"a 2-3 minute subset: token counts {QUICK_TOKENS}, fewer calls")
    p.add_argument("--shapes", default=",".join(SHAPES),
                   help="comma-separated subset of " + ", ".join(SHAPES))
    p.add_argument("--tokens", default=None,
                   help=f"comma-separated token counts (default {DEFAULT_TOKENS})")
    p.add_argument("--dtype", choices=["f32", "bf16"] + list(WEIGHT_FORMATS),
                   default="f32",
                   help="the activations' dtype, or a weight format with f32 "
                        "activations: " + ", ".join(WEIGHT_FORMATS))
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every measurement (default: OMP_NUM_THREADS, "
                        "else every CPU)")
    p.add_argument("--no-ggml", action="store_true",
                   help="skip llama.cpp's ggml (built from the llama-cpp-python sdist)")
    p.add_argument("--output", default=None,
                   help="markdown file to write (default docs/PERFORMANCE.md, "
                        "docs/PERFORMANCE-bf16.md for bf16; '' writes none)")
    args = p.parse_args()
    args.act = "f32" if args.dtype in WEIGHT_FORMATS else args.dtype
    if args.output is None:
        suffix = "" if args.dtype == "f32" else "-" + args.dtype
        args.output = str(ROOT / "docs" / f"PERFORMANCE{suffix}.md")
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    for s in args.shapes:
        if s not in SHAPES:
            p.error(f"unknown shape {s!r}; choose from {', '.join(SHAPES)}")
    if args.tokens:
        args.tokens = sorted({int(t) for t in args.tokens.split(",") if t.strip()})
        if not args.tokens or min(args.tokens) < 1:
            p.error("--tokens needs positive token counts")
    else:
        args.tokens = QUICK_TOKENS if args.quick else DEFAULT_TOKENS
    if args.threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0]
        args.threads = int(env) if env.isdigit() and int(env) > 0 else os.cpu_count()
    if args.threads < 1:
        p.error("--threads must be positive")
    return args


def main():
    args = parse_args()
    started = time.time()
    busy0, steal0 = cpu_seconds_busy()
    own0 = own_cpu_seconds()
    threads = args.threads
    budget, min_reps = (0.6, 2) if args.quick else (2.0, 3)
    if os.environ.get("MOE_BENCH_WRAPPER"):
        command = "bench/run" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    else:
        command = shlex.join(["python3", "bench/run.py", *sys.argv[1:]])

    # OpenBLAS reads OPENBLAS_CORETYPE when it is loaded.
    flags = cpu_flags()
    if "avx512f" in flags:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
        coretype_note = ("The CPU has AVX-512 (avx512f): `OPENBLAS_CORETYPE=SkylakeX` was set "
                         "before loading OpenBLAS, so that Debian's OpenBLAS 0.3.21 uses its "
                         "AVX-512 kernels instead of falling back to its AVX2 (Haswell) ones "
                         "on CPUs it does not recognise (Zen 5), which would halve the "
                         "compute limit.")
    else:
        coretype_note = ("The CPU has no AVX-512 (no avx512f in /proc/cpuinfo): "
                         "`OPENBLAS_CORETYPE` was not set; OpenBLAS picks its own kernels.")
    if not Path(OPENBLAS).exists():
        sys.exit(f"bench: {OPENBLAS} is missing (apt-get install libopenblas-dev)")
    blas = OpenBLAS(threads)
    sgemm_peak = blas.peak_gflops()

    try:
        import torch  # noqa: F401
        have_torch = True
        torch_note = f"torch {torch.__version__}"
    except ImportError:
        have_torch = False
        torch_note = "torch not installed: skipped"
    ggml_note = None
    if args.no_ggml:
        ggml_note = "skipped (--no-ggml)"
    else:
        import ggml_peer as ggml
        try:
            print("building llama.cpp's ggml (once) ...", file=sys.stderr, flush=True)
            ggml.tool()
        except (OSError, subprocess.CalledProcessError) as e:
            ggml_note = f"not built: {e}"

    model = cpu_model()
    cores = physical_cores()
    report = Report()
    report.add("# Performance of the generated CPU libraries")
    report.add()
    report.add(f"- Machine: {model}, {cores} cores ({os.cpu_count()} CPUs), "
               f"AVX-512: {'yes' if 'avx512f' in flags else 'no'}")
    report.add(f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; "
               f"load average at the start {os.getloadavg()[0]:.2f} "
               "(other processes' share of the run is in the summary)")
    report.add(f"- Command: `{command}`")
    report.add(f"- Threads: {threads} for every measurement except the 1-thread column "
               f"(OpenMP `omp_set_num_threads` for the libraries, "
               f"`openblas_set_num_threads` for OpenBLAS)")
    report.add(f"- Data type: {args.dtype}"
               + ("" if args.dtype == "f32" else
                  (f" expert weights ({json.dumps(WEIGHT_FORMATS[args.dtype])}) with f32 "
                   "activations" if args.dtype in WEIGHT_FORMATS else "")
                  + " for the libraries; the OpenBLAS column is f32 `cblas_sgemm` on the "
                  "same FLOPs (weight bandwidth counts the bytes the library's arrays "
                  "hold: packed weights, scales and zero points)"))
    report.add(f"- OpenBLAS: `{OPENBLAS}`, core `{blas.corename}` ({blas.config}). "
               + coretype_note)
    report.add(f"- Shapes: {', '.join(SHAPES[s][0] for s in args.shapes)}; token counts "
               f"{', '.join(map(str, args.tokens))}"
               + ("; `--quick`: fewer calls per measurement" if args.quick else ""))
    report.add()
    report.add("## How to read this")
    report.add()
    report.add(
        "Every number below was measured by this one run, in one process (the triad in a "
        "subprocess), so compare ratios rather than absolute figures across machines. "
        "Times are the median of several forward calls after one warm-up call. "
        "*Active GFLOP/s* counts only the work the routing selects: "
        "2·T·k·3·H·F (+ 2·T·3·H·Fs for shared experts) per call, gated SiLU experts, "
        "softmax routing. The *OpenBLAS* column is the compute limit: `cblas_sgemm` doing "
        "exactly those FLOPs on tokens already grouped by expert (the library's own "
        "routing decides how many rows each expert gets; routing, gather, activation and "
        "combine cost it nothing). *ours/OpenBLAS* ≥ "
        f"{PREFILL_TARGET} is the target for prefill (T ≥ {PREFILL_MIN}). For decode "
        f"(T ≤ {DECODE_MAX}) the limit is memory: *weight GB/s* is the bytes of the "
        "distinct experts that received a token (plus the shared expert) divided by the "
        "call's time, compared with the STREAM-style triad's best rate (3 arrays of "
        f"traffic per pass); the target is ≥ {DECODE_TARGET} of it. Weight bandwidth can "
        "exceed the triad, which counts neither write-allocate traffic nor the "
        "read-only streams a forward call mostly does. The ablation compiles the same "
        f"layer with `--disable-fusion={DISABLE_ALL}`; the thread table runs the fused "
        f"library on 1 thread and on {threads} (target speedup ≥ "
        f"{THREADS_TARGET_PER_THREAD * threads:.1f}×).")
    report.add()

    scratch_dir = tempfile.TemporaryDirectory(prefix="moe-bench-")
    scratch = scratch_dir.name

    # Memory limit: measured first (nothing else allocated yet) and again
    # at the end; the limit is the best of both. A triad run beside each
    # decode call would not judge it more steadily: over 14 and 16 such
    # pairs (Qwen3 at T = 8, OLMoE at T = 32) the call's rate followed the
    # triad's only loosely (correlation 0.5-0.7), and their ratio varied as
    # much as the call's time (coefficient of variation 0.12-0.14 against
    # 0.09-0.13).
    triad_reps = 5 if args.quick else 10
    triad_threads = sorted({1, threads})
    triad_runs = [("start", n, *run_triad(scratch, n, triad_reps)) for n in triad_threads]

    omp = None
    results = {}  # shape -> dict of measurements
    for short in args.shapes:
        shape = SHAPES[short]
        label, H, F, E, k, Fs, normalize = shape
        config = {"name": f"bench_{short}", "hidden_size": H, "intermediate_size": F,
                  "num_experts": E, "top_k": k, "dtype": args.act,
                  "activation": "silu", "gated": True, "scoring": "softmax",
                  "normalize_top_k": normalize}
        if args.dtype in WEIGHT_FORMATS:
            config["expert_weights"] = WEIGHT_FORMATS[args.dtype]
        if Fs:
            config["shared_intermediate_size"] = Fs
        print(f"\n### {label}: compiling, generating weights ...", file=sys.stderr,
              flush=True)
        t0 = time.time()
        so = abi.compile_config(config, Path(scratch) / short)
        so_unfused = abi.compile_config(config, Path(scratch) / (short + "_unfused"),
                                        extra_args=[f"--disable-fusion={DISABLE_ALL}"])
        weights = make_weights(shape, seed=0)
        encoded = expert_arrays(config, weights)
        fused = Layer(so, config["name"], config, encoded)
        unfused = Layer(so_unfused, config["name"], config, encoded)
        if omp is None:
            omp = openmp_runtime()
        print(f"    ready in {time.time() - t0:.1f} s", file=sys.stderr, flush=True)

        rng = np.random.default_rng(1)
        xs, ys, counts, active = {}, {}, {}, {}
        for T in args.tokens:
            x = rng.standard_normal((T, H), dtype=np.float32)
            xs[T] = encode(x, args.act)
            ys[T] = np.empty_like(xs[T])
            ids, _ = fused.route(xs[T])
            valid = ids[ids >= 0]
            counts[T] = np.bincount(valid, minlength=E)
            active[T] = int((counts[T] > 0).sum())

        flops = {T: 2 * T * 3 * H * (k * F + Fs) for T in args.tokens}
        r = results[short] = {"shape": shape, "flops": flops, "active": active,
                              "expert_bytes": array_bytes(encoded, shared=False),
                              "shared_bytes": array_bytes(encoded, shared=True)}

        # Ours on `threads` threads and OpenBLAS on the same FLOPs, one token
        # count after the other so that both see the machine in the same state.
        omp.omp_set_num_threads(threads)
        r["ours"], r["blas"] = {}, {}
        for T in args.tokens:
            r["ours"][T] = time_calls(lambda: fused.forward(xs[T], ys[T]), budget,
                                      min_reps)
            settle()
            gemms = GroupedGEMMs(blas, shape, weights, counts[T], T)
            r["blas"][T] = time_calls(gemms, budget, min_reps)
            del gemms
            settle()
            print(f"    T={T}: ours {fmt_ms(r['ours'][T][0])} ms, OpenBLAS "
                  f"{fmt_ms(r['blas'][T][0])} ms", file=sys.stderr, flush=True)

        # Fusion ablation, fused and unfused back to back.
        Ta = ABLATION_TOKENS
        xa = encode(np.random.default_rng(2).standard_normal((Ta, H), dtype=np.float32),
                    args.act)
        ya, yb = np.empty_like(xa), np.empty_like(xa)
        t_fused = time_calls(lambda: fused.forward(xa, ya), budget, min_reps)
        t_unfused = time_calls(lambda: unfused.forward(xa, yb), budget, min_reps)
        diff = float(np.max(np.abs(decode(ya, args.act) - decode(yb, args.act))))
        r["ablation"] = (Ta, t_fused, t_unfused, diff)

        # 1 thread against `threads`.
        r["threads"] = {}
        for T in THREAD_TOKENS:
            xt = encode(np.random.default_rng(3).standard_normal((T, H), dtype=np.float32),
                        args.act)
            yt = np.empty_like(xt)
            omp.omp_set_num_threads(threads)
            t_n = time_calls(lambda: fused.forward(xt, yt), budget, min_reps)[0]
            if threads != 1:
                settle()
                omp.omp_set_num_threads(1)
                t_1 = time_calls(lambda: fused.forward(xt, yt), budget, min_reps)[0]
                omp.omp_set_num_threads(threads)
                settle()
            else:
                t_1 = t_n
            r["threads"][T] = (t_1, t_n)

        # llama.cpp's ggml: its MoE block in each weight type.
        r["ggml"] = {}
        if ggml_note is None:
            for T in args.tokens:
                for kind in ggml.TYPES:
                    r["ggml"][(T, kind)] = ggml.time_block(shape, T, kind, threads,
                                                           min_reps + 2)
                    settle()
                print(f"    T={T}: ggml " + ", ".join(
                    f"{kind} {fmt_ms(r['ggml'][(T, kind)][0])} ms" for kind in ggml.TYPES),
                    file=sys.stderr, flush=True)

        # PyTorch eager.
        r["torch"] = {}
        if have_torch and args.dtype == "f32":
            for T in args.tokens:
                r["torch"][T] = torch_eager(shape, weights, decode(xs[T], args.act),
                                            threads, budget, min_reps)

        fused.close()
        unfused.close()
        del fused, unfused, weights, encoded, xs, ys
        gc.collect()
        print(f"    {label} done in {time.time() - t0:.1f} s", file=sys.stderr, flush=True)

    triad_runs += [("end", n, *run_triad(scratch, n, triad_reps)) for n in triad_threads]
    triad_best = max(b for _, n, b, _ in triad_runs if n == threads)
    triad_best_1 = max(b for _, n, b, _ in triad_runs if n == 1)
    report.add("## Memory limit: STREAM-style triad")
    report.add()
    report.add(table(["measured", "threads", "best GB/s", "median GB/s"],
                     [[when, n, f"{b:.1f}", f"{m:.1f}"] for when, n, b, m in triad_runs]))
    report.add()
    report.add(f"`a[i] = b[i] + s·c[i]` over three 256 MiB arrays of doubles, "
               f"{triad_reps} passes, compiled with `clang-22 -O3 -march=native -fopenmp`, "
               f"measured before the first shape and after the last. Decode ratios use the "
               f"best rate on {threads} thread(s): {triad_best:.1f} GB/s.")
    report.add()

    # ---------------------------------------------------------------- tables
    report.add("## Forward call against the compute limit (OpenBLAS)")
    report.add()
    for short, r in results.items():
        label, H, F, E, k, Fs, _ = r["shape"]
        report.add(f"### {label} (H {H}, F {F}, E {E}, k {k}"
                   + (f", shared Fs {Fs}" if Fs else "") + f", {args.dtype})")
        report.add()
        rows = []
        for T in args.tokens:
            t, reps = r["ours"][T]
            tb, _ = r["blas"][T]
            ratio = tb / t
            target = (met(ratio >= PREFILL_TARGET) if T >= PREFILL_MIN else "—")
            rows.append([T, r["active"][T], fmt_ms(t), reps, f"{r['flops'][T] / t / 1e9:.1f}",
                         fmt_ms(tb), f"{r['flops'][T] / tb / 1e9:.1f}", f"{ratio:.2f}",
                         target])
        report.add(table(["T", "active experts", "ours ms", "calls", "ours GFLOP/s",
                          "OpenBLAS ms", "OpenBLAS GFLOP/s", "ours/OpenBLAS",
                          f"prefill ≥ {PREFILL_TARGET}"], rows))
        report.add()

    decode_tokens = [T for T in args.tokens if T <= DECODE_MAX]
    # What f32 multiply-adds can reach on this CPU: a large sgemm's rate, or
    # the shapes' grouped sgemms where they did better.
    best_gflops = max([sgemm_peak] + [r["flops"][T] / r["blas"][T][0] / 1e9
                                      for r in results.values() for T in args.tokens])

    # Every decode call: (results, T, weight bytes, weight GB/s, compute-bound
    # GB/s). The last is the weight rate at which T's FLOPs per byte reach
    # best_gflops.
    decode_runs = []
    for r in results.values():
        for T in decode_tokens:
            nbytes = weight_bytes(r, T)
            decode_runs.append((r, T, nbytes, nbytes / r["ours"][T][0] / 1e9,
                                best_gflops * nbytes / r["flops"][T]))

    report.add("## Decode: weight bandwidth against the memory limit (triad)")
    report.add()
    if decode_runs:
        rows = []
        for r, T, nbytes, gbs, compute_gbs in decode_runs:
            rows.append([r["shape"][0], T, r["active"][T], f"{nbytes / 1e6:.0f}",
                         fmt_ms(r["ours"][T][0]), f"{gbs:.1f}", f"{gbs / triad_best:.2f}",
                         met(gbs / triad_best >= DECODE_TARGET),
                         f"{r['flops'][T] / nbytes:.2f}",
                         f"{compute_gbs:.1f}",
                         f"{gbs / min(triad_best, compute_gbs):.2f}"])
        report.add(table(["shape", "T", "active experts", "weight MB", "ours ms",
                          "weight GB/s", "/ triad", f"≥ {DECODE_TARGET}", "FLOP/byte",
                          "compute-bound GB/s", "/ roofline"], rows))
        report.add()
        report.add(
            "*FLOP/byte* is the call's active FLOPs per weight byte: each weight element "
            "meets every token its expert received, so it grows with the tokens per "
            "expert and doubles from f32 to bf16. Streaming the weights at a rate R then "
            "takes R × FLOP/byte of multiply-adds; *compute-bound GB/s* is the rate at "
            f"which that reaches the run's best `cblas_sgemm` rate ({best_gflops:.1f} "
            f"GFLOP/s: the larger of a {PEAK_SGEMM_SIZE}³ sgemm's {sgemm_peak:.1f} and the "
            "OpenBLAS GFLOP/s above). Where it is below "
            f"{DECODE_TARGET} of the triad, no f32 multiply-add kernel on this CPU meets "
            "the decode target: the call is compute-bound. *Roofline* is the lower of "
            "the two rates.")
    else:
        report.add(f"No decode token count (≤ {DECODE_MAX}) in this run.")
    report.add()

    report.add("## Fusion ablation")
    report.add()
    rows = []
    for short, r in results.items():
        Ta, (tf, _), (tu, _), diff = r["ablation"]
        fl = r["flops"].get(Ta) or 2 * Ta * 3 * r["shape"][1] * (
            r["shape"][4] * r["shape"][2] + r["shape"][5])
        rows.append([r["shape"][0], Ta, fmt_ms(tf), f"{fl / tf / 1e9:.1f}", fmt_ms(tu),
                     f"{fl / tu / 1e9:.1f}", f"{tu / tf:.2f}", f"{diff:.1e}"])
    report.add(table(["shape", "T", "fused ms", "fused GFLOP/s", "unfused ms",
                      "unfused GFLOP/s", "fused/unfused (speed)", "max |Δy|"], rows))
    report.add()
    report.add(f"Unfused: `moe-compile --disable-fusion={DISABLE_ALL}`, same weights and "
               f"input, {threads} thread(s). A ratio above 1 means the fusions make the call "
               "faster; max |Δy| is the largest difference between the two outputs.")
    report.add()

    report.add("## Threads")
    report.add()
    rows = []
    target = THREADS_TARGET_PER_THREAD * threads
    for short, r in results.items():
        for T, (t1, tn) in r["threads"].items():
            sp = t1 / tn
            rows.append([r["shape"][0], T, fmt_ms(t1), fmt_ms(tn), f"{sp:.2f}×",
                         met(sp >= target) if threads > 1 else "—"])
    report.add(table(["shape", "T", "1 thread ms", f"{threads} threads ms",
                      f"speedup {threads} vs 1", f"≥ {target:.1f}×"], rows))
    report.add()
    report.add(f"Triad for comparison: {triad_best_1:.1f} GB/s on 1 thread, "
               f"{triad_best:.1f} GB/s on {threads} (best rates): "
               "decode cannot scale further than the memory system does.")
    report.add()

    report.add("## llama.cpp's ggml (its MoE block, same shapes, same run)")
    report.add()
    if ggml_note is not None:
        report.add(f"ggml: {ggml_note}")
    else:
        import ggml_peer as ggml
        rows = []
        for short, r in results.items():
            for T in args.tokens:
                t = r["ours"][T][0]
                row = [r["shape"][0], T, fmt_ms(t)]
                for kind in ggml.TYPES:
                    tg, nbytes = r["ggml"][(T, kind)]
                    row += [fmt_ms(tg), f"{tg / t:.2f}"]
                rows.append(row)
        header = ["shape", "T", f"ours ({args.dtype}) ms"]
        for kind in ggml.TYPES:
            header += [f"ggml {kind} ms", f"ours speedup vs {kind}"]
        report.add(table(header, rows))
        report.add()
        report.add(
            f"ggml from llama-cpp-python {ggml.VERSION}'s sdist (PyPI), built with "
            "`-DGGML_NATIVE=ON -DGGML_OPENMP=ON`, clang-22; `bench/ggml_moe.c` builds "
            "llama.cpp's `build_moe_ffn` graph (router in f32, softmax, top-k, "
            "renormalized weights, `ggml_mul_mat_id` for the three projections, "
            "`ggml_swiglu_split`) over f32 activations, weights in each type, and times "
            f"`ggml_graph_compute_with_ctx` on {threads} thread(s). Its blocks have no "
            "shared expert: for a shape with one, ggml does less work than ours. The "
            "weights are in plain ggml tensors, so ggml's CPU repacking (its "
            "extra buffer types) does not apply. A speedup above 1 means ours is faster.")
    report.add()

    report.add("## PyTorch eager (HF Mixtral-style loop over experts)")
    report.add()
    if not have_torch:
        report.add(torch_note)
    elif args.dtype != "f32":
        report.add(f"{torch_note}: run only for f32: skipped")
    else:
        rows = []
        for short, r in results.items():
            for T in args.tokens:
                tt = r["torch"][T]
                t = r["ours"][T][0]
                rows.append([r["shape"][0], T, fmt_ms(tt), f"{r['flops'][T] / tt / 1e9:.1f}",
                             f"{tt / t:.2f}"])
        report.add(f"{torch_note}, {threads} thread(s).")
        report.add()
        report.add(table(["shape", "T", "torch ms", "torch GFLOP/s", "ours speedup"], rows))
    report.add()

    # ---------------------------------------------------------------- summary
    report.add("## Summary")
    report.add()
    pre = [r["blas"][T][0] / r["ours"][T][0] for r in results.values()
           for T in args.tokens if T >= PREFILL_MIN]
    dec_gbs = [gbs for *_, gbs, _ in decode_runs]
    dec_compute = [compute_gbs for *_, compute_gbs in decode_runs]
    dec = [g / triad_best for g in dec_gbs]
    roof = [g / min(triad_best, c) for g, c in zip(dec_gbs, dec_compute)]
    allr = [r["blas"][T][0] / r["ours"][T][0] for r in results.values() for T in args.tokens]
    if allr:
        report.add(f"- ours/OpenBLAS, every token count: {min(allr):.2f}–{max(allr):.2f}")
    if pre:
        report.add(f"- ours/OpenBLAS, prefill (T ≥ {PREFILL_MIN}): {min(pre):.2f}–"
                   f"{max(pre):.2f} (target ≥ {PREFILL_TARGET}: "
                   f"{sum(p >= PREFILL_TARGET for p in pre)} of {len(pre)} met)")
    if dec:
        report.add(f"- decode weight bandwidth / triad (T ≤ {DECODE_MAX}): {min(dec):.2f}–"
                   f"{max(dec):.2f} (target ≥ {DECODE_TARGET}: "
                   f"{sum(d >= DECODE_TARGET for d in dec)} of {len(dec)} met)")
        bound = sum(c < DECODE_TARGET * triad_best for c in dec_compute)
        report.add(f"- decode weight bandwidth / roofline: {min(roof):.2f}–{max(roof):.2f} "
                   f"({bound} of {len(dec)} compute-bound below {DECODE_TARGET} of the "
                   "triad)")
    abl = [r["ablation"][2][0] / r["ablation"][1][0] for r in results.values()]
    if abl:
        report.add(f"- fused/unfused speed at T = {ABLATION_TOKENS}: {min(abl):.2f}–"
                   f"{max(abl):.2f}")
    sps = [t1 / tn for r in results.values() for T, (t1, tn) in r["threads"].items()]
    if sps and threads > 1:
        report.add(f"- {threads} vs 1 thread speedup: {min(sps):.2f}–{max(sps):.2f}× "
                   f"(target ≥ {target:.1f}×)")
    wall = time.time() - started
    busy1, steal1 = cpu_seconds_busy()
    capacity = wall * os.cpu_count()
    others = max(0.0, (busy1 - busy0) - (own_cpu_seconds() - own0))
    report.add(f"- Run time: {wall:.0f} s. Other processes used {100 * others / capacity:.0f}% "
               f"of the machine's {os.cpu_count()} CPUs during the run, the hypervisor "
               f"stole {100 * (steal1 - steal0) / capacity:.0f}%: the higher these are, "
               "the noisier the times above.")

    scratch_dir.cleanup()
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report.text() + kept_sections(out))
        print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""What a "target": "cuda" library asks of the CUDA driver, checked without
a GPU: fake_cuda_driver.c stands in for libcuda.so.1, runs nothing, and logs
every call. The host code and runtime/CUDARuntime.c must launch every
kernel of a forward call on the caller's stream with 256-thread blocks,
allocate and free its workspace on that stream, wait only in the
synchronous calls, load the fat binary once, keep contexts balanced, and
turn a failing driver call into an error code without launching more."""

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from cuda_tools import NO_TOOLKIT, cuda_toolkit
from moe_mlir.abi import compile_config
from test_conformance import cfg

pytestmark = pytest.mark.skipif(cuda_toolkit() is None, reason=NO_TOOLKIT)

HERE = Path(__file__).resolve().parent
FRONTEND = HERE.parents[1] / "python_frontend"
CONFIG = cfg("rt_layer", 32, 48, 8, 2, target="cuda", shared_intermediate_size=16,
             shared_expert_gate=True, capacity_factor=1.0)
FORWARD = ["gate_logits", "gate_select", "gate_capacity", "plan_fill", "plan_count",
           "plan_offsets", "plan_place", "expert_up", "expert_down", "shared_up",
           "shared_down", "combine"]
# The kernels tiled on the linalg stage: the FFNs' 16 × 16 threads a
# block, combine's H = 32 columns × 8 tokens; the others 256 × 1.
BLOCKS = {"expert_up": ["16", "16"], "expert_down": ["16", "16"],
          "shared_up": ["16", "16"], "shared_down": ["16", "16"],
          "combine": ["32", "8"]}
STREAM = "0xabc000"
T = 300


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The library and the fake driver, as libcuda.so.1 in its own folder."""
    root = tmp_path_factory.mktemp("fake_driver")
    clang = os.environ.get("MOE_CLANG") or shutil.which("clang-22") or "clang"
    subprocess.run([clang, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o",
                    str(root / "libcuda.so.1"), str(HERE / "fake_cuda_driver.c"),
                    "-lpthread"], check=True)
    so = compile_config(CONFIG, tmp_path_factory.mktemp("rt_layer"))
    return so, root


# Runs in a fresh process whose loader finds the fake driver first. Steps:
# ["create"], ["forward", T], ["forward_async", T, stream], ["route", T],
# ["threads", T, stream, stream, ...] (forward_async on each stream at once),
# and with one pointer off its element size: ["create_misaligned"],
# ["forward_misaligned", T], ["route_misaligned", T].
CHILD = """
import ctypes, json, sys, threading
sys.path.insert(0, {frontend!r})
fake = ctypes.CDLL("libcuda.so.1")
fake.fake_log.restype = ctypes.c_char_p
from moe_mlir.abi import Library
config = {config!r}
lib = Library({so!r}, config["name"], config)
weights = {{key: 4096 * (i + 1) for i, key in enumerate(
    ["router", "gate_proj", "up_proj", "down_proj", "shared_gate_proj",
     "shared_up_proj", "shared_down_proj", "shared_expert_gate"])}}
struct = lib.Weights(**weights)
ctx = ctypes.c_void_p()
codes = []
for step in {steps!r}:
    kind = step[0]
    fake.fake_mark(kind.encode())
    if kind == "create":
        codes.append(lib.c_create(ctypes.byref(struct), ctypes.byref(ctx)))
    elif kind == "forward":
        codes.append(lib.c_forward(ctx, 0x10000, step[1], 0x20000))
    elif kind == "forward_async":
        codes.append(lib.c_forward_async(ctx, 0x10000, step[1], 0x20000, int(step[2], 16)))
    elif kind == "route":
        codes.append(lib.c_route(ctx, 0x10000, step[1], 0x30000, 0x40000))
    elif kind == "create_misaligned":
        bad = lib.Weights(**dict(weights, up_proj=weights["up_proj"] + 2))
        codes.append(lib.c_create(ctypes.byref(bad), ctypes.byref(ctypes.c_void_p())))
    elif kind == "forward_misaligned":
        codes.append(lib.c_forward(ctx, 0x10002, step[1], 0x20000))
    elif kind == "route_misaligned":
        codes.append(lib.c_route(ctx, 0x10000, step[1], 0x30000, 0x40002))
    elif kind == "threads":
        results = [None] * len(step[2:])
        def run(i, stream):
            results[i] = lib.c_forward_async(ctx, 0x10000, step[1], 0x20000, int(stream, 16))
        threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(step[2:])]
        for t in threads: t.start()
        for t in threads: t.join()
        codes.append(results)
print(json.dumps({{"codes": codes, "log": fake.fake_log().decode()}}))
"""


def run(built, steps, **env):
    so, driver_dir = built
    code = CHILD.format(frontend=str(FRONTEND), config=CONFIG, so=str(so), steps=steps)
    environment = dict(os.environ, LD_LIBRARY_PATH=str(driver_dir), **env)
    environment.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run([sys.executable, "-c", code], env=environment,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    calls = [line.split() for line in out["log"].splitlines()]
    return out["codes"], calls


def steps(calls):
    """The calls of each step, in order."""
    out = []
    for call in calls:
        if call[1] == "mark":
            out.append([])
        elif out:
            out[-1].append(call)
    return out


def after_create(calls):
    """The calls of every step after the first (create)."""
    return [call for step in steps(calls)[1:] for call in step]


def check_balanced(calls):
    per_thread = Counter()
    for call in calls:
        if call[1] in ("push", "pop"):
            per_thread[call[0]] += 1 if call[1] == "push" else -1
    assert all(depth == 0 for depth in per_thread.values()), per_thread


def check_workspace(calls, stream):
    """Every allocation is freed once, both on `stream`."""
    allocs = [c for c in calls if c[1] == "alloc"]
    frees = [c for c in calls if c[1] == "free"]
    assert allocs and Counter(c[2] for c in allocs) == Counter(c[2] for c in frees)
    for call in allocs + frees:
        assert call[-1] == stream, call


def launches(calls):
    return [c for c in calls if c[1] == "launch"]


def test_forward_async_runs_on_the_callers_stream(built):
    codes, calls = run(built, [["create"], ["forward_async", T, STREAM]])
    assert codes == [0, 0]
    work = after_create(calls)
    names = [c[2] for c in launches(work)]
    assert names == [f"rt_layer_forward_{k}" for k in FORWARD]
    for call in launches(work):
        block = BLOCKS.get(call[2].removeprefix("rt_layer_forward_"), ["256", "1"])
        assert call[6:10] == block + ["1", "0"], call  # block, no dynamic smem
        assert call[10] == STREAM and call[11] == "params", call
    # One thread per (token, expert) for the logits; one block per expert
    # for the scans; the expert FFN's grid covers the plan's most rows, in
    # tiles of 64 rows and of the most columns up to 64 that divide F (48)
    # or H (32); combine's covers the tokens, 8 a block.
    grid = {c[2].removeprefix("rt_layer_forward_"): tuple(map(int, c[3:6]))
            for c in launches(work)}
    assert grid["gate_logits"] == (-(-T * 8 // 256), 1, 1)
    assert grid["gate_capacity"] == grid["plan_count"] == (8, 1, 1)
    max_rows = T * 2 + min(8, T * 2) * 63
    assert grid["expert_up"] == (-(-max_rows // 64), 3, 1)
    assert grid["expert_down"] == (-(-max_rows // 64), 1, 1)
    assert grid["shared_up"] == grid["shared_down"] == (-(-T // 64), 1, 1)
    assert grid["combine"] == (-(-T // 8), 1, 1)
    check_workspace(work, STREAM)
    assert not [c for c in work if c[1] == "sync"], "forward_async waited"
    check_balanced(calls)


def test_forward_waits_on_the_default_stream(built):
    codes, calls = run(built, [["create"], ["forward", T], ["forward", 1]])
    assert codes == [0, 0, 0]
    for work in steps(calls)[1:]:
        assert len(launches(work)) == len(FORWARD)
        assert all(c[10] == "(nil)" for c in launches(work))
        check_workspace(work, "(nil)")
        # The call waits once, after its last free, before it pops.
        assert [c[1:] for c in work[-2:]] == [["sync", "(nil)"], ["pop"]]
        assert work[-3][1] == "free"
    check_balanced(calls)


def test_initialization(built):
    codes, calls = run(built, [["create"], ["create"], ["forward", 5]])
    assert codes == [0, 0, 0]
    kinds = Counter(c[1] for c in calls)
    # One driver, one context, one fat binary, one pool that keeps its memory.
    assert (kinds["init"], kinds["retain"], kinds["load"]) == (1, 1, 1)
    assert ["load", "fatbin"] in [c[1:] for c in calls]
    assert ["pool-attribute", "4", str(2 ** 64 - 1)] in [c[1:] for c in calls]


def test_route_launches_the_gate_and_waits(built):
    codes, calls = run(built, [["create"], ["route", T]])
    assert codes == [0, 0]
    work = after_create(calls)
    assert [c[2] for c in launches(work)] == [
        f"rt_layer_route_{k}" for k in ("gate_logits", "gate_select", "gate_capacity")]
    assert [c[1:] for c in work if c[1] == "sync"] == [["sync", "(nil)"]]


def test_concurrent_calls_each_on_their_stream(built):
    streams = ["0x1000", "0x2000", "0x3000"]
    codes, calls = run(built, [["create"], ["threads", 77, *streams]])
    assert codes == [0, [0, 0, 0]]
    work = after_create(calls)
    # Each call's whole work, on its own stream.
    assert Counter(c[10] for c in launches(work)) == {s: len(FORWARD) for s in streams}
    for stream in streams:
        check_workspace([c for c in work if c[1] in ("alloc", "free") and c[-1] == stream],
                        stream)
    assert not [c for c in work if c[1] in ("alloc", "free") and c[-1] not in streams]
    check_balanced(calls)


def test_a_failed_launch_is_an_error_and_stops_the_call(built):
    codes, calls = run(built, [["create"], ["forward_async", T, STREAM],
                               ["forward_async", T, STREAM]],
                       FAKE_CUDA_FAIL="cuLaunchKernel:3")
    assert codes == [0, 9, 0]  # ERROR_CUDA, then the next call runs whole
    _, failed, next_call = steps(calls)
    assert len(launches(failed)) == 3
    check_workspace(failed, STREAM)
    assert len(launches(next_call)) == len(FORWARD)
    check_balanced(calls)


def test_out_of_memory(built):
    codes, calls = run(built, [["create"], ["forward", T]],
                       FAKE_CUDA_FAIL="cuMemAllocFromPoolAsync:2")
    assert codes == [0, 5]  # ERROR_OUT_OF_MEMORY
    work = after_create(calls)
    assert not launches(work) and not [c for c in work if c[1] == "sync"]
    check_workspace(work, "(nil)")
    check_balanced(calls)


def test_without_memory_pools(built):
    codes, calls = run(built, [["create"], ["forward_async", T, STREAM]],
                       FAKE_CUDA_NO_POOLS="1")
    assert codes == [0, 0]
    check_workspace(after_create(calls), "sync")


def test_failed_module_load_fails_create(built):
    codes, _ = run(built, [["create"], ["forward", 3]], FAKE_CUDA_FAIL="cuModuleLoadData")
    assert codes[0] == 9  # ERROR_CUDA: the kernels could not be loaded
    assert codes[1] == 1  # no context was made: NULL_ARGUMENT


def test_misaligned_device_pointers_are_refused(built):
    """Device memory is not copied on the host, as a CPU library copies a
    misaligned weight: a weight, x or an output off its element size is
    ERROR_MISALIGNED, before any driver call."""
    codes, calls = run(built, [["create_misaligned"], ["create"], ["forward_misaligned", T],
                               ["route_misaligned", T]])
    assert codes == [7, 0, 7, 7]
    refused_create, _, refused_forward, refused_route = steps(calls)
    assert refused_create == refused_forward == refused_route == []
    check_balanced(calls)

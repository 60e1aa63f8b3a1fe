"""An expert shard library in one process (docs/EXPERT_PARALLEL.md): the
layer's experts split over shards, each shard's run_experts on the rows its
experts take, and combine, must give forward's bits; and the two entry
points' errors, as SPEC §4 has them for forward."""

import numpy as np
import pytest

from moe_mlir.abi import (
    ERROR_BAD_COUNTS,
    ERROR_MISALIGNED,
    ERROR_NEGATIVE_TOKENS,
    ERROR_NULL_ARGUMENT,
    OK,
    Library,
    compile_config,
    ptr,
)
from moe_mlir.reference import random_input, random_weights

LAYER = {"name": "shard_layer", "hidden_size": 16, "intermediate_size": 24,
         "num_experts": 8, "top_k": 2, "shared_intermediate_size": 12,
         "shared_expert_gate": True}
EXPERT_WEIGHTS = ("gate_proj", "up_proj", "down_proj")


def shard_of(config, first, count):
    return dict(config, name="shard", expert_shard={"first": first, "count": count})


def shard_weights(weights, first, count):
    return {k: (v[first:first + count] if k in EXPERT_WEIGHTS else v)
            for k, v in weights.items()}


def compile_library(config, directory, *args):
    return Library(compile_config(config, directory, args), config["name"], config)


def sharded_forward(shards, x):
    """What ranks holding `shards` ([(first, library, context)]) compute
    together for x, exchanged in memory."""
    _, lib0, ctx0 = shards[0]
    ids, weights = lib0.route(ctx0, x)
    expert_out = np.zeros(ids.shape + (x.shape[1],), np.float32)
    for first, lib, ctx in shards:
        count = lib.config["expert_shard"]["count"]
        slots = [(t, j) for e in range(first, first + count)
                 for t, j in zip(*np.nonzero(ids == e))]
        counts = np.bincount(ids[ids >= first].reshape(-1) - first,
                             minlength=count)[:count]
        rows = np.array([x[t] for t, _ in slots]).reshape(-1, x.shape[1])
        out = lib.run_experts(ctx, rows, counts,
                              np.array([weights[s] for s in slots], np.float32))
        for s, row in zip(slots, out):
            expert_out[s] = row
    return lib0.combine(ctx0, x, ids, expert_out)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("emulate_gpu", [False, True], ids=["cpu", "emulated_gpu"])
def test_shards_give_forwards_bits(dtype, emulate_gpu, tmp_path):
    """Experts split 3/3/2, the whole of every token's batch on each: the
    same rows per expert in the same order as forward, and combine adds
    them in forward's order on the CPU. The GPU kernels' forward sums a
    token's rows in slot order instead, so there the sum may differ in its
    last bits."""
    layer = dict(LAYER, dtype=dtype)
    args = ("--emulate-gpu",) if emulate_gpu else ()
    weights = random_weights(layer, 1)
    x = random_input(45, layer["hidden_size"], 2)
    whole = compile_library(layer, tmp_path / "whole", *args)
    with whole.create(weights) as ctx:
        y = whole.forward(ctx, x)
    shards = []
    for first, count in ((0, 3), (3, 3), (6, 2)):
        lib = compile_library(shard_of(layer, first, count), tmp_path / f"s{first}", *args)
        shards.append((first, lib, lib.create(shard_weights(weights, first, count))))
    sharded = sharded_forward(shards, x)
    if emulate_gpu:
        tolerance = 1e-4 if dtype == "f32" else 2e-2
        assert np.abs(sharded - y).max() <= tolerance * max(1.0, np.abs(y).max())
    else:
        assert np.array_equal(sharded, y)
    for _, _, ctx in shards:
        ctx.destroy()


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    config = shard_of(LAYER, 2, 3)
    lib = compile_library(config, tmp_path_factory.mktemp("shard"))
    ctx = lib.create(shard_weights(random_weights(LAYER, 1), 2, 3))
    yield lib, ctx
    ctx.destroy()


def test_no_forward(shard):
    lib, _ = shard
    assert not hasattr(lib.lib, "shard_forward"), "a shard exports forward"
    assert hasattr(lib.lib, "shard_run_experts") and hasattr(lib.lib, "shard_combine")


def test_run_experts_errors(shard):
    lib, ctx = shard
    H = LAYER["hidden_size"]
    rows = np.ones((4, H), np.float32)
    w = np.ones(4, np.float32)
    out = np.zeros((4, H), np.float32)

    def call(counts, n=4, rows_p=ptr(rows), w_p=ptr(w), out_p=ptr(out), handle=ctx.handle):
        c = None if counts is None else np.asarray(counts, np.int64)
        return lib.c_run_experts(handle, rows_p, n, None if c is None else ptr(c), w_p, out_p)

    assert call([1, 2, 1]) == OK
    assert np.isfinite(out).all() and np.abs(out).sum() > 0
    assert call([1, 2, 2]) == ERROR_BAD_COUNTS      # more than num_rows
    assert call([1, 1, 1]) == ERROR_BAD_COUNTS      # fewer
    assert call([5, -1, 0]) == ERROR_BAD_COUNTS     # a negative count
    assert call([0, 0, 0], n=0, rows_p=None, w_p=None, out_p=None) == OK
    assert call([1, 2, 1], n=-1) == ERROR_NEGATIVE_TOKENS
    assert call(None) == ERROR_NULL_ARGUMENT
    assert call([1, 2, 1], handle=None) == ERROR_NULL_ARGUMENT
    assert call([1, 2, 1], rows_p=None) == ERROR_NULL_ARGUMENT
    assert call([1, 2, 1], w_p=None) == ERROR_NULL_ARGUMENT
    assert call([1, 2, 1], out_p=ptr(out) + 1) == ERROR_MISALIGNED
    counts = np.zeros(4, np.int64)
    assert lib.c_run_experts(ctx.handle, ptr(rows), 4, counts.ctypes.data + 4, ptr(w),
                             ptr(out)) == ERROR_MISALIGNED
    assert lib.strerror(ERROR_BAD_COUNTS) and "count" in lib.strerror(ERROR_BAD_COUNTS)


def test_combine_errors_and_skipped_slots(shard):
    lib, ctx = shard
    H, K, T = LAYER["hidden_size"], LAYER["top_k"], 3
    x = random_input(T, H, 4)
    ids = np.array([[0, 5], [-1, 7], [-1, -1]], np.int32)
    expert_out = np.random.default_rng(5).standard_normal((T, K, H)).astype(np.float32)
    none = lib.combine(ctx, x, np.full((T, K), -1, np.int32), expert_out)  # the shared expert
    y = lib.combine(ctx, x, ids, expert_out)
    np.testing.assert_allclose(y[0], none[0] + expert_out[0, 0] + expert_out[0, 1], rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(y[1], none[1] + expert_out[1, 1], rtol=1e-6, atol=1e-6)
    assert np.array_equal(y[2], none[2])
    yy = np.zeros((T, H), np.float32)
    assert lib.c_combine(ctx.handle, ptr(x), -1, ptr(ids), ptr(expert_out),
                         ptr(yy)) == ERROR_NEGATIVE_TOKENS
    assert lib.c_combine(ctx.handle, ptr(x), 0, None, None, None) == OK
    assert lib.c_combine(ctx.handle, ptr(x), T, None, ptr(expert_out),
                         ptr(yy)) == ERROR_NULL_ARGUMENT
    assert lib.c_combine(ctx.handle, ptr(x), T, ptr(ids), ptr(expert_out) + 2,
                         ptr(yy)) == ERROR_MISALIGNED

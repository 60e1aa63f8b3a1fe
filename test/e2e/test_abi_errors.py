"""The C ABI's contract on bad arguments (SPEC §4): an error code, never an
abort, and a message for every code."""

import ctypes
import gc
import threading

import numpy as np
import pytest

from moe_mlir.abi import (
    ERROR_MISALIGNED,
    ERROR_MISSING_WEIGHT,
    ERROR_NEGATIVE_TOKENS,
    ERROR_NULL_ARGUMENT,
    ERROR_TOO_MANY_TOKENS,
    ERROR_UNUSED_WEIGHT,
    OK,
    Library,
    compile_config,
    ptr,
)
from moe_mlir.reference import random_input, random_weights, reference

SMALL = {"name": "abi_small", "hidden_size": 8, "intermediate_size": 4, "num_experts": 4,
         "top_k": 2, "router_bias": True, "selection_bias": True}
SHARED = {"name": "abi_shared", "hidden_size": 8, "intermediate_size": 4, "num_experts": 4,
          "top_k": 2, "shared_intermediate_size": 6, "shared_expert_gate": True}
PLAIN = {"name": "abi_plain", "hidden_size": 8, "intermediate_size": 4, "num_experts": 4,
         "top_k": 2, "gated": False}
CONFIGS = {c["name"]: c for c in (SMALL, SHARED, PLAIN)}

T = 5
H = 8


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    out = {}
    for name, config in CONFIGS.items():
        so = compile_config(config, tmp_path_factory.mktemp(name))
        out[name] = Library(so, name, config)
    return out


@pytest.fixture(scope="module")
def small(libs):
    lib = libs["abi_small"]
    weights = random_weights(SMALL, 3)
    ctx = lib.create(weights)
    yield lib, ctx, weights
    ctx.destroy()


def assert_message(lib, code):
    msg = lib.strerror(code)
    assert msg, f"strerror({code}) is NULL or empty"
    assert msg != lib.strerror(OK), f"strerror({code}) reads like success: {msg!r}"


# ---------------------------------------------------------------------------
# create

def test_create_null_arguments(libs):
    lib = libs["abi_small"]
    arrays = lib.prepare_weights(random_weights(SMALL, 0))
    struct = lib.make_struct(arrays)
    handle = ctypes.c_void_p()
    code = lib.c_create(None, ctypes.byref(handle))
    assert code == ERROR_NULL_ARGUMENT
    assert_message(lib, code)
    code = lib.c_create(ctypes.byref(struct), None)
    assert code == ERROR_NULL_ARGUMENT
    assert lib.c_create(None, None) != OK


MISSING = [
    ("abi_small", "router"),
    ("abi_small", "router_bias"),
    ("abi_small", "selection_bias"),
    ("abi_small", "gate_proj"),
    ("abi_small", "up_proj"),
    ("abi_small", "down_proj"),
    ("abi_shared", "shared_gate_proj"),
    ("abi_shared", "shared_up_proj"),
    ("abi_shared", "shared_down_proj"),
    ("abi_shared", "shared_expert_gate"),
    ("abi_plain", "router"),
    ("abi_plain", "up_proj"),
    ("abi_plain", "down_proj"),
]


@pytest.mark.parametrize("name,key", MISSING, ids=[f"{n}-{k}" for n, k in MISSING])
def test_create_missing_weight(libs, name, key):
    lib = libs[name]
    weights = random_weights(CONFIGS[name], 0)
    assert key in weights
    del weights[key]
    code, ctx = lib.try_create(weights)
    assert code == ERROR_MISSING_WEIGHT, f"create without {key} returned {code}"
    assert ctx is None
    assert_message(lib, code)


UNUSED = [
    ("abi_plain", "gate_proj", (4, 4, 8)),
    ("abi_plain", "router_bias", (4,)),
    ("abi_plain", "selection_bias", (4,)),
    ("abi_plain", "shared_gate_proj", (6, 8)),
    ("abi_plain", "shared_up_proj", (6, 8)),
    ("abi_plain", "shared_down_proj", (8, 6)),
    ("abi_plain", "shared_expert_gate", (8,)),
    ("abi_small", "shared_up_proj", (6, 8)),
    ("abi_small", "shared_down_proj", (8, 6)),
    ("abi_shared", "router_bias", (4,)),
    ("abi_shared", "selection_bias", (4,)),
]


@pytest.mark.parametrize("name,key,shape", UNUSED, ids=[f"{n}-{k}" for n, k, _ in UNUSED])
def test_create_unused_weight(libs, name, key, shape):
    lib = libs[name]
    weights = random_weights(CONFIGS[name], 0)
    assert key not in weights
    weights[key] = np.ones(shape, dtype=np.float32)
    code, ctx = lib.try_create(weights, check_shapes=False)
    assert code == ERROR_UNUSED_WEIGHT, f"create with unused {key} returned {code}"
    assert ctx is None
    assert_message(lib, code)


def test_create_every_config_succeeds(libs):
    for name, lib in libs.items():
        with lib.create(random_weights(CONFIGS[name], 0)) as ctx:
            y = lib.forward(ctx, random_input(T, H, 1))
            assert np.isfinite(y).all()


# ---------------------------------------------------------------------------
# forward and route

def buffers(T_=T):
    x = random_input(T_, H, 2)
    y = np.zeros((T_, H), dtype=np.float32)
    ids = np.zeros((T_, 2), dtype=np.int32)
    w = np.zeros((T_, 2), dtype=np.float32)
    return x, y, ids, w


def test_forward_null_arguments(small):
    lib, ctx, _ = small
    x, y, _, _ = buffers()
    assert lib.c_forward(None, ptr(x), T, ptr(y)) == ERROR_NULL_ARGUMENT
    assert lib.c_forward(ctx.handle, None, T, ptr(y)) == ERROR_NULL_ARGUMENT
    assert lib.c_forward(ctx.handle, ptr(x), T, None) == ERROR_NULL_ARGUMENT
    assert not y.any(), "a failed forward wrote to y"


def test_forward_negative_tokens(small):
    lib, ctx, _ = small
    x, y, _, _ = buffers()
    for n in (-1, -(2**62)):
        code = lib.c_forward(ctx.handle, ptr(x), n, ptr(y))
        assert code == ERROR_NEGATIVE_TOKENS
        assert_message(lib, code)
    assert lib.c_forward(ctx.handle, None, -1, None) != OK
    assert not y.any()


def test_too_many_tokens_is_refused_before_any_access(small):
    """Beyond <NAME>_MAX_TOKENS some buffer would pass 2^62 bytes; both calls
    refuse without reading x (too small here) or writing. The plan's indices
    are 64-bit, so the limit is far past 2^31 token slots."""
    lib, ctx, _ = small
    x, y, ids, w = buffers()
    widest = max(SMALL["hidden_size"], SMALL["intermediate_size"], SMALL["num_experts"])
    limit = 2**62 // (8 * SMALL["top_k"] * widest)
    assert limit * SMALL["top_k"] > 2**31
    header = (lib.path.parent / "abi_small.h").read_text()
    assert f"#define ABI_SMALL_MAX_TOKENS {limit}\n" in header
    for n in (limit + 1, 2**62, 2**63 - 1):
        assert lib.c_forward(ctx.handle, ptr(x), n, ptr(y)) == ERROR_TOO_MANY_TOKENS
        assert lib.c_route(ctx.handle, ptr(x), n, ptr(ids), ptr(w)) == ERROR_TOO_MANY_TOKENS
    assert_message(lib, ERROR_TOO_MANY_TOKENS)
    assert not y.any() and not ids.any() and not w.any()


def test_nan_input_stays_in_its_token(small):
    """A NaN in one token's input makes its routing NaN: it takes the lowest
    experts with NaN weights and a NaN output row, deterministically; the
    other tokens' outputs do not change."""
    lib, ctx, _ = small
    x = random_input(T, H, 11)
    clean = lib.forward(ctx, x)
    x[2, 3] = np.nan
    y = lib.forward(ctx, x)
    ids, w = lib.route(ctx, x)
    assert ids[2].tolist() == [0, 1] and np.isnan(w[2]).all()
    assert np.isnan(y[2]).all()
    others = [t for t in range(T) if t != 2]
    assert np.array_equal(y[others], clean[others])
    assert np.array_equal(lib.forward(ctx, x), y, equal_nan=True)


def test_forward_zero_tokens(small):
    lib, ctx, _ = small
    assert lib.c_forward(ctx.handle, None, 0, None) == OK
    x, _, _, _ = buffers()
    sentinel = np.full((T, H), 7.0, dtype=np.float32)
    assert lib.c_forward(ctx.handle, ptr(x), 0, ptr(sentinel)) == OK
    assert (sentinel == 7.0).all(), "forward with 0 tokens wrote to y"
    assert lib.forward(ctx, np.zeros((0, H), dtype=np.float32)).shape == (0, H)


def test_route_null_arguments(small):
    lib, ctx, _ = small
    x, _, ids, w = buffers()
    assert lib.c_route(None, ptr(x), T, ptr(ids), ptr(w)) == ERROR_NULL_ARGUMENT
    assert lib.c_route(ctx.handle, None, T, ptr(ids), ptr(w)) == ERROR_NULL_ARGUMENT
    assert lib.c_route(ctx.handle, ptr(x), T, None, ptr(w)) == ERROR_NULL_ARGUMENT
    assert lib.c_route(ctx.handle, ptr(x), T, ptr(ids), None) == ERROR_NULL_ARGUMENT
    assert lib.c_route(ctx.handle, ptr(x), -3, ptr(ids), ptr(w)) == ERROR_NEGATIVE_TOKENS


def test_route_zero_tokens(small):
    lib, ctx, _ = small
    assert lib.c_route(ctx.handle, None, 0, None, None) == OK
    x, _, _, _ = buffers()
    ids = np.full((T, 2), 77, dtype=np.int32)
    w = np.full((T, 2), 7.0, dtype=np.float32)
    assert lib.c_route(ctx.handle, ptr(x), 0, ptr(ids), ptr(w)) == OK
    assert (ids == 77).all() and (w == 7.0).all()


def test_forward_writes_only_its_rows(small):
    lib, ctx, _ = small
    x = random_input(T, H, 4)
    y = np.full((T + 1, H), 7.0, dtype=np.float32)
    assert lib.c_forward(ctx.handle, ptr(x), T, ptr(y)) == OK
    assert (y[T] == 7.0).all(), "forward wrote past num_tokens rows"
    assert np.isfinite(y[:T]).all()


# ---------------------------------------------------------------------------
# strerror

def test_strerror(libs):
    for lib in libs.values():
        ok = lib.strerror(OK)
        assert ok is not None
        messages = {}
        for code in (1, 2, 3, 4, 5, 8, 9):
            assert_message(lib, code)
            messages[code] = lib.strerror(code)
        assert len(set(messages.values())) == len(messages), messages
        for unknown in (9999, -1, 6):
            assert lib.strerror(unknown) is not None


# ---------------------------------------------------------------------------
# Lifetime

def test_weights_struct_not_kept(small):
    """The library keeps the arrays' pointers, not the struct that held them."""
    lib, ref_ctx, weights = small
    arrays = lib.prepare_weights(weights)
    struct = lib.make_struct(arrays)
    handle = ctypes.c_void_p()
    assert lib.c_create(ctypes.byref(struct), ctypes.byref(handle)) == OK
    try:
        for key, _ in struct._fields_:
            setattr(struct, key, None)
        del struct
        gc.collect()
        x = random_input(T, H, 6)
        y = np.empty((T, H), dtype=np.float32)
        assert lib.c_forward(handle.value, ptr(x), T, ptr(y)) == OK
        assert np.array_equal(y, lib.forward(ref_ctx, x))
        y_ref = reference(SMALL, weights, x)[0]
        assert np.abs(y - y_ref).max() <= 1e-4 * max(1, np.abs(y_ref).max())
    finally:
        lib.c_destroy(handle.value)
    del arrays


def test_destroy_null_is_harmless(libs):
    libs["abi_small"].c_destroy(None)


def test_contexts_independent(libs):
    lib = libs["abi_small"]
    x = random_input(T, H, 8)
    a = lib.create(random_weights(SMALL, 10))
    b = lib.create(random_weights(SMALL, 11))
    ya = lib.forward(a, x)
    a.destroy()
    yb = lib.forward(b, x)
    b.destroy()
    assert not np.allclose(ya, yb)
    assert np.abs(yb - reference(SMALL, random_weights(SMALL, 11), x)[0]).max() < 1e-4


def test_concurrent_forward(small):
    """SPEC §4: concurrent forward calls on one context with distinct outputs."""
    lib, ctx, _ = small
    xs = [random_input(257, H, 20 + i) for i in range(4)]
    want = [lib.forward(ctx, x) for x in xs]
    got = [None] * len(xs)
    errors = []

    def run(i):
        try:
            for _ in range(20):
                got[i] = lib.forward(ctx, xs[i])
        except Exception as e:  # surfaced below; a thread's exception is lost
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


# ---------------------------------------------------------------------------
# Alignment

def unaligned_copy(array, offset=1):
    """`array`'s bytes at an address `offset` past a 64-byte boundary: a view
    into a larger byte buffer, kept alive by the view."""
    raw = np.zeros(array.nbytes + 64 + offset, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    view = raw[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    view[...] = array
    assert view.ctypes.data % array.itemsize != 0
    return view


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_unaligned_weights_are_copied(libs, name):
    """Weights at odd addresses give the aligned weights' bits, and the
    copies create makes are the context's: the originals may change."""
    lib = libs[name]
    weights = random_weights(CONFIGS[name], 21)
    x = random_input(T, H, 22)
    with lib.create(weights) as aligned:
        expected = lib.forward(aligned, x)
    arrays = lib.prepare_weights(weights)
    shifted = {key: None if a is None else unaligned_copy(a)
               for key, a in arrays.items()}
    struct = lib.make_struct(shifted)
    handle = ctypes.c_void_p()
    assert lib.c_create(ctypes.byref(struct), ctypes.byref(handle)) == OK
    try:
        for a in shifted.values():
            if a is not None:
                a[...] = 0
        y = np.full((T, H), np.nan, dtype=np.float32)
        assert lib.c_forward(handle.value, ptr(x), T, ptr(y)) == OK
        assert np.array_equal(y, expected)
    finally:
        lib.c_destroy(handle.value)


def test_misaligned_inputs_and_outputs_are_refused(small):
    lib, ctx, _ = small
    x, y, ids, w = buffers()
    for args in ((unaligned_copy(x), y), (x, unaligned_copy(y))):
        assert lib.c_forward(ctx.handle, ptr(args[0]), T, ptr(args[1])) == ERROR_MISALIGNED
    for a, b, c in ((unaligned_copy(x), ids, w), (x, unaligned_copy(ids), w),
                    (x, ids, unaligned_copy(w))):
        assert lib.c_route(ctx.handle, ptr(a), T, ptr(b), ptr(c)) == ERROR_MISALIGNED
    assert_message(lib, ERROR_MISALIGNED)
    assert not y.any() and not ids.any() and not w.any()

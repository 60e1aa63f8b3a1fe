"""The CUDA libraries on an NVIDIA GPU: the conformance configs and
tolerances of test_conformance.py, test_dtypes.py and test_hierarchical.py
with "target": "cuda", device buffers allocated and copied through the CUDA
driver API (moe_mlir.cuda), plus forward_async on a caller's stream and
concurrent calls; docs/FAMILY-RULES.md's cases are test_gpu_emulation.py's
FAMILY. Skipped, with the reason, where there is no toolkit, driver or
device."""

import threading

import numpy as np
import pytest

from cuda_tools import NO_TOOLKIT, cuda_toolkit
from moe_mlir.abi import Library, compile_config, decode
from moe_mlir.cuda import CUDA_ERROR_NOT_READY, CUDA_SUCCESS, driver, unavailable_reason
from moe_mlir.reference import random_input, random_weights
from test_conformance import ALL, cfg, check_token_counts, params
from test_dtypes import params as dtype_params
from test_gpu_emulation import FAMILY, FAMILY_HIERARCHICAL
from test_hierarchical import check_hierarchical
from test_hierarchical import params as hierarchical_params

REASON = NO_TOOLKIT if cuda_toolkit() is None else unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no GPU to run on: {REASON}")


def on_gpu(config):
    return dict(config, target="cuda")


@pytest.fixture(scope="module")
def libraries(tmp_path_factory):
    cache = {}

    def get(config):
        config = on_gpu(config)
        if config["name"] not in cache:
            so = compile_config(config, tmp_path_factory.mktemp(config["name"]))
            cache[config["name"]] = Library(so, config["name"], config)
        return cache[config["name"]], config

    return get


def test_device():
    print(f"running on {driver().name()}")


@pytest.mark.parametrize("config,token_counts", params(ALL))
def test_conformance_on_gpu(libraries, config, token_counts):
    lib, config = libraries(config)
    check_token_counts(lib, config, token_counts)


@pytest.mark.parametrize("config,token_counts", dtype_params())
def test_low_precision_on_gpu(libraries, config, token_counts):
    lib, config = libraries(config)
    check_token_counts(lib, config, token_counts, tolerance=2e-2)


@pytest.mark.parametrize("config,token_counts,tolerance", hierarchical_params())
def test_hierarchical_on_gpu(libraries, config, token_counts, tolerance):
    lib, config = libraries(config)
    check_hierarchical(lib, config, token_counts, tolerance)


@pytest.mark.parametrize("config,token_counts,tolerance",
                         [pytest.param(c, ts, tol, id=c["name"]) for c, ts, tol in FAMILY])
def test_family_rules_on_gpu(libraries, config, token_counts, tolerance):
    lib, config = libraries(config)
    check_token_counts(lib, config, token_counts, tolerance)


@pytest.mark.parametrize("config,token_counts,tolerance",
                         [pytest.param(c, ts, tol, id=c["name"])
                          for c, ts, tol in FAMILY_HIERARCHICAL])
def test_family_hierarchies_on_gpu(libraries, config, token_counts, tolerance):
    lib, config = libraries(config)
    check_hierarchical(lib, config, token_counts, tolerance)


# Large enough that the kernels are still running when the call returns.
BIG = cfg("gpu_async_big", 1024, 2816, 8, 2, dtype="bf16")


def test_forward_async_runs_on_the_callers_stream(libraries):
    lib, config = libraries(BIG)
    cuda = driver()
    weights = random_weights(config, 7)
    x = random_input(2048, config["hidden_size"], 8)
    with lib.create(weights) as ctx:
        expected = lib.forward(ctx, x)
        stream = cuda.stream()
        try:
            # The device x and y must live until the stream has run.
            code, device_x, y = lib.forward_async(ctx, x, stream)
            assert code == 0, lib.strerror(code)
            # The work is queued on that stream, and the call did not wait.
            assert cuda.query(stream) == CUDA_ERROR_NOT_READY
            cuda.synchronize(stream)
            assert cuda.query(stream) == CUDA_SUCCESS
            assert np.array_equal(decode(y.download(), config["dtype"]), expected)
            del device_x
        finally:
            cuda.destroy_stream(stream)


def test_concurrent_forward_on_one_context(libraries):
    lib, config = libraries(cfg("gpu_threads", 64, 128, 8, 2, shared_intermediate_size=32))
    weights = random_weights(config, 3)
    inputs = [random_input(33 + 7 * i, config["hidden_size"], i) for i in range(4)]
    with lib.create(weights) as ctx:
        expected = [lib.forward(ctx, x) for x in inputs]
        results = [None] * len(inputs)

        def run(i):
            results[i] = lib.forward(ctx, inputs[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for got, want in zip(results, expected):
        assert np.array_equal(got, want)

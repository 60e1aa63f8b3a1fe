"""moe_mlir.torch.MoEModule, when PyTorch is installed."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import tool  # noqa: E402
from moe_mlir import MoEConfig, compile  # noqa: E402
from moe_mlir.reference import random_input, random_weights  # noqa: E402
from moe_mlir.torch import MoEModule  # noqa: E402


def test_module_matches_layer():
    os.environ.setdefault("MOE_COMPILE", str(tool("moe-compile")))
    config = MoEConfig("fe_torch", 16, 8, 4, 2)
    weights = random_weights(config.to_dict(), seed=0)
    module = MoEModule(config, {k: torch.from_numpy(v) for k, v in weights.items()})
    x = random_input(5, 16, seed=1)
    y = module(torch.from_numpy(x).reshape(1, 5, 16))
    assert y.shape == (1, 5, 16) and y.dtype == torch.float32
    np.testing.assert_array_equal(y.reshape(5, 16).numpy(), compile(config)(weights)(x))
    ids, w = module.route(torch.from_numpy(x))
    assert ids.shape == (5, 2)

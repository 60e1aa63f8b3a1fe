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


def test_no_silent_gradient():
    """The layer has no backward: a call autograd would need a gradient
    through raises instead of returning a tensor without a grad_fn."""
    os.environ.setdefault("MOE_COMPILE", str(tool("moe-compile")))
    config = MoEConfig("fe_torch", 16, 8, 4, 2)
    weights = random_weights(config.to_dict(), seed=0)
    module = MoEModule(config, weights)
    x = torch.from_numpy(random_input(5, 16, seed=1)).requires_grad_()
    with pytest.raises(RuntimeError, match="no backward"):
        (x + module(x)).sum().backward()
    with torch.no_grad():
        y = module(x)
    assert not y.requires_grad
    assert torch.equal(module(x.detach()), y)


def test_capacity_per_sequence():
    """With a capacity factor each sequence of a [B, S, H] batch is routed on
    its own, as Hugging Face's Switch Transformers do: the same as calling
    the layer once per sequence, and not the same as one batch of B·S."""
    os.environ.setdefault("MOE_COMPILE", str(tool("moe-compile")))
    config = MoEConfig("fe_torch_capacity", 16, 8, 4, 1, gated=False, activation="relu",
                       normalize_top_k=False, capacity_factor=1.0)
    weights = random_weights(config.to_dict(), seed=2)
    module = MoEModule(config, weights)
    x = random_input(64, 16, seed=3).reshape(2, 32, 16)
    y = module(torch.from_numpy(x)).numpy()
    layer = compile(config)(weights)
    per_sequence = np.stack([layer(x[0]), layer(x[1])])
    np.testing.assert_array_equal(y, per_sequence)
    assert not np.array_equal(layer(x.reshape(64, 16)).reshape(2, 32, 16), per_sequence)
    ids, _ = module.route(torch.from_numpy(x))
    np.testing.assert_array_equal(ids.numpy()[1], layer.route(x[1])[0])
    # No sequences, or empty ones.
    for shape in ((0, 32, 16), (2, 0, 16)):
        assert module(torch.zeros(shape)).shape == shape
        assert layer.route(np.zeros(shape, np.float32))[0].shape == shape[:-1] + (1,)

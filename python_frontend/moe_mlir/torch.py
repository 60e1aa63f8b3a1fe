"""A compiled layer as a torch.nn.Module (CPU tensors; inference only)."""

import numpy as np
import torch

from .compiler import CompiledMoE, compile as compile_layer
from .config import MoEConfig


class MoEModule(torch.nn.Module):
    """Runs a compiled MoE layer on CPU tensors of shape [..., H].

    `layer` is a CompiledMoE, or a MoEConfig / config dict to compile;
    `weights` the SPEC §4 fields as tensors or arrays. The weights are
    buffers of the module (not parameters): the compiled layer has no
    backward pass.
    """

    def __init__(self, layer, weights):
        super().__init__()
        compiled = layer if isinstance(layer, CompiledMoE) else compile_layer(layer)
        self.config: MoEConfig = compiled.config
        arrays = {}
        for key, value in weights.items():
            if value is None:
                continue
            if isinstance(value, torch.Tensor):
                value = value.detach().to("cpu", torch.float32).numpy()
            arrays[key] = np.ascontiguousarray(value, dtype=np.float32)
            self.register_buffer(key, torch.from_numpy(arrays[key]), persistent=False)
        self._layer = compiled(arrays)

    def forward(self, x):
        """The layer on x ([..., H]); a batch of sequences [..., S, H] is
        routed per sequence where a capacity counts its tokens."""
        if x.device.type != "cpu":
            raise ValueError("MoEModule runs on CPU tensors")
        if x.requires_grad and torch.is_grad_enabled():
            # Returning a tensor without a grad_fn would drop the layer's
            # gradient silently.
            raise RuntimeError("MoEModule has no backward: x requires grad; call it "
                               "under torch.no_grad() or torch.inference_mode(), or "
                               "pass x.detach()")
        y = self._layer(x.detach().to(torch.float32).numpy())
        return torch.from_numpy(np.ascontiguousarray(y)).to(x.dtype)

    def route(self, x):
        ids, w = self._layer.route(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(ids), torch.from_numpy(w)

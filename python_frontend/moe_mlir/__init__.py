"""moe_mlir: describe, compile and run Mixture-of-Experts layers with moe-mlir.

    import moe_mlir
    config = moe_mlir.from_hf_config("config.json")          # or MoEConfig(...)
    layer = moe_mlir.compile(config)(weights)                 # weights: SPEC §4 arrays
    y = layer(x)
"""

from .abi import AbiError, CompileError
from .compiler import CompiledMoE, MoELayer, cache_dir, compile
from .config import ConfigError, MoEConfig
from .hf import HFConfigError, from_hf_config, is_moe_layer
from .weights import WeightError, load_layer_weights

__version__ = "0.1.0"

__all__ = [
    "AbiError", "CompileError", "CompiledMoE", "ConfigError", "HFConfigError", "MoEConfig",
    "MoELayer", "WeightError", "cache_dir", "compile", "from_hf_config", "is_moe_layer",
    "load_layer_weights",
]

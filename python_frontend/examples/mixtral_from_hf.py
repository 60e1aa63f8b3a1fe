"""Hugging Face config.json -> compiled MoE layer -> run it on random weights
and compare with the float64 reference of SPEC §1.

Usage: python3 mixtral_from_hf.py [CONFIG_JSON] [--tokens T] [--dtype f32|bf16|f16]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # runs from a checkout without installing

import moe_mlir  # noqa: E402
from moe_mlir.abi import representable  # noqa: E402
from moe_mlir.reference import near_ties, random_input, random_weights, reference  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?",
                        default=str(HERE.parent / "tests" / "hf_configs" / "mixtral.json"))
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--dtype", default="f32")
    args = parser.parse_args()

    config = moe_mlir.from_hf_config(args.config, dtype=args.dtype)
    print(f"{config.name}: H={config.hidden_size} F={config.intermediate_size} "
          f"E={config.num_experts} top_k={config.top_k} dtype={config.dtype}")
    layer = moe_mlir.compile(config)(random_weights(config.to_dict(), seed=0))

    x = random_input(args.tokens, config.hidden_size, seed=1)
    y = layer(x)
    ids, _ = layer.route(x)

    weights = {k: representable(v, config.dtype)
               for k, v in random_weights(config.to_dict(), seed=0).items()}
    xr = representable(x, config.dtype)
    ref, ref_ids, _, choice = reference(config.to_dict(), weights, xr)
    tied, _ = near_ties(config.to_dict(), choice)
    if tied.any():  # SPEC §1: within 1e-5 either choice is correct
        forced = reference(config.to_dict(), weights, xr, forced_ids=ids)[0]
        ref = np.where(tied[:, None], forced, ref)
    error = float(np.abs(y - ref).max())
    tolerance = (1e-4 if config.dtype == "f32" else 2e-2) * max(1.0, float(np.abs(ref).max()))
    same_routing = bool(np.array_equal(ids[~tied], ref_ids[~tied]))
    print(f"max |y - ref| = {error:.3g} (tolerance {tolerance:.3g}); "
          f"routing {'matches' if same_routing else 'DIFFERS'}")
    return 0 if error <= tolerance and same_routing else 1


if __name__ == "__main__":
    sys.exit(main())

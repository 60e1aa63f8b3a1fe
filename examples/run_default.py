"""The main job: compile the default Mixtral-shaped layer (Mixtral-8x7B's
expert count and top-k, its sizes divided by 8), run it on random data through
its C ABI, check it against the float64 reference of SPEC §1, and time it.

Usage: python3 examples/run_default.py [--config FILE] [--tokens T] [--calls N]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python_frontend"))

from moe_mlir.abi import Library, compile_config  # noqa: E402
from moe_mlir.reference import near_ties, random_input, random_weights, reference, with_defaults  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "examples" / "default.json"))
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()

    config = json.loads(Path(args.config).read_text())
    c = with_defaults(config)
    H, F, E, k = (c["hidden_size"], c["intermediate_size"], c["num_experts"],
                  c["top_k"])
    weights = random_weights(config, seed=0)
    x = random_input(args.tokens, H, seed=1)

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        library = Library(compile_config(config, out), config["name"], config)
        compile_seconds = time.perf_counter() - start
        with library.create(weights) as ctx:
            y = library.forward(ctx, x)
            ids, _ = library.route(ctx, x)
            times = []
            for _ in range(args.calls):
                start = time.perf_counter()
                library.forward(ctx, x, out=y)
                times.append(time.perf_counter() - start)

    ref, ref_ids, _, choice = reference(config, weights, x)
    # SPEC §1: where choice values are within 1e-5, either expert is correct;
    # judge those tokens against the reference run with the library's choice.
    tied, _ = near_ties(config, choice)
    if tied.any():
        forced, _, _, _ = reference(config, weights, x, forced_ids=ids)
        ref = np.where(tied[:, None], forced, ref)
    routing_ok = bool(np.array_equal(ids[~tied], ref_ids[~tied]))
    error = float(np.abs(y.astype(np.float64) - ref).max()) if y.size else 0.0
    tolerance = 1e-4 * max(1.0, float(np.abs(ref).max()) if ref.size else 0.0)

    per_call = float(np.median(times))
    flops = 2.0 * args.tokens * k * (3 if c["gated"] else 2) * H * F
    print(f"{config['name']}: H={H} F={F} E={E} top_k={k} tokens={args.tokens} "
          f"(compiled in {compile_seconds:.1f} s)")
    print(f"  max|y - ref| = {error:.3e}  tolerance {tolerance:.3e}  "
          f"routing {'matches' if routing_ok else 'DIFFERS'}")
    print(f"  {per_call * 1e3:.2f} ms per forward call (median of {args.calls}), "
          f"{flops / per_call / 1e9:.2f} active GFLOP/s")
    ok = routing_ok and error <= tolerance
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

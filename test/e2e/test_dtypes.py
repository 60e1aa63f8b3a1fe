"""bf16 and f16 end to end: weights, x and y in that type, f32 routing and
accumulation, judged by SPEC §1's 2e-2 tolerance against the f64 reference
evaluated on the same (rounded) inputs."""

import pytest

from moe_mlir.abi import Library, compile_config
from test_conformance import cfg, check_token_counts

CONFIGS = [
    (cfg("dt_e8_k2_silu", 64, 96, 8, 2), [0, 1, 3, 64]),
    (cfg("dt_e16_group_shared", 32, 24, 16, 4, scoring="sigmoid",
         selection_bias=True, router_bias=True, n_group=4, topk_group=2,
         routed_scaling_factor=2.5, shared_intermediate_size=48,
         shared_expert_gate=True), [1, 64]),
    (cfg("dt_plain_gelu_h17", 17, 100, 4, 1, gated=False, activation="gelu"),
     [3, 257]),
    (cfg("dt_capacity", 24, 20, 8, 2, capacity_factor=0.75), [64]),
    (cfg("dt_expert_choice", 24, 20, 8, 1, routing="expert_choice",
         capacity_factor=1.5, activation="gelu_tanh"), [64]),
]


def params():
    return [pytest.param(dict(c, name=f"{c['name']}_{dtype}", dtype=dtype), ts,
                         id=f"{c['name']}-{dtype}")
            for c, ts in CONFIGS for dtype in ("bf16", "f16")]


@pytest.mark.parametrize("config,token_counts", params())
def test_low_precision_conformance(tmp_path, config, token_counts):
    lib = Library(compile_config(config, tmp_path), config["name"], config)
    check_token_counts(lib, config, token_counts, tolerance=2e-2)

"""The linalg stage under other vector widths than this machine's target:
--cpu-pipeline-options="vector-lanes=N" packs rows N at a time and sizes
every register tile for N lanes (16: AVX-512's tiles, which run here as
pairs of vectors; 4: narrower than any target's), against the f64 reference
(SPEC §1's 2e-2 tolerance for bf16). Rows per expert run from 0 through the
row-wise form, a partial group, one group and more than one cache block of
rows, with long and odd reductions."""

import pytest

from moe_mlir.abi import Library, compile_config
from test_conformance import cfg, check_token_counts

LANES = [4, 8, 16]

CONFIGS = [
    (cfg("tiles_gated", 17, 100, 8, 2), [0, 1, 2, 3, 64, 257]),
    (cfg("tiles_plain_shared", 40, 36, 8, 2, gated=False, shared_intermediate_size=50,
         shared_expert_gate=True), [1, 5, 64]),
    (cfg("tiles_capacity", 24, 40, 4, 2, capacity_factor=0.5), [3, 64]),
    # About 300 rows per expert: more than one cache block of 256 rows.
    (cfg("tiles_cache_blocks", 512, 512, 2, 1), [600]),
    # A down projection 8192 long.
    (cfg("tiles_long_down", 16, 8192, 2, 1), [600]),
    # bf16 weights, which the packed form widens once per cache block.
    (cfg("tiles_gated_bf16", 17, 100, 8, 2, dtype="bf16"), [0, 3, 64, 257]),
]


@pytest.mark.parametrize("lanes", LANES)
@pytest.mark.parametrize("config,token_counts", CONFIGS,
                         ids=[c["name"] for c, _ in CONFIGS])
def test_tiling_conforms(tmp_path, config, token_counts, lanes):
    so = compile_config(config, tmp_path,
                        extra_args=[f"--cpu-pipeline-options=vector-lanes={lanes}"])
    tolerance = 1e-4 if config.get("dtype", "f32") == "f32" else 2e-2
    check_token_counts(Library(so, config["name"], config), config, token_counts,
                       tolerance)

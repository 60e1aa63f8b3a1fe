"""The expert kernels under other tilings than the one moe-configure-cpu
picks for this machine's target (--cpu-pipeline-options overrides it in
every op's lowering config): the other target's register tiles,
odd tile sizes, reductions cut into passes with tails (dot products and
outer products alike), outer-product tiles from one row on or not at all,
and dot-product tiles of consecutive or strided columns, against the f64
reference (SPEC §1's 2e-2 tolerance for bf16). Rows per expert run from 0
through several row blocks, and past the rows whose input fits one block of
the expert loop."""

import pytest

from moe_mlir.abi import Library, compile_config
from test_conformance import cfg, check_token_counts

OPTIONS = ("vector-lanes", "tile-rows", "tile-weight-rows", "reduction-block",
           "row-block", "broadcast-weight-rows", "broadcast-min-rows",
           "broadcast-reduction-block", "strided-columns")

# Values of OPTIONS, all set, so that the choice for this machine's -march
# does not show through.
TILES = [
    (16, 4, 4, 1024, 32, 12, 16, 128, "true"),  # the AVX-512 choice
    (8, 2, 4, 1024, 32, 6, 8, 256, "true"),     # the AVX2 choice
    (8, 2, 4, 16, 4, 0, 1, 0, "false"),         # passes of 16 with a tail, blocks
                                                # of 4 rows, consecutive columns
    (8, 1, 2, 8, 3, 2, 1, 5, "true"),           # one row per tile; outer products
                                                # from one row, past 16 rows in
                                                # passes of 5 with a tail
    (4, 3, 6, 12, 5, 4, 5, 7, "true"),          # odd tiles, a remainder of rows in
                                                # every block and of columns
    (8, 2, 4, 0, 32, 0, 1, 0, "false"),         # one pass of dot products only,
                                                # consecutive columns
]

CONFIGS = [
    (cfg("tiles_gated", 17, 100, 8, 2), [0, 1, 2, 3, 64, 257]),
    (cfg("tiles_plain_shared", 40, 36, 8, 2, gated=False, shared_intermediate_size=50,
         shared_expert_gate=True), [1, 5, 64]),
    (cfg("tiles_capacity", 24, 40, 4, 2, capacity_factor=0.5), [3, 64]),
    # About 300 rows of 2048 elements per expert: more than the 256 rows
    # whose f32 input fits one block of moe-lower-experts (2 MiB), so the
    # gate and up projections run as two blocks of about 150 rows.
    (cfg("tiles_row_blocks", 2048, 12, 2, 1), [600]),
    # A down projection 8192 long: 64 rows of its input fill 2 MiB, but its
    # blocks take up to 128 rows (8 MiB), so an expert's rows (300 on
    # average) run as several blocks of one size.
    (cfg("tiles_long_down", 16, 8192, 2, 1), [600]),
    # bf16 weights, which outer-product tiles widen to f32 once per pass.
    (cfg("tiles_gated_bf16", 17, 100, 8, 2, dtype="bf16"), [0, 3, 64, 257]),
]


@pytest.mark.parametrize("tile", TILES, ids=[",".join(map(str, t)) for t in TILES])
@pytest.mark.parametrize("config,token_counts", CONFIGS,
                         ids=[c["name"] for c, _ in CONFIGS])
def test_tiling_conforms(tmp_path, config, token_counts, tile):
    options = " ".join(f"{name}={value}" for name, value in zip(OPTIONS, tile))
    so = compile_config(config, tmp_path,
                        extra_args=[f"--cpu-pipeline-options={options}"])
    tolerance = 1e-4 if config.get("dtype", "f32") == "f32" else 2e-2
    check_token_counts(Library(so, config["name"], config), config, token_counts,
                       tolerance)

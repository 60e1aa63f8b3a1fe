"""examples/expert_parallel_mpi.sh splits a layer by expert over MPI ranks; the
y it gathers matches the unsharded layer's."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import moe_mlir
from moe_mlir.abi import REPO_ROOT, moe_compile_path

SCRIPT = REPO_ROOT / "examples" / "expert_parallel_mpi.sh"
RANK_LINE = re.compile(r"rank=(\d+) experts=\[(\d+),(\d+)\) tokens=(\d+) "
                       r"rows_sent=(\d+) rows_received=(\d+)")
TOTAL_LINE = re.compile(r"ranks=(\d+) tokens=(\d+) checksum=(\S+)")

# A shared expert with its gate, so that the recipe's weight flags are used.
CONFIG = {"name": "ep_mpi", "hidden_size": 48, "intermediate_size": 40, "num_experts": 8,
          "top_k": 2, "shared_intermediate_size": 24, "shared_expert_gate": True}


@pytest.fixture(scope="module")
def mpi():
    for tool in ("mpirun", "mpicc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found")


def run_script(config_path, ranks, outdir, args):
    env = dict(os.environ, MOE_COMPILE=str(moe_compile_path()))
    return subprocess.run(["bash", str(SCRIPT), str(config_path), str(ranks), str(outdir),
                           *args], capture_output=True, text=True, env=env, timeout=120)


def read_dump(path, config):
    """(tokens per rank, weights, x, y) from the program's --dump file."""
    data = path.read_bytes()
    assert data[:8] == b"MOEEPv1\0"
    ranks = int(np.frombuffer(data, np.int64, 1, 8)[0])
    tokens = np.frombuffer(data, np.int64, ranks, 16).tolist()
    floats = np.frombuffer(data, np.float32, offset=16 + 8 * ranks)
    c = moe_mlir.MoEConfig(**config)
    shapes = c.weight_shapes()
    weights, at = {}, 0
    for key in c.weight_keys():  # the order of the weights struct
        if key in shapes:
            n = int(np.prod(shapes[key]))
            weights[key] = floats[at:at + n].reshape(shapes[key])
            at += n
    T, H = sum(tokens), c.hidden_size
    assert floats.size == at + 2 * T * H
    x = floats[at:at + T * H].reshape(T, H)
    y = floats[at + T * H:].reshape(T, H)
    return tokens, weights, x, y


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("ep_mpi") / "ep_mpi.json"
    path.write_text(json.dumps(CONFIG, indent=1) + "\n")
    return path


@pytest.fixture(scope="module")
def full_layer():
    return moe_mlir.compile(CONFIG, cache=False)


# Uneven token counts, one rank with none; 3 ranks split 8 experts 2/3/3.
@pytest.mark.parametrize("tokens", [(45, 19), (23, 0, 41)], ids=["2ranks", "3ranks"])
def test_matches_unsharded_layer(mpi, tmp_path, config_path, full_layer, tokens):
    ranks, E = len(tokens), CONFIG["num_experts"]
    dump = tmp_path / "y.bin"
    proc = run_script(config_path, ranks, tmp_path, ["--seed", "7", "--dump", str(dump),
                                                     *map(str, tokens)])
    assert proc.returncode == 0, proc.stdout + proc.stderr

    lines = proc.stdout.strip().splitlines()
    per_rank = sorted(tuple(map(int, m.groups())) for m in map(RANK_LINE.fullmatch, lines)
                      if m)
    assert [p[:4] for p in per_rank] == [
        (r, r * E // ranks, (r + 1) * E // ranks, tokens[r]) for r in range(ranks)], lines
    # Every kept slot is sent once and received once.
    K = CONFIG["top_k"]
    assert sum(p[4] for p in per_rank) == sum(p[5] for p in per_rank) == K * sum(tokens)
    total = [TOTAL_LINE.fullmatch(line) for line in lines if TOTAL_LINE.fullmatch(line)]
    assert len(total) == 1 and int(total[0].group(2)) == sum(tokens), lines

    got_tokens, weights, x, y = read_dump(dump, CONFIG)
    assert got_tokens == list(tokens)
    with full_layer(weights) as layer:
        ref = layer(x)
    err = float(np.max(np.abs(y - ref)))
    scale = max(1.0, float(np.max(np.abs(ref))))
    identical = np.array_equal(y.view(np.uint32), ref.view(np.uint32))
    print(f"{ranks} ranks, tokens {tokens}: max|y-ref| = {err:.3g} "
          f"(bit-identical: {identical})")
    assert err <= 1e-4 * scale, err


def test_rejects_a_library_built_for_another_rank(mpi, tmp_path, config_path):
    # Built for 2 ranks, run in swapped order: rank 0 links experts [4, 8).
    proc = run_script(config_path, 2, tmp_path, ["3", "5"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    version = subprocess.run(["mpirun", "--version"], capture_output=True, text=True).stdout
    flags = []
    if "Open MPI" in version:  # as the script does
        flags = ["--oversubscribe"] + (["--allow-run-as-root"] if os.getuid() == 0 else [])
    proc = subprocess.run(["mpirun", *flags, "-np", "1", str(tmp_path / "rank1" /
                           "expert_parallel_mpi"), "3", "5", ":", "-np", "1",
                           str(tmp_path / "rank0" / "expert_parallel_mpi"), "3", "5"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "this rank holds experts [0, 4) of 8, but its library was built for [4, 8)" \
        in proc.stderr, proc.stderr

"""The generated library splits each projection's columns across OpenMP
threads; every output element is still summed in one order, so results are
bit-identical whatever OMP_NUM_THREADS is."""

import os
import subprocess
import sys
from pathlib import Path

from moe_mlir.abi import compile_config
from test_conformance import cfg

FRONTEND = Path(__file__).resolve().parents[2] / "python_frontend"

# Runs in a fresh process so that OMP_NUM_THREADS takes effect.
CHILD = """
import hashlib, sys
sys.path.insert(0, {frontend!r})
from moe_mlir.abi import Library
from moe_mlir.reference import random_input, random_weights
config = {config!r}
lib = Library({so!r}, config["name"], config)
with lib.create(random_weights(config, 3)) as ctx:
    y = lib.forward(ctx, random_input(67, config["hidden_size"], 4))
print(hashlib.sha256(y.tobytes()).hexdigest())
"""


def test_bits_do_not_depend_on_thread_count(tmp_path):
    config = cfg("threads_e8_k2_shared", 48, 72, 8, 2, shared_intermediate_size=40,
                 shared_expert_gate=True)
    so = compile_config(config, tmp_path)
    code = CHILD.format(frontend=str(FRONTEND), config=config, so=str(so))
    digests = {}
    for threads in ("1", "2", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        digests[threads] = out[-1]
    assert len(set(digests.values())) == 1, digests

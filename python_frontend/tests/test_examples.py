"""The examples run and report success."""

import os
import subprocess
import sys

import pytest

from conftest import FRONTEND, tool

EXAMPLES = FRONTEND / "examples"


@pytest.mark.parametrize("args,expect", [
    (["mixtral_from_hf.py"], "routing matches"),
    (["mixtral_from_hf.py", str(FRONTEND / "tests" / "hf_configs" / "qwen2_moe.json"),
      "--dtype", "bf16", "--tokens", "17"], "routing matches"),
    (["regression.py"], "test MSE"),
])
def test_example(args, expect):
    env = dict(os.environ, MOE_COMPILE=os.environ.get("MOE_COMPILE", str(tool("moe-compile"))))
    proc = subprocess.run([sys.executable, str(EXAMPLES / args[0]), *args[1:]], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert expect in proc.stdout

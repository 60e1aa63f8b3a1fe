"""examples/run_moe.c builds against a generated header and library and runs."""

import re
import shutil
import subprocess

import pytest

from moe_mlir.abi import REPO_ROOT, compile_config
from moe_mlir.reference import with_defaults

SOURCE = REPO_ROOT / "examples" / "run_moe.c"
LINE = re.compile(r"tokens=(\d+) time_per_call_ms=(\d+\.\d+) checksum=(\S+)")

CONFIGS = [
    {"name": "example_plain", "hidden_size": 64, "intermediate_size": 128,
     "num_experts": 8, "top_k": 2},
    {"name": "example_full", "hidden_size": 17, "intermediate_size": 24,
     "num_experts": 16, "top_k": 4, "scoring": "sigmoid", "router_bias": True,
     "selection_bias": True, "n_group": 4, "topk_group": 2, "gated": False,
     "activation": "gelu", "shared_intermediate_size": 12, "shared_expert_gate": True},
]


def c_compiler():
    for cc in ("clang-22", "cc", "clang", "gcc"):
        if shutil.which(cc):
            return cc
    pytest.skip("no C compiler")


def macros(config):
    c = with_defaults(config)
    return [
        f"-DMOE_HEADER=\"{c['name']}.h\"",
        f"-DMOE_PREFIX={c['name']}",
        f"-DMOE_H={c['hidden_size']}",
        f"-DMOE_F={c['intermediate_size']}",
        f"-DMOE_E={c['num_experts']}",
        f"-DMOE_K={c['top_k']}",
        f"-DMOE_GATED={int(c['gated'])}",
        f"-DMOE_FS={c['shared_intermediate_size']}",
        f"-DMOE_SHARED_GATE={int(c['shared_expert_gate'])}",
        f"-DMOE_ROUTER_BIAS={int(c['router_bias'])}",
        f"-DMOE_SELECTION_BIAS={int(c['selection_bias'])}",
    ]


def build(config, outdir, extra=()):
    compile_config(config, outdir)
    exe = outdir / "run_moe"
    cmd = [c_compiler(), "-std=c11", "-O2", "-Wall", "-Wextra", f"-I{outdir}",
           *macros(config), *extra, str(SOURCE), f"-L{outdir}", f"-l{config['name']}",
           f"-Wl,-rpath,{outdir}", "-lm", "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
    assert "warning" not in proc.stderr, proc.stderr
    return exe


@pytest.mark.parametrize("config", CONFIGS, ids=[c["name"] for c in CONFIGS])
def test_run_moe(tmp_path, config):
    exe = build(config, tmp_path)
    checksums = []
    for tokens, iterations in ((64, 3), (1, 1), (0, 2), (64, 1)):
        proc = subprocess.run([str(exe), str(tokens), str(iterations)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1, proc.stdout
        m = LINE.fullmatch(lines[0])
        assert m, f"unexpected output {lines[0]!r}"
        assert int(m.group(1)) == tokens
        checksum = float(m.group(3))
        if tokens == 0:
            assert checksum == 0.0
        if tokens == 64:
            checksums.append(checksum)
    # Same inputs, same result: the generator is deterministic.
    assert checksums[0] == checksums[1] != 0.0


def test_run_moe_reports_library_errors(tmp_path):
    # Built as if the library were gated: it is not, so create rejects gate_proj.
    config = CONFIGS[1]
    exe = build(config, tmp_path, extra=["-UMOE_GATED", "-DMOE_GATED=1"])
    proc = subprocess.run([str(exe), "4"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "create failed" in proc.stderr


def test_run_moe_usage(tmp_path):
    exe = build(CONFIGS[0], tmp_path)
    for args in ([], ["-1"], ["x"], ["4", "0"], ["1", "2", "3"]):
        proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr

"""Libraries for "target": "cuda" on any machine, GPU or not: every gpu_arch
is assembled into the fat binary that cuobjdump lists, the library has no
link-time dependency on the CUDA driver, and without a driver or a device
create() returns ERROR_NO_DEVICE with its message rather than failing to
load or aborting."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cuda_tools import NO_TOOLKIT, cuda_toolkit, cuobjdump
from moe_mlir.abi import compile_config
from test_conformance import cfg

pytestmark = pytest.mark.skipif(cuda_toolkit() is None, reason=NO_TOOLKIT)

FRONTEND = Path(__file__).resolve().parents[2] / "python_frontend"

ROUTED = ["gate_logits", "gate_select", "plan_fill", "plan_count", "plan_offsets",
          "plan_place", "expert_up", "expert_down", "combine"]
CONFIGS = {
    "cu_default": (cfg("cu_default", 32, 48, 8, 2, target="cuda"),
                   ["sm_80", "sm_90"], ROUTED),
    "cu_qwen_bf16": (cfg("cu_qwen_bf16", 32, 24, 16, 4, target="cuda", dtype="bf16",
                         capacity_factor=1.25, shared_intermediate_size=48,
                         shared_expert_gate=True, gpu_arch="sm_80,sm_86,sm_90"),
                     ["sm_80", "sm_86", "sm_90"],
                     ROUTED + ["gate_capacity", "shared_up",
                               "shared_down"]),
    "cu_expert_choice_f16": (cfg("cu_expert_choice_f16", 24, 20, 8, 1, target="cuda",
                                 dtype="f16", routing="expert_choice",
                                 capacity_factor=1.0, gpu_arch="sm_90"),
                             ["sm_90"],
                             [k for k in ROUTED if k != "gate_select"]
                             + ["gate_softmax", "gate_expert_choice"]),
}


@pytest.fixture(scope="module")
def libraries(tmp_path_factory):
    return {name: compile_config(config, tmp_path_factory.mktemp(name))
            for name, (config, _, _) in CONFIGS.items()}


def kernels(name, expected):
    """Every kernel of both entry points: forward's stages, route's gate."""
    gate = [k for k in expected if k.startswith("gate_")]
    return ({f"{name}_forward_{k}" for k in expected}
            | {f"{name}_route_{k}" for k in gate})


@pytest.mark.parametrize("name", CONFIGS)
def test_fat_binary_holds_every_arch(libraries, name):
    tool = cuobjdump()
    if tool is None:
        pytest.skip("no cuobjdump (PATH, the toolkit, or the nvidia-cuda-cuobjdump wheel)")
    _, archs, expected = CONFIGS[name]
    so = libraries[name]
    listing = subprocess.run([str(tool), "-lelf", "-lptx", str(so)], check=True,
                             capture_output=True, text=True).stdout
    assert sorted(re.findall(r"ELF file\s+\d+: \S+\.(sm_\d+)\.cubin", listing)) == archs
    # The newest arch's PTX, for the driver to compile on newer GPUs.
    assert re.findall(r"PTX file\s+\d+: \S+\.(sm_\d+)\.ptx", listing) == [archs[-1]]

    symbols = subprocess.run([str(tool), "-symbols", str(so)], check=True,
                             capture_output=True, text=True).stdout
    per_arch = {}
    for section in re.split(r"\nFatbin elf code:\n", symbols)[1:]:
        arch = re.search(r"arch = (sm_\d+)", section).group(1)
        per_arch[arch] = set(re.findall(r"ENTRY\s+(\w+)", section))
    assert sorted(per_arch) == archs
    for arch, entries in per_arch.items():
        assert entries == kernels(name, expected), arch


def test_no_link_time_dependency_on_the_driver(libraries):
    so = libraries["cu_default"]
    readelf = Path("/usr/lib/llvm-22/bin/llvm-readelf")
    dynamic = subprocess.run([str(readelf), "-d", "--dyn-syms", str(so)], check=True,
                             capture_output=True, text=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", dynamic)
    assert needed and not any("cuda" in lib for lib in needed), needed
    for symbol in ("cu_default_forward_async", "cu_default_forward", "cu_default_create"):
        assert re.search(rf"GLOBAL\s+DEFAULT\s+\d+\s+{symbol}$", dynamic, re.M), symbol
    # The runtime's mgpu* entry points stay inside the library.
    assert not re.search(r"\bmgpu\w+$", dynamic, re.M)


# Runs in a fresh process, so that the environment decides what libcuda.so.1
# the library finds and whether the driver sees a device.
PROBE = """
import ctypes, sys
sys.path.insert(0, {frontend!r})
from moe_mlir.abi import Library
config = {config!r}
lib = Library({so!r}, config["name"], config)
struct = lib.Weights(router=16, gate_proj=32, up_proj=48, down_proj=64)
handle = ctypes.c_void_p(1)
code = lib.c_create(ctypes.byref(struct), ctypes.byref(handle))
print(code, handle.value, lib.strerror(code), sep="|")
print(lib.c_forward(None, None, 1, None), lib.strerror(9), sep="|")
missing = lib.Weights(gate_proj=32, up_proj=48, down_proj=64)
print(lib.c_create(ctypes.byref(missing), ctypes.byref(handle)))
"""


def probe(so, config, env):
    code = PROBE.format(frontend=str(FRONTEND), config=config, so=str(so))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("\n")


def clean_environment(**extra):
    """No stub driver on the loader path; `extra` on top."""
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":")
             if p and "stubs" not in p]
    if paths:
        env["LD_LIBRARY_PATH"] = ":".join(paths)
    env.update(extra)
    return env


def check_no_device(lines):
    create, forward, missing = lines[:3]
    code, handle, message = create.split("|")
    assert (int(code), handle, message) == (8, "None", "no CUDA driver or device")
    assert forward.split("|") == ["1", "a CUDA driver call failed"]
    # Arguments are checked before the driver is looked for.
    assert int(missing) == 3


def test_no_device_is_an_error_code(libraries):
    """No driver here, or one that sees no device (CUDA_VISIBLE_DEVICES="")
    on a GPU machine: create() says ERROR_NO_DEVICE."""
    config = CONFIGS["cu_default"][0]
    check_no_device(probe(libraries["cu_default"], config,
                          clean_environment(CUDA_VISIBLE_DEVICES="")))


def test_stub_driver_is_no_device(libraries, tmp_path):
    """The toolkit's stub libcuda, found as libcuda.so.1, fails cuInit: that
    too is ERROR_NO_DEVICE."""
    stub = cuda_toolkit() / "lib64" / "stubs" / "libcuda.so"
    if not stub.exists():
        pytest.skip(f"the toolkit has no stub driver at {stub}")
    (tmp_path / "libcuda.so.1").symlink_to(stub)
    config = CONFIGS["cu_default"][0]
    env = clean_environment(LD_LIBRARY_PATH=str(tmp_path))
    check_no_device(probe(libraries["cu_default"], config, env))

"""The CUDA target's kernels, run on this CPU: `moe-compile --emulate-gpu`
builds them with each thread block an OpenMP team of its 256 threads
(omp.barrier for the barriers, the shared memory on the stack), and the
result is judged like the CPU libraries, by SPEC §1's conformance rule.

This tests, without a GPU, what the kernels compute: the tiling, the plan's
scans, the masks of ragged sizes, the epilogues and the rounding. What it
cannot test is the NVVM code generation, the driver, and timing-dependent
behavior (test_gpu_conformance.py runs on a GPU). A subset of the
conformance configs, covering every routing feature, and of the
hierarchical configs (moe.refine's kernel, dense levels) keeps it short:
the emulation runs 256 threads per block on a few cores."""

import pytest

from moe_mlir.abi import Library, compile_config
from test_conformance import ALL, check_token_counts
from test_dtypes import CONFIGS as DTYPE_CONFIGS
from test_hierarchical import CASES as HIERARCHICAL_CASES, check_hierarchical

# name -> token counts (the conformance suite's counts, trimmed).
SUBSET = {
    "tc_e1_k1_h17": [1, 257],
    "tc_e8_k2_h17": [3, 257],
    "tc_e8_k4_scaled": [64],
    "tc_e16_k4_sigmoid": [64],
    "tc_e16_k4_router_bias": [1, 64],
    "tc_e16_k2_sigmoid_selbias": [64],
    "tc_e16_group_top2_sum": [64],
    "tc_e16_group_max": [64],
    "tc_e64_k8_v3": [64],
    "dense_e16_sigmoid_groups": [64],
    "tc_plain_gelu": [64],
    "tc_gated_gelu_tanh": [3],
    "tc_shared_gate_qwen": [64],
    "tc_shared_plain_gate_relu": [64],
    "cap_e8_k2": [0, 64],
    "cap_e16_k4_sigmoid": [64],
    "cap_e8_k2_shared": [64],
    "ec_e8": [64],
    "ec_e4_bias_shared": [64],
    "ec_e16_plain_gelu": [64],
}
HIERARCHICAL = {
    "h2_sigmoid_groups": [64],
    "h3_plain_leaves": [0, 3],
    "h2_capacity_shared": [64],
    "h2_expert_choice": [64],
    "h2_dense": [64],
    "h3_bf16": [64],
}
LOW_PRECISION = {
    ("dt_e16_group_shared", "bf16"): [64],
    ("dt_e16_group_shared", "f16"): [64],
    ("dt_plain_gelu_h17", "f16"): [3],
    ("dt_expert_choice", "bf16"): [64],
}


def params():
    out = [pytest.param(c, SUBSET[c["name"]], id=c["name"])
           for c, _ in ALL if c["name"] in SUBSET]
    for c, _ in DTYPE_CONFIGS:
        for dtype in ("bf16", "f16"):
            counts = LOW_PRECISION.get((c["name"], dtype))
            if counts:
                name = f"{c['name']}_{dtype}"
                out.append(pytest.param(dict(c, name=name, dtype=dtype), counts, id=name))
    return out


def test_subset_names_exist():
    names = {c["name"] for c, _ in ALL}
    assert set(SUBSET) <= names
    assert {name for name, _ in LOW_PRECISION} <= {c["name"] for c, _ in DTYPE_CONFIGS}
    assert set(HIERARCHICAL) <= {c["name"] for c, _, _ in HIERARCHICAL_CASES}


@pytest.mark.parametrize("config,token_counts", params())
def test_emulated_gpu_kernels_conform(tmp_path, config, token_counts):
    so = compile_config(config, tmp_path, extra_args=("--emulate-gpu",))
    tolerance = 1e-4 if config.get("dtype", "f32") == "f32" else 2e-2
    check_token_counts(Library(so, config["name"], config), config, token_counts,
                       tolerance)


@pytest.mark.parametrize("config,tolerance",
                         [pytest.param(c, tol, id=c["name"])
                          for c, _, tol in HIERARCHICAL_CASES if c["name"] in HIERARCHICAL])
def test_emulated_gpu_hierarchies_conform(tmp_path, config, tolerance):
    so = compile_config(config, tmp_path, extra_args=("--emulate-gpu",))
    check_hierarchical(Library(so, config["name"], config), config,
                       HIERARCHICAL[config["name"]], tolerance)

"""The CUDA target's kernels, run on this CPU: `moe-compile --emulate-gpu`
builds them with each thread block's 256 threads as loops, one per stretch
between two barriers, the shared memory on the stack, and the result is
judged like the CPU libraries, by SPEC §1's conformance rule.

This tests, without a GPU, what the kernels compute: the tiling, the plan's
scans, the masks of ragged sizes, the epilogues and the rounding. What it
cannot test is the NVVM code generation, the driver, and timing-dependent
behavior (test_gpu_conformance.py runs on a GPU). The whole conformance
suite runs on the SIMT kernels in f32 and again on the tensor-core kernels
in bf16 and f16; the hierarchical configs (moe.refine's kernel, dense
levels) run at their own dtypes, and the dtype configs in bf16 and f16.

FAMILY covers docs/FAMILY-RULES.md's rules in the kernels: the p-norm and
sparsemixer routing, the routing weight on the experts' input (the
expert_up epilogue scales the row's sums, combine adds the rows
unweighted), clamped SwiGLU (routed and shared experts), the expert
biases (gated and not) and the output bias, alone and together, in f32,
bf16 and f16, with capacity, expert choice and a hierarchy;
test_gpu_conformance.py runs the same cases on a GPU."""

import json
import re
import subprocess

import numpy as np
import pytest

from moe_mlir.abi import Library, compile_config, moe_compile_path, representable
from moe_mlir.reference import random_input, random_weights, reference, with_defaults
from test_conformance import ALL, cfg, check_token_counts
from test_dtypes import CONFIGS as DTYPE_CONFIGS
from test_expert_shard import shard_of, sharded_forward
from test_hierarchical import CASES as HIERARCHICAL_CASES, check_hierarchical, hier, level

# docs/FAMILY-RULES.md: (config, token counts, tolerance). Sizes are off
# tile multiples; 257 tokens fill several row tiles of one expert.
FAMILY = [
    # Llama 4: sigmoid top-1 without normalization, the weight on the input,
    # a shared expert.
    (cfg("fr_llama4", 17, 24, 8, 1, scoring="sigmoid", normalize_top_k=False,
         router_weight_on_input=True, shared_intermediate_size=20), [1, 257], 1e-4),
    # The weight on the input with k = 2: slot s is token s / 2, column s % 2.
    (cfg("fr_weight_on_input_k2", 24, 20, 8, 2, router_weight_on_input=True,
         routed_scaling_factor=1.5), [3, 64], 1e-4),
    # GPT-OSS: expert biases and clamped SwiGLU with the default alpha and limit.
    (cfg("fr_gpt_oss", 24, 20, 8, 2, expert_bias=True, activation="clamped_swiglu"),
     [1, 64], 1e-4),
    # GLM-5-Next's clamp: alpha 1, no up offset, on the shared expert too.
    (cfg("fr_glm5_clamp", 16, 20, 8, 2, activation="clamped_swiglu", swiglu_alpha=1.0,
         swiglu_limit=0.8, swiglu_up_offset=0.0, shared_intermediate_size=12), [3, 64], 1e-4),
    # A limit the sums cross often, so that both clamps act.
    (cfg("fr_clamped_tight", 17, 100, 4, 2, activation="clamped_swiglu", swiglu_alpha=1.2,
         swiglu_limit=0.5), [3, 64], 1e-4),
    # The shared expert's clamped SwiGLU, with its sigmoid gate.
    (cfg("fr_clamped_shared", 20, 12, 8, 2, activation="clamped_swiglu", swiglu_limit=0.75,
         shared_intermediate_size=24, shared_expert_gate=True), [1, 64], 1e-4),
    # Not gated: the up and down biases only.
    (cfg("fr_plain_bias_relu", 17, 24, 8, 2, gated=False, activation="relu",
         expert_bias=True), [3, 64], 1e-4),
    # JetMoE: the output bias, with a shared expert.
    (cfg("fr_jetmoe", 24, 20, 8, 2, output_bias=True, shared_intermediate_size=16),
     [0, 3, 64], 1e-4),
    # PhiMoE: sparsemixer top-2.
    (cfg("fr_phimoe", 24, 20, 16, 2, scoring="sparsemixer", normalize_top_k=False),
     [1, 64, 257], 1e-4),
    (cfg("fr_sparsemixer_k4_eps", 16, 12, 8, 4, scoring="sparsemixer", sparsemixer_eps=0.2,
         routed_scaling_factor=2.0), [3, 64], 1e-4),
    # DBRX: the 2-norm of the chosen weights.
    (cfg("fr_dbrx", 24, 20, 16, 4, normalize_p=2), [1, 64], 1e-4),
    (cfg("fr_norm_p3_sigmoid", 16, 12, 8, 2, scoring="sigmoid", normalize_p=3,
         routed_scaling_factor=2.5), [3, 64], 1e-4),
    # Everything at once, with a gated shared expert.
    (cfg("fr_all", 24, 20, 8, 2, scoring="sigmoid", normalize_top_k=False,
         router_weight_on_input=True, expert_bias=True, activation="clamped_swiglu",
         swiglu_limit=1.0, output_bias=True, shared_intermediate_size=16,
         shared_expert_gate=True), [1, 64, 257], 1e-4),
    (cfg("fr_all_bf16", 24, 20, 8, 2, dtype="bf16", router_weight_on_input=True,
         expert_bias=True, activation="clamped_swiglu", output_bias=True,
         shared_intermediate_size=16), [3, 64], 2e-2),
    (cfg("fr_all_f16", 17, 24, 8, 2, dtype="f16", scoring="sparsemixer",
         router_weight_on_input=True, expert_bias=True, activation="clamped_swiglu",
         swiglu_limit=1.0, output_bias=True), [3, 64], 2e-2),
    (cfg("fr_dbrx_bias_bf16", 24, 20, 16, 4, dtype="bf16", normalize_p=2, expert_bias=True,
         output_bias=True), [64], 2e-2),
    # Capacity drops slots: their rows are never computed nor added.
    (cfg("fr_capacity_on_input", 16, 20, 8, 2, capacity_factor=0.75,
         router_weight_on_input=True, expert_bias=True, output_bias=True,
         shared_intermediate_size=16), [64], 1e-4),
    # Expert choice: the weight of (token, expert) scales the expert's input.
    (cfg("fr_expert_choice_on_input", 17, 12, 4, 1, routing="expert_choice",
         capacity_factor=2.0, router_weight_on_input=True, expert_bias=True,
         activation="clamped_swiglu", output_bias=True), [3, 64], 1e-4),
]
# Hierarchies: the leaves' biases and clamped SwiGLU, an inner level's
# sparsemixer or p-norm, the weight on the input and the output bias.
FAMILY_HIERARCHICAL = [
    (hier("fr_h2_sparsemixer_leaves", 20, 4, 2,
          level(4, 2, intermediate_size=12, scoring="sparsemixer",
                activation="clamped_swiglu", swiglu_limit=1.0),
          expert_bias=True, router_weight_on_input=True, output_bias=True,
          shared_intermediate_size=12), [1, 64], 1e-4),
    (hier("fr_h2_norm_p2", 16, 4, 2,
          level(8, 2, intermediate_size=8, normalize_p=2, gated=False, activation="gelu"),
          normalize_p=2, expert_bias=True, output_bias=True), [3, 64], 1e-4),
]


def test_family_names_are_unique_identifiers():
    names = [c["name"] for c, _, _ in FAMILY + FAMILY_HIERARCHICAL]
    assert len(set(names)) == len(names)
    assert not set(names) & {c["name"] for c, _ in ALL}
    assert all(n.isidentifier() and n.isascii() for n in names)


def params():
    out = [pytest.param(c, counts, id=c["name"]) for c, counts in ALL]
    for c, counts in DTYPE_CONFIGS:
        for dtype in ("bf16", "f16"):
            name = f"{c['name']}_{dtype}"
            out.append(pytest.param(dict(c, name=name, dtype=dtype), counts, id=name))
    return out


def tensor_core_params():
    """The whole conformance suite in bf16 and f16 (alternately), at its
    token counts: with the default gpu_arch (sm_80, sm_90) every grouped FFN
    kernel whose projections have whole 8-column fragments runs mma.sync,
    each warp's lanes emulated with the PTX ISA's fragment layouts."""
    out = []
    for index, (c, counts) in enumerate(ALL):
        dtype = ("bf16", "f16")[index % 2]
        name = f"{c['name']}_tc_{dtype}"
        out.append(pytest.param(dict(c, name=name, dtype=dtype), counts, id=name))
    return out


@pytest.mark.parametrize("config,token_counts", params())
def test_emulated_gpu_kernels_conform(tmp_path, config, token_counts):
    so = compile_config(config, tmp_path, extra_args=("--emulate-gpu",))
    tolerance = 1e-4 if config.get("dtype", "f32") == "f32" else 2e-2
    check_token_counts(Library(so, config["name"], config), config, token_counts,
                       tolerance)


@pytest.mark.parametrize("config,token_counts", tensor_core_params())
def test_emulated_tensor_core_kernels_conform(tmp_path, config, token_counts):
    """One call a count (the repeated call for determinism is
    test_emulated_gpu_kernels_conform's to make)."""
    so = compile_config(config, tmp_path, extra_args=("--emulate-gpu",))
    check_token_counts(Library(so, config["name"], config), config, token_counts, 2e-2,
                       repeat=False)


TENSOR_CORES = cfg("tc_layout", 48, 40, 8, 2, dtype="bf16", shared_intermediate_size=32)


def tensor_core_kernels(config):
    """The grouped FFN kernels that should run mma.sync: those whose
    projections all have whole 8-column fragments (N = F for the up
    kernels, H for the down ones); shared_down with its sigmoid gate stays
    SIMT."""
    c = with_defaults(dict(config, target="cuda"))
    H, F = c["hidden_size"], c["intermediate_size"]
    Fs = c.get("shared_intermediate_size") or 0
    kernels = {"expert_up"} if F % 8 == 0 else set()
    if H % 8 == 0:
        kernels.add("expert_down")
    if Fs and Fs % 8 == 0:
        kernels.add("shared_up")
    if Fs and H % 8 == 0 and not c.get("shared_expert_gate"):
        kernels.add("shared_down")
    return kernels


def test_tensor_core_kernels_are_chosen(tmp_path):
    """Which kernels moe-configure-gpu marks for mma.sync (moe.mma_sync on
    their last op), for every config of the tensor-core round and the layout
    test's: so that a marking that regressed cannot leave the round
    passing on SIMT kernels."""
    configs = [param.values[0] for param in tensor_core_params()] + [TENSOR_CORES]
    for config in configs:
        name = config["name"]
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(dict(config, target="cuda")))
        subprocess.run([str(moe_compile_path()), str(path), "-o", str(tmp_path),
                        "--emit=linalg"], check=True)
        text = (tmp_path / f"{name}.linalg.mlir").read_text()
        marked = set(re.findall(r'moe.kernel = "(\w+)", moe.mma_sync', text))
        assert marked == tensor_core_kernels(config), name
    assert tensor_core_kernels(TENSOR_CORES) == {"expert_up", "expert_down", "shared_up",
                                                 "shared_down"}


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
def test_misplaced_fragment_fails(tmp_path, dtype):
    """Two registers of the A fragments swapped (moe-compile's hidden
    --permute-mma-fragments) put elements where mma.sync's layout does not
    take them: the emulated kernels then miss the reference by far more
    than the tolerance, while the same layer built right conforms."""
    config = dict(TENSOR_CORES, name=f"tc_layout_{dtype}", dtype=dtype)
    right = compile_config(config, tmp_path / "right", extra_args=("--emulate-gpu",))
    check_token_counts(Library(right, config["name"], config), config, [3, 64], 2e-2)
    wrong = compile_config(config, tmp_path / "wrong",
                           extra_args=("--emulate-gpu", "--permute-mma-fragments"))
    with pytest.raises(AssertionError, match=r"max\|y - ref\|"):
        check_token_counts(Library(wrong, config["name"], config), config, [3, 64], 2e-2)


@pytest.mark.parametrize("config,token_counts,tolerance",
                         [pytest.param(c, counts, tol, id=c["name"])
                          for c, counts, tol in HIERARCHICAL_CASES])
def test_emulated_gpu_hierarchies_conform(tmp_path, config, token_counts, tolerance):
    so = compile_config(config, tmp_path, extra_args=("--emulate-gpu",))
    check_hierarchical(Library(so, config["name"], config), config, token_counts,
                       tolerance)


@pytest.mark.parametrize("config,token_counts,tolerance",
                         [pytest.param(c, ts, tol, id=c["name"]) for c, ts, tol in FAMILY])
def test_emulated_gpu_family_rules_conform(tmp_path, config, token_counts, tolerance):
    so = compile_config(config, tmp_path, extra_args=("--emulate-gpu",))
    check_token_counts(Library(so, config["name"], config), config, token_counts, tolerance)


@pytest.mark.parametrize("config,token_counts,tolerance",
                         [pytest.param(c, ts, tol, id=c["name"])
                          for c, ts, tol in FAMILY_HIERARCHICAL])
def test_emulated_gpu_family_hierarchies_conform(tmp_path, config, token_counts, tolerance):
    so = compile_config(config, tmp_path, extra_args=("--emulate-gpu",))
    check_hierarchical(Library(so, config["name"], config), config, token_counts, tolerance)

# An expert shard's own rows of these weights.
SHARDED = ("gate_proj", "up_proj", "down_proj", "gate_proj_bias", "up_proj_bias",
           "down_proj_bias")


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_emulated_gpu_family_shards(tmp_path, dtype):
    """Expert shards of a layer with the weights on the input, expert
    biases, clamped SwiGLU and an output bias: run_experts scales and biases
    the rows, combine adds them unweighted with the bias, as forward does
    (up to the order of the sum, which the kernels keep per token)."""
    layer = cfg("fr_shards", 17, 20, 6, 2, dtype=dtype, router_weight_on_input=True,
                expert_bias=True, activation="clamped_swiglu", swiglu_limit=1.0,
                output_bias=True, shared_intermediate_size=12)
    args = ("--emulate-gpu",)
    weights = {k: representable(v, dtype) for k, v in random_weights(layer, 5).items()}
    x = representable(random_input(45, layer["hidden_size"], 6), dtype)
    whole = Library(compile_config(layer, tmp_path / "whole", args), layer["name"], layer)
    with whole.create(weights) as ctx:
        y = whole.forward(ctx, x)
    shards = []
    for first, count in ((0, 4), (4, 2)):
        config = shard_of(layer, first, count)
        lib = Library(compile_config(config, tmp_path / f"s{first}", args), config["name"],
                      config)
        own = {k: (v[first:first + count] if k in SHARDED else v) for k, v in weights.items()}
        shards.append((first, lib, lib.create(own)))
    sharded = sharded_forward(shards, x)
    for _, _, ctx in shards:
        ctx.destroy()
    tolerance = 1e-4 if dtype == "f32" else 2e-2
    for want, what in ((y, "forward"), (reference(layer, weights, x)[0], "the reference")):
        err = float(np.abs(sharded - want).max())
        bound = tolerance * max(1.0, float(np.abs(want).max()))
        assert err <= bound, f"shards vs {what}: max diff {err:.3g} > {bound:.3g}"

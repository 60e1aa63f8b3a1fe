"""to_mlir() is moe-compile's module (--emit=mlir), which moe-opt parses,
verifies and expands."""

import re
import subprocess

import pytest

from conftest import tool
from moe_mlir import MoEConfig, from_hf_config
from helpers import HF_CONFIGS

CONFIGS = {
    "defaults": MoEConfig("d", 64, 128, 8, 2),
    "everything": MoEConfig("e", 32, 48, 16, 4, dtype="bf16", scoring="sigmoid",
                            normalize_top_k=False, routed_scaling_factor=2.5, n_group=4,
                            topk_group=2, group_score="max", capacity_factor=1.25,
                            activation="gelu_tanh", router_bias=True, selection_bias=True,
                            gated=False, shared_intermediate_size=96,
                            shared_expert_gate=True),
    "expert_choice": MoEConfig("ec", 16, 8, 4, 1, dtype="f16", routing="expert_choice",
                               capacity_factor=2.0, activation="relu",
                               shared_intermediate_size=24),
    "tiny_factor": MoEConfig("t", 8, 4, 4, 2, routed_scaling_factor=1e-05,
                             capacity_factor=3e20, activation="gelu"),
    "hierarchical": MoEConfig.from_dict({
        "name": "h", "hidden_size": 16, "num_experts": 4, "top_k": 2, "dtype": "bf16",
        "router_bias": True, "shared_intermediate_size": 8,
        "expert": {"num_experts": 4, "top_k": 2, "scoring": "sigmoid", "n_group": 2,
                   "topk_group": 1, "selection_bias": True, "routed_scaling_factor": 2.5,
                   "expert": {"num_experts": 3, "top_k": 3, "intermediate_size": 8,
                              "router_bias": True, "activation": "gelu"}}}),
    "deepseek_v3": from_hf_config(HF_CONFIGS / "deepseek_v3.json"),
    "qwen2_moe": from_hf_config(HF_CONFIGS / "qwen2_moe.json"),
}


def layer_op(text):
    """The moe.layer line of a module, SSA names dropped."""
    line = next(line for line in text.splitlines() if "moe.layer" in line)
    return re.sub(r"%[0-9A-Za-z_]+", "%", line.strip())


def test_text_shape():
    text = CONFIGS["everything"].to_mlir()
    assert text.startswith("module attributes {moe.target = #moe.cpu_target<features = [")
    assert 'func.func @e_forward_kernel(%arg0: memref<?x32xbf16> {moe.name = "x"}' in text
    assert "func.func @e_route_kernel(" in text
    layer = layer_op(text)
    assert "router(% : tensor<16x32xbf16>) router_bias(" in layer
    assert "gate_proj(" not in layer.replace("shared_gate_proj", "")
    for attr in ("top_k = 4 : i64", "scoring = #moe.scoring<sigmoid>",
                 "normalize_top_k = false", "routed_scaling_factor = 2.500000e+00 : f32",
                 "n_group = 4 : i64", "topk_group = 2 : i64",
                 "group_score = #moe.group_score<max>", "capacity_factor = 1.250000e+00 : f64",
                 "activation = #moe.activation<gelu_tanh>"):
        assert attr in layer
    assert layer_op(CONFIGS["defaults"].to_mlir()).endswith(
        "{top_k = 2 : i64} : tensor<?x64xf32> -> tensor<?x64xf32>")


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_moe_opt_accepts(tmp_path, key):
    path = tmp_path / f"{key}.mlir"
    path.write_text(CONFIGS[key].to_mlir())
    opt = str(tool("moe-opt"))
    parsed = subprocess.run([opt, str(path)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    assert "moe.layer" in parsed.stdout
    expanded = subprocess.run([opt, "-moe-expand", str(path)], capture_output=True, text=True)
    assert expanded.returncode == 0, expanded.stderr
    assert "moe.gate" in expanded.stdout and "moe.layer" not in expanded.stdout


def test_hierarchical_text():
    layer = layer_op(CONFIGS["hierarchical"].to_mlir())
    assert "level_routers(%, % : tensor<4x4x16xbf16>, tensor<16x3x16xbf16>)" in layer
    assert "level_router_biases(% : tensor<16x3xbf16>)" in layer
    assert "level_selection_biases(% : tensor<4x4xbf16>)" in layer
    assert "up_proj(% : tensor<48x8x16xbf16>)" in layer
    assert ("levels = [#moe.level<top_k = 2, scoring = sigmoid, routed_scaling_factor = "
            "2.500000e+00, n_group = 2, selection_bias = true>, #moe.level<top_k = 3, "
            "router_bias = true>]") in layer


def test_expert_shard_text():
    """A shard's module has its two kernels in place of forward."""
    shard = CONFIGS["defaults"].replace(expert_shard={"first": 2, "count": 3})
    text = shard.to_mlir()
    assert "@d_experts_kernel(" in text and "moe.local_experts" in text
    assert "@d_combine_kernel(" in text and "_forward_kernel" not in text
    assert "up_proj(% : tensor<3x128x64xf32>)" in re.sub(r"%[0-9A-Za-z_]+", "%", text)

"""The README's few lines, end to end: a Hugging Face config.json and a
safetensors checkpoint in, a running compiled layer out, checked against the
reference."""

import numpy as np

import moe_mlir
from moe_mlir.reference import random_input, random_weights, reference

from helpers import HF_CONFIGS, write_safetensors
from test_weights import LAYER, hf_checkpoint


def test_hf_config_and_checkpoint_to_running_layer(tmp_path):
    config = moe_mlir.from_hf_config(HF_CONFIGS / "mixtral.json", name="readme_mixtral",
                                     dtype="f32")
    weights = random_weights(config.to_dict(), seed=5)
    checkpoint = tmp_path / "model.safetensors"
    write_safetensors(checkpoint, hf_checkpoint("mixtral", config, weights))

    loaded = moe_mlir.load_layer_weights(checkpoint, config, layer=LAYER)
    layer = moe_mlir.compile(config)(loaded)
    x = random_input(9, config.hidden_size, 6)
    y = layer(x)
    ids, _ = layer.route(x)

    expected, expected_ids, _, _ = reference(config.to_dict(), weights, x)
    assert np.array_equal(ids, expected_ids)
    assert np.abs(y - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())

"""Hugging Face `config.json` -> MoEConfig, for the MoE model families whose
routing SPEC §1 expresses exactly.

Every field that changes the layer's math is either mapped or refused with an
HFConfigError naming it; fields that only matter in training (aux losses,
router jitter) or outside the MoE block (attention, norms) are not read.
"""

import json
import re
from pathlib import Path

from .config import ConfigError, MoEConfig

FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "olmoe",
            "switch_transformers")

# transformers' ACT2FN names -> SPEC §1 activations.
_ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}

_DTYPES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


class HFConfigError(ValueError):
    """A Hugging Face config this frontend cannot map; `field` names the
    config.json field."""

    def __init__(self, source, field, message):
        self.source, self.field, self.message = source, field, message
        super().__init__(f"{source}: '{field}' {message}")


def _load(path_or_dict):
    if isinstance(path_or_dict, dict):
        return dict(path_or_dict), "<hf config>"
    path = Path(path_or_dict)
    if path.is_dir():
        path = path / "config.json"
    return json.loads(path.read_text()), str(path)


class _Fields:
    """Reads fields of one HF config, with errors naming the field."""

    def __init__(self, data, source):
        self.data, self.source = data, source

    def fail(self, field, message):
        raise HFConfigError(self.source, field, message)

    def get(self, field, default=None, required=False):
        if field not in self.data or self.data[field] is None:
            if required:
                self.fail(field, "is required for this model family")
            return default
        return self.data[field]

    def int(self, field, default=None, required=False):
        value = self.get(field, default, required)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            self.fail(field, f"must be an integer, got {json.dumps(value)}")
        return value

    def activation(self, field="hidden_act", default="silu"):
        name = self.get(field, default)
        if name not in _ACTIVATIONS:
            self.fail(field, f'"{name}" is not an activation SPEC §1 has '
                      f"(one of {', '.join(sorted(_ACTIVATIONS))})")
        return _ACTIVATIONS[name]


def _name_for(model_type):
    name = re.sub(r"[^A-Za-z0-9_]", "_", model_type or "moe") + "_moe"
    return name if not name[0].isdigit() else "m" + name


def from_hf_config(path_or_dict, *, name=None, dtype=None, capacity_factor=None,
                   tokens_per_batch=None):
    """The MoE layer of a Hugging Face model, as a MoEConfig.

    path_or_dict: a config.json path, a model directory holding one, or the
    parsed dict. name: the layer's C name (default `<model_type>_moe`).
    dtype: "f32" | "bf16" | "f16"; default the config's `torch_dtype`
    (f32 when absent).

    Switch Transformers give a fixed `expert_capacity` per expert, which SPEC §1
    expresses as `capacity_factor` relative to the token count: pass
    `capacity_factor=` directly, or `tokens_per_batch=` (T) to get exactly
    `expert_capacity` slots per expert for batches of T tokens.
    """
    data, source = _load(path_or_dict)
    f = _Fields(data, source)
    model_type = f.get("model_type", required=True)
    if model_type not in FAMILIES:
        f.fail("model_type", f'"{model_type}" is not one of the supported families '
               f"({', '.join(FAMILIES)})")

    if dtype is None:
        torch_dtype = f.get("torch_dtype", f.get("dtype", "float32"))
        if torch_dtype not in _DTYPES:
            field = "torch_dtype" if "torch_dtype" in data else "dtype"
            f.fail(field, f'"{torch_dtype}" has no SPEC §2 dtype; pass dtype= to choose one')
        dtype = _DTYPES[torch_dtype]

    if model_type == "switch_transformers":
        keys = _switch(f, capacity_factor, tokens_per_batch)
    else:
        if capacity_factor is not None or tokens_per_batch is not None:
            raise TypeError(f"{model_type} layers are dropless: capacity_factor and "
                            "tokens_per_batch are for switch_transformers")
        keys = {"mixtral": _mixtral, "qwen2_moe": _qwen2_moe, "qwen3_moe": _qwen3_moe,
                "deepseek_v2": _deepseek, "deepseek_v3": _deepseek,
                "olmoe": _olmoe}[model_type](f)

    keys.update(name=name or _name_for(model_type), dtype=dtype)
    try:
        return MoEConfig.from_dict(keys, source)
    except ConfigError as e:
        # The layer the fields describe breaks a SPEC rule (say top_k above
        # the expert count): report it against the config's own field.
        field = _HF_FIELD.get(model_type, {}).get(e.key, e.key)
        raise HFConfigError(source, field, e.message) from None


# SPEC key -> the HF field it came from, for re-reporting SPEC rule failures.
_COMMON = {"hidden_size": "hidden_size", "top_k": "num_experts_per_tok"}
_HF_FIELD = {
    "mixtral": {**_COMMON, "num_experts": "num_local_experts",
                "intermediate_size": "intermediate_size"},
    "qwen2_moe": {**_COMMON, "num_experts": "num_experts",
                  "intermediate_size": "moe_intermediate_size",
                  "shared_intermediate_size": "shared_expert_intermediate_size"},
    "qwen3_moe": {**_COMMON, "num_experts": "num_experts",
                  "intermediate_size": "moe_intermediate_size"},
    "deepseek_v2": {**_COMMON, "num_experts": "n_routed_experts",
                    "intermediate_size": "moe_intermediate_size", "n_group": "n_group",
                    "topk_group": "topk_group",
                    "routed_scaling_factor": "routed_scaling_factor",
                    "shared_intermediate_size": "n_shared_experts"},
    "olmoe": {**_COMMON, "num_experts": "num_experts"},
    "switch_transformers": {"hidden_size": "d_model", "intermediate_size": "d_ff",
                            "num_experts": "num_experts",
                            "capacity_factor": "expert_capacity"},
}
_HF_FIELD["deepseek_v3"] = _HF_FIELD["deepseek_v2"]


def _mixtral(f):
    # softmax over all experts, top-k, renormalized over the k.
    return dict(hidden_size=f.int("hidden_size", required=True),
                intermediate_size=f.int("intermediate_size", required=True),
                num_experts=f.int("num_local_experts", required=True),
                top_k=f.int("num_experts_per_tok", required=True),
                activation=f.activation(), normalize_top_k=True)


def _qwen2_moe(f):
    shared = f.int("shared_expert_intermediate_size", 0)
    # Qwen2MoeSparseMoeBlock always scales its shared expert by
    # sigmoid(shared_expert_gate(x)).
    return dict(hidden_size=f.int("hidden_size", required=True),
                intermediate_size=f.int("moe_intermediate_size", required=True),
                num_experts=f.int("num_experts", required=True),
                top_k=f.int("num_experts_per_tok", required=True),
                activation=f.activation(), normalize_top_k=bool(f.get("norm_topk_prob", False)),
                shared_intermediate_size=shared, shared_expert_gate=shared > 0)


def _qwen3_moe(f):
    return dict(hidden_size=f.int("hidden_size", required=True),
                intermediate_size=f.int("moe_intermediate_size", required=True),
                num_experts=f.int("num_experts", required=True),
                top_k=f.int("num_experts_per_tok", required=True),
                activation=f.activation(), normalize_top_k=bool(f.get("norm_topk_prob", True)))


def _olmoe(f):
    # OLMoE's experts are `intermediate_size` wide; its default does not
    # renormalize the top-k probabilities.
    return dict(hidden_size=f.int("hidden_size", required=True),
                intermediate_size=f.int("intermediate_size", required=True),
                num_experts=f.int("num_experts", required=True),
                top_k=f.int("num_experts_per_tok", required=True),
                activation=f.activation(), normalize_top_k=bool(f.get("norm_topk_prob", False)))


def _deepseek(f):
    v3 = f.get("model_type") == "deepseek_v3"
    top_k = f.int("num_experts_per_tok", required=True)
    method = f.get("topk_method", "noaux_tc" if v3 else "greedy")
    scoring = f.get("scoring_func", "sigmoid" if v3 else "softmax")
    if scoring not in ("softmax", "sigmoid"):
        f.fail("scoring_func", f'"{scoring}" is not a SPEC §1 scoring ("softmax", "sigmoid")')
    keys = dict(hidden_size=f.int("hidden_size", required=True),
                intermediate_size=f.int("moe_intermediate_size", required=True),
                num_experts=f.int("n_routed_experts", required=True),
                top_k=top_k, activation=f.activation(), scoring=scoring)
    allowed = ("noaux_tc",) if v3 else ("greedy", "group_limited_greedy", "noaux_tc")
    if method not in allowed:
        f.fail("topk_method", f'"{method}" is not supported for {f.get("model_type")} '
               f"(one of {', '.join(allowed)})")
    if method == "group_limited_greedy":
        # V2: a group scores its best expert.
        keys.update(n_group=f.int("n_group", required=True),
                    topk_group=f.int("topk_group", required=True), group_score="max")
    elif method == "noaux_tc":
        # V3: experts are chosen by score + e_score_correction_bias; a group
        # scores the sum of its two best.
        keys.update(selection_bias=True, n_group=f.int("n_group", 1),
                    topk_group=f.int("topk_group", 1), group_score="top2_sum")
    normalize = bool(f.get("norm_topk_prob", False)) and top_k > 1
    scale = f.get("routed_scaling_factor", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        f.fail("routed_scaling_factor", f"must be a number, got {json.dumps(scale)}")
    if not v3 and normalize:
        # DeepSeek-V2's gate applies routed_scaling_factor only when it does
        # not normalize the top-k weights.
        scale = 1.0
    keys.update(normalize_top_k=normalize, routed_scaling_factor=float(scale))
    n_shared = f.int("n_shared_experts", 0)
    if n_shared:
        keys["shared_intermediate_size"] = n_shared * keys["intermediate_size"]
    return keys


def _switch(f, capacity_factor, tokens_per_batch):
    if f.get("is_gated_act", False):
        f.fail("is_gated_act", "is true, but Switch Transformers' experts are not gated")
    E = f.int("num_experts", required=True)
    keys = dict(hidden_size=f.int("d_model", required=True),
                intermediate_size=f.int("d_ff", required=True), num_experts=E, top_k=1,
                gated=False, activation=f.activation("dense_act_fn", "relu"),
                # top-1: the weight is the winner's probability itself.
                normalize_top_k=False, router_bias=bool(f.get("router_bias", False)))
    if capacity_factor is None:
        capacity_factor = f.get("capacity_factor")
    if capacity_factor is None:
        expert_capacity = f.int("expert_capacity")
        if expert_capacity is None:
            capacity_factor = 0.0
        elif tokens_per_batch is None:
            f.fail("expert_capacity", f"({expert_capacity}) is a fixed token count per "
                   "expert; SPEC §1 scales capacity with the token count: pass "
                   "capacity_factor= or tokens_per_batch=")
        else:
            # C = ceil(cf * T / E) must come out exactly expert_capacity.
            capacity_factor = (expert_capacity - 0.5) * E / tokens_per_batch
    keys["capacity_factor"] = float(capacity_factor)
    return keys


def is_moe_layer(path_or_dict, layer):
    """Whether decoder layer `layer` of the model is an MoE layer (the others
    are dense MLPs). Switch Transformers: `layer` is an encoder block."""
    data, source = _load(path_or_dict)
    f = _Fields(data, source)
    model_type = f.get("model_type", required=True)
    if model_type in ("qwen2_moe", "qwen3_moe"):
        step = f.int("decoder_sparse_step", 1)
        return (layer not in (f.get("mlp_only_layers") or []) and f.int("num_experts", 0) > 0
                and (layer + 1) % step == 0)
    if model_type in ("deepseek_v2", "deepseek_v3"):
        return (layer >= f.int("first_k_dense_replace", 0)
                and layer % f.int("moe_layer_freq", 1) == 0)
    if model_type == "switch_transformers":
        step = f.int("encoder_sparse_step", 1)
        return step > 0 and (step == 1 or layer % step == 1)
    return True

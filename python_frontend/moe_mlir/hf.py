"""Hugging Face `config.json` -> MoEConfig, for the model families whose MoE
block SPEC §1, with the rules of docs/FAMILY-RULES.md, expresses exactly.

"Exactly" is judged against transformers' own modeling code (the version this
was checked against: 5.25), which SPEC names as the reference: routing,
normalization, scaling, selection bias, groups and shared experts must all be
what that code computes at inference. A field absent from config.json takes
the default of transformers' configuration class for that family, and the
alternative field names its `attribute_map` accepts are read too (transformers
5 writes Qwen3-MoE's expert count as `num_local_experts`, for instance).

Every field that changes the layer's math is either mapped or refused with an
HFConfigError naming it; fields that only matter in training (aux losses,
router jitter, bar PhiMoE's router_jitter_noise, which is also its
sparsemixer's threshold at inference) or outside the MoE block (attention,
norms, residual multipliers) are not read. A family whose block differs from SPEC §1 and
FAMILY-RULES is refused with the construct they lack.
"""

import json
import math
import re
from pathlib import Path

from .config import ConfigError, MoEConfig

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

_REQUIRED = object()

DEEPSEEK_V2_ROUTINGS = ("transformers", "remote_code")


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
    """Reads fields of one HF config, with errors naming the field. `origin`
    records which config field each SPEC key came from, so that a SPEC rule
    broken by the mapped layer is reported against that field."""

    def __init__(self, data, source, prefix=""):
        self.data, self.source, self.prefix = data, source, prefix
        self.origin = {}

    def sub(self, field):
        """The fields of a nested dict (DBRX's `ffn_config`)."""
        value = self.get(field, {})
        if not isinstance(value, dict):
            self.fail(field, f"must be an object, got {json.dumps(value)}")
        sub = _Fields(value, self.source, f"{self.prefix}{field}.")
        sub.origin = self.origin
        return sub

    def fail(self, field, message):
        raise HFConfigError(self.source, self.prefix + field, message)

    def present(self, field):
        return self.data.get(field) is not None

    def get(self, field, default=None, required=False):
        if not self.present(field):
            if required:
                self.fail(field, "is required for this model family")
            return default
        return self.data[field]

    def _pick(self, names, default, spec):
        names = (names,) if isinstance(names, str) else tuple(names)
        for name in names:
            if self.present(name):
                if spec:
                    self.origin[spec] = self.prefix + name
                return name, self.data[name]
        if default is _REQUIRED:
            self.fail(names[0], "is required for this model family" + (
                f" (or '{names[1]}')" if len(names) == 2 else
                f" (or one of {', '.join(repr(n) for n in names[1:])})" if len(names) > 2
                else ""))
        if spec:
            self.origin[spec] = self.prefix + names[0]
        return names[0], default

    def int(self, names, default=_REQUIRED, spec=None):
        name, value = self._pick(names, default, spec)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            if isinstance(value, list):
                self.fail(name, f"is a per-layer list ({json.dumps(value)}); this frontend "
                          "maps one value for every layer")
            self.fail(name, f"must be an integer, got {json.dumps(value)}")
        return value

    def number(self, names, default=_REQUIRED, spec=None):
        name, value = self._pick(names, default, spec)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(name, f"must be a number, got {json.dumps(value)}")
        return float(value)

    def flag(self, names, default):
        name, value = self._pick(names, default, None)
        if not isinstance(value, bool):
            self.fail(name, f"must be true or false, got {json.dumps(value)}")
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


# ---------------------------------------------------------------------------
# The families. Each mapper reads a _Fields and returns SPEC §2 keys; the
# defaults are those of transformers' configuration class for the family.

def _base(f, *, experts, top_k=("num_experts_per_tok",), width="moe_intermediate_size",
          hidden="hidden_size", act="hidden_act"):
    return dict(hidden_size=f.int(hidden, spec="hidden_size"),
                intermediate_size=f.int(width, spec="intermediate_size"),
                num_experts=f.int(experts, spec="num_experts"),
                top_k=f.int(top_k, spec="top_k"),
                activation=f.activation(act))


def _shared_multiple(f, keys, names, default):
    """DeepSeek-style shared experts: `n` experts of the routed width, one
    dense FFN n * moe_intermediate_size wide."""
    n = f.int(names, default, spec="shared_intermediate_size")
    if n:
        keys["shared_intermediate_size"] = n * keys["intermediate_size"]
    return keys


def _shared_size(f, keys, names, default, gate=False):
    size = f.int(names, default, spec="shared_intermediate_size")
    if size:
        keys.update(shared_intermediate_size=size, shared_expert_gate=gate)
    return keys


def _no_mlp_bias(f, field="mlp_bias"):
    if f.get(field, False):
        f.fail(field, "is true: the shared experts then have biases, which SPEC §1 lacks")


# softmax over all experts, top-k, then maybe renormalized over the k.
def _mixtral(f):  # also MiniMax (its alpha/beta factors scale residuals, outside)
    return dict(_base(f, experts=("num_local_experts", "num_experts"), width="intermediate_size"),
                normalize_top_k=True)


def _granitemoe(f):
    # top-k on the logits, softmax over the k: SPEC's softmax + normalize.
    # GraniteMoE-Shared/SWA/Hybrid add a plain (ungated-by-sigmoid) shared MLP
    # beside the block, on the same input.
    keys = dict(_base(f, experts="num_local_experts", width="intermediate_size"),
                normalize_top_k=True)
    default = {"granitemoe": 0, "granitemoeshared": 0, "granitemoe_swa": 0,
               "granitemoehybrid": 1024}[f.get("model_type")]
    return _shared_size(f, keys, "shared_intermediate_size", default)


def _qwen_moe(default_norm):
    def mapper(f):
        return dict(_base(f, experts=("num_experts", "num_local_experts")),
                    normalize_top_k=f.flag("norm_topk_prob", default_norm))
    return mapper


def _qwen2_moe(f):  # Qwen2-MoE and Qwen3-Next
    # The block always scales its shared expert by sigmoid(shared_expert_gate(x)).
    qwen3_next = f.get("model_type") == "qwen3_next"
    keys = dict(_base(f, experts="num_experts"),
                normalize_top_k=f.flag("norm_topk_prob", qwen3_next))
    return _shared_size(f, keys, "shared_expert_intermediate_size",
                        512 if qwen3_next else 5632, gate=True)


def _olmoe(f):  # OLMoE, FlexOlmo: experts `intermediate_size` wide
    return dict(_base(f, experts=("num_experts", "num_local_experts"), width="intermediate_size"),
                normalize_top_k=f.flag("norm_topk_prob", False))


def _jamba(f):  # softmax, top-k, never renormalized
    return dict(_base(f, experts=("num_experts", "num_local_experts"), width="intermediate_size"),
                normalize_top_k=False)


def _dbrx(f):
    ffn = f.sub("ffn_config")
    act = ffn.get("ffn_act_fn") or {"name": "silu"}
    if not isinstance(act, dict) or act.get("name", "silu") not in _ACTIVATIONS:
        ffn.fail("ffn_act_fn", f"{json.dumps(act)} is not an activation SPEC §1 has "
                 f"(one of {', '.join(sorted(_ACTIVATIONS))})")
    keys = dict(hidden_size=f.int(("d_model", "hidden_size"), spec="hidden_size"),
                intermediate_size=ffn.int("ffn_hidden_size", spec="intermediate_size"),
                num_experts=ffn.int("moe_num_experts", spec="num_experts"),
                top_k=ffn.int("moe_top_k", spec="top_k"),
                activation=_ACTIVATIONS[act.get("name", "silu")])
    # DbrxFFN divides the top-k probabilities by their p-norm (torch.norm):
    # FAMILY-RULES' normalize_p; p = 1, the sum, is SPEC §1's.
    p = ffn.data.get("moe_normalize_expert_weights", 1.0)  # null: no normalization
    if p is None:
        keys["normalize_top_k"] = False
        return keys
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        ffn.fail("moe_normalize_expert_weights", f"must be a number or null, got {json.dumps(p)}")
    if not math.isfinite(p):
        ffn.fail("moe_normalize_expert_weights",
                 f"({p}) divides the top-k weights by their largest (the ∞-norm); "
                 "normalize_p is a finite p")
    keys["normalize_top_k"] = True
    if float(p) != 1.0:
        f.origin["normalize_p"] = ffn.prefix + "moe_normalize_expert_weights"
        keys["normalize_p"] = float(p)
    return keys


def _hunyuan_v1_moe(f):
    # softmax, top-k, renormalized; routed experts and the always-present
    # shared MLP are both `intermediate_size` wide.
    keys = dict(_base(f, experts=("num_experts", "num_local_experts"),
                      top_k=("moe_topk", "num_experts_per_tok"), width="intermediate_size"),
                normalize_top_k=True)
    return dict(keys, shared_intermediate_size=keys["intermediate_size"])


def _lara_mini(f):
    keys = dict(_base(f, experts="num_experts"),
                normalize_top_k=f.flag("norm_topk_prob", True))
    return _shared_size(f, keys, "shared_expert_intermediate_size", 512)


def _flint(f):
    # sigmoid scores, top-k, maybe renormalized, plus a plain shared expert.
    keys = dict(_base(f, experts="num_experts"), scoring="sigmoid",
                normalize_top_k=f.flag("norm_topk_prob", True))
    return _shared_size(f, keys, "shared_expert_intermediate_size", 1024)


def _cohere2_moe(f):
    keys = _base(f, experts="num_experts", width="intermediate_size")
    fn = f.get("expert_selection_fn", "softmax")
    if fn == "softmax":
        # top-k on the logits, softmax over the k: softmax + normalize.
        keys["normalize_top_k"] = True
    elif fn == "sigmoid":
        keys.update(scoring="sigmoid", normalize_top_k=f.flag("norm_topk_prob", True))
    else:
        f.fail("expert_selection_fn", f'"{fn}" is not "softmax" or "sigmoid"')
    n = f.int("num_shared_experts", 0, spec="shared_intermediate_size")
    if n:
        strategy = f.get("shared_expert_combination_strategy", "average")
        if strategy != "sum":
            f.fail("shared_expert_combination_strategy",
                   f'"{strategy}" averages the routed and shared outputs; SPEC §1 adds them '
                   '(only "sum" maps)')
        keys["shared_intermediate_size"] = n * keys["intermediate_size"]
    return keys


def _ernie4_5_moe(f):
    # softmax; experts chosen by probability + e_score_correction_bias,
    # weighted by the probability, divided by max(sum, moe_norm_min).
    if f.get("use_bias", False):
        f.fail("use_bias", "is true: the shared experts then have biases, which SPEC §1 lacks")
    keys = dict(_base(f, experts=("moe_num_experts", "num_experts"),
                      top_k=("moe_k", "num_experts_per_tok")),
                selection_bias=True, normalize_top_k=True)
    norm_min = f.number("moe_norm_min", 1e-12)
    # The top k of E probabilities sum to at least k/E, so a floor below that
    # never applies and the division is SPEC's exact normalization.
    if norm_min > keys["top_k"] / keys["num_experts"]:
        f.fail("moe_norm_min", f"({norm_min}) exceeds top_k / num_experts, so the top-k "
               "weights' sum may be clamped to it; SPEC §1 divides by the sum itself")
    return _shared_multiple(f, keys, "moe_num_shared_experts", 2)


def _deepseek_v2(f, routing):
    # transformers' DeepseekV2TopkRouter: softmax, greedy or
    # group_limited_greedy (a group scores its best expert), never
    # renormalizes, always multiplies by routed_scaling_factor. DeepSeek's own
    # remote code (routing="remote_code") renormalizes when norm_topk_prob and
    # top_k > 1, and then drops routed_scaling_factor.
    keys = dict(_base(f, experts=("n_routed_experts", "num_experts")))
    scoring = f.get("scoring_func", "softmax")
    if scoring != "softmax":
        f.fail("scoring_func", f'"{scoring}" is not softmax, the only scoring DeepSeek-V2 has')
    method = f.get("topk_method", "greedy")
    allowed = ("greedy", "group_limited_greedy") + (
        ("noaux_tc",) if routing == "remote_code" else ())
    if method not in allowed:
        extra = (" (transformers' DeepseekV2TopkRouter has no noaux_tc)"
                 if method == "noaux_tc" else "")
        f.fail("topk_method", f'"{method}" is not supported for deepseek_v2 '
               f"(one of {', '.join(allowed)}){extra}")
    if method == "group_limited_greedy":
        keys.update(n_group=f.int("n_group", spec="n_group"),
                    topk_group=f.int("topk_group", spec="topk_group"), group_score="max")
    elif method == "noaux_tc":
        keys.update(selection_bias=True, n_group=f.int("n_group", 1, spec="n_group"),
                    topk_group=f.int("topk_group", 1, spec="topk_group"),
                    group_score="top2_sum")
    scale = f.number("routed_scaling_factor", 1.0, spec="routed_scaling_factor")
    if routing == "remote_code":
        normalize = f.flag("norm_topk_prob", False) and keys["top_k"] > 1
        if normalize:
            scale = 1.0
    else:
        normalize = False
    keys.update(normalize_top_k=normalize, routed_scaling_factor=scale)
    _no_mlp_bias(f)
    return _shared_multiple(f, keys, "n_shared_experts", 2)


# Sigmoid routers of the DeepSeek-V3 kind: experts chosen by sigmoid score +
# e_score_correction_bias (selection_bias), within the topk_group best of
# n_group groups (a group scores its two best), weighted by the score, maybe
# renormalized, times a scaling factor; plus shared experts. Per family:
# field names and transformers' class defaults.
_V3 = dict(experts=("n_routed_experts", "num_local_experts"), top_k=("num_experts_per_tok",),
           n_group=("n_group",), topk_group=("topk_group",), norm=("norm_topk_prob",),
           scale=("routed_scaling_factor",), shared=("n_shared_experts",))
_V3_FAMILIES = {
    "deepseek_v3": dict(_V3, defaults=(8, 4, True, 2.5, 1)),
    "deepseek_v32": dict(_V3, experts=_V3["experts"] + ("num_experts",),
                         defaults=(8, 4, True, 2.5, 1)),
    "glm4_moe": dict(_V3, defaults=(1, 1, True, 1.0, 1)),
    "glm4_moe_lite": dict(_V3, defaults=(1, 1, True, 1.8, 1)),
    "glm_moe_dsa": dict(_V3, experts=_V3["experts"] + ("num_experts",),
                        defaults=(1, 1, True, 2.5, 1)),
    "dots1": dict(_V3, defaults=(1, 1, False, 1.0, _REQUIRED)),
    "solar_open": dict(_V3, defaults=(1, 1, True, 1.0, 1)),
    "minicpm5_moe": dict(_V3, defaults=(1, 1, True, 3.66, 1)),
    "mimo_v2_flash": dict(_V3, shared=None, defaults=(1, 1, True, 1.0, 0)),
    "axk2": dict(_V3, defaults=(None, None, True, 2.5, 1)),
    "kimi_linear": dict(_V3, experts=("num_experts", "num_local_experts"),
                        top_k=("num_experts_per_token", "num_experts_per_tok"),
                        n_group=("num_expert_group", "n_group"),
                        norm=("moe_renormalize", "norm_topk_prob"),
                        shared=("num_shared_experts", "n_shared_experts"),
                        defaults=(1, 1, True, 2.446, 1)),
    "exaone_moe": dict(_V3, experts=("num_experts",), shared=("num_shared_experts",),
                       defaults=(1, 1, True, 2.5, 1)),
    # Beam scales the routed output instead of the weights: the same product.
    "beam": dict(_V3, experts=("num_experts",), shared=None, defaults=(8, 4, True, 2.5, 0)),
}


def _v3_like(f):
    model_type = f.get("model_type")
    spec = _V3_FAMILIES[model_type]
    n_group_default, topk_group_default, norm_default, scale_default, shared_default = \
        spec["defaults"]
    keys = dict(_base(f, experts=spec["experts"], top_k=spec["top_k"]),
                scoring="sigmoid", selection_bias=True, group_score="top2_sum")
    if model_type == "deepseek_v3":
        # transformers' DeepseekV3TopkRouter is always noaux_tc on sigmoid
        # scores; a config asking for anything else is meant for other code.
        method = f.get("topk_method", "noaux_tc")
        if method != "noaux_tc":
            f.fail("topk_method", f'"{method}" is not supported for deepseek_v3 (one of noaux_tc)')
        scoring = f.get("scoring_func", "sigmoid")
        if scoring != "sigmoid":
            f.fail("scoring_func", f'"{scoring}" is not a SPEC §1 scoring DeepSeek-V3 has '
                   '(sigmoid)')
    n_group = f.int(spec["n_group"], n_group_default, spec="n_group")
    topk_group = f.int(spec["topk_group"], topk_group_default, spec="topk_group")
    if model_type == "axk2" and n_group is not None and n_group > 1:
        f.fail(spec["n_group"][0], f"({n_group}) groups experts, and AXK2's router masks "
               "the experts outside the chosen groups to 0, not -inf: with a negative "
               "e_score_correction_bias it may choose them, which SPEC §1's grouped "
               "routing never does")
    if n_group is not None and n_group > 1:
        keys.update(n_group=n_group, topk_group=topk_group)
    keys.update(normalize_top_k=f.flag(spec["norm"], norm_default),
                routed_scaling_factor=f.number(spec["scale"], scale_default,
                                               spec="routed_scaling_factor"))
    if spec["shared"]:
        _shared_multiple(f, keys, spec["shared"], shared_default)
    return keys


def _afmoe(f):
    # sigmoid + selection bias (expert_bias), always renormalized, times route_scale.
    keys = dict(_base(f, experts="num_experts"), scoring="sigmoid", selection_bias=True,
                normalize_top_k=True,
                routed_scaling_factor=f.number("route_scale", 1.0, spec="routed_scaling_factor"))
    return _shared_multiple(f, keys, "num_shared_experts", 2)


def _hy_v3(f):
    _no_mlp_bias(f)
    keys = dict(_base(f, experts=("num_experts", "num_local_experts")), scoring="sigmoid",
                selection_bias=True, normalize_top_k=True,
                routed_scaling_factor=f.number("router_scaling_factor", 2.826,
                                               spec="routed_scaling_factor"))
    return _shared_multiple(f, keys, "num_shared_experts", 1)


def _minimax_m2(f):
    return dict(_base(f, experts=("num_local_experts", "num_experts"), width="intermediate_size"),
                scoring="sigmoid", selection_bias=True, normalize_top_k=True)


def _laguna(f):
    cap = f.number("moe_router_logit_softcapping", 0.0)
    if cap > 0:
        f.fail("moe_router_logit_softcapping", f"({cap}) soft-caps the router logits "
               "(cap * tanh(logits / cap)), which SPEC §1 lacks")
    keys = dict(_base(f, experts="num_experts"), scoring="sigmoid", selection_bias=True,
                normalize_top_k=True,
                routed_scaling_factor=f.number("moe_routed_scaling_factor", 1.0,
                                               spec="routed_scaling_factor"))
    return _shared_size(f, keys, "shared_expert_intermediate_size", 512)


def _mistral4(f):
    # softmax; groups scored by their two best probabilities (masking the
    # others to 0 equals SPEC's exclusion, probabilities being positive);
    # maybe renormalized; scaled; shared experts.
    keys = dict(_base(f, experts=("n_routed_experts", "num_local_experts")),
                group_score="top2_sum")
    n_group = f.int("n_group", 1, spec="n_group")
    if n_group > 1:
        keys.update(n_group=n_group, topk_group=f.int("topk_group", 1, spec="topk_group"))
    keys.update(normalize_top_k=f.flag("norm_topk_prob", True),
                routed_scaling_factor=f.number("routed_scaling_factor", 1.0,
                                               spec="routed_scaling_factor"))
    return _shared_multiple(f, keys, "n_shared_experts", 1)


def _gpt_oss(f):
    # GptOssTopKRouter: logits with a bias, top-k of the logits, softmax over
    # the k (= softmax + normalize). GptOssExperts: biased projections and
    # FAMILY-RULES' clamped SwiGLU (its hidden_act is not used). The OpenAI
    # Privacy Filter block is the same math: its router divides the weights by
    # top_k and the block multiplies its output by top_k again; only its
    # gate/up layout differs (concatenated, not interleaved; see weights.py).
    return dict(hidden_size=f.int("hidden_size", spec="hidden_size"),
                intermediate_size=f.int("intermediate_size", spec="intermediate_size"),
                num_experts=f.int(("num_local_experts", "num_experts"), spec="num_experts"),
                top_k=f.int("num_experts_per_tok", spec="top_k"),
                activation="clamped_swiglu",
                swiglu_alpha=f.number("swiglu_alpha", 1.702, spec="swiglu_alpha"),
                swiglu_limit=f.number("swiglu_limit", 7.0, spec="swiglu_limit"),
                router_bias=True, normalize_top_k=True, expert_bias=True)


def _llama4(f):
    # Llama4Router: top-k of the logits, sigmoid of the k; Llama4TextMoe
    # multiplies every expert's input by its score (0 for the others, whose
    # FFN(0) is 0) and adds the shared expert (Llama4TextMLP,
    # intermediate_size wide) on the unscaled input. Llama 4 (multimodal)
    # keeps these fields in its text_config.
    t = f.sub("text_config") if f.get("model_type") == "llama4" else f
    keys = dict(hidden_size=t.int("hidden_size", spec="hidden_size"),
                intermediate_size=t.int("intermediate_size", spec="intermediate_size"),
                num_experts=t.int("num_local_experts", spec="num_experts"),
                top_k=t.int("num_experts_per_tok", spec="top_k"),
                activation=t.activation(), scoring="sigmoid", normalize_top_k=False,
                router_weight_on_input=True)
    f.origin["shared_intermediate_size"] = t.prefix + "intermediate_size"
    keys["shared_intermediate_size"] = keys["intermediate_size"]
    return keys


def _jetmoe(f):
    # JetMoeTopKGating: top-k of the logits, softmax over the k (= softmax +
    # normalize); JetMoeMoE adds its learned `bias` [H] to the output. Its
    # mixture-of-attention experts (JetMoeMoA) are the attention, outside this
    # block.
    return dict(_base(f, experts="num_local_experts", width="intermediate_size",
                      act="activation_function"),
                normalize_top_k=True, output_bias=True)


def _phimoe(f):
    # PhimoeTopKRouter: sparsemixer at inference (no jitter), ε =
    # router_jitter_noise, weights neither renormalized nor scaled. It always
    # chooses 2 experts, whatever num_experts_per_tok says.
    keys = dict(_base(f, experts="num_local_experts", width="intermediate_size"),
                scoring="sparsemixer",
                sparsemixer_eps=f.number("router_jitter_noise", 0.01, spec="sparsemixer_eps"),
                normalize_top_k=False)
    if keys["top_k"] != 2:
        f.fail("num_experts_per_tok", f"({keys['top_k']}): transformers' sparsemixer "
               "routing chooses exactly 2 experts whatever this says; only 2 maps")
    return keys


_MAPPERS = {
    "mixtral": _mixtral,
    "minimax": _mixtral,
    "granitemoe": _granitemoe,
    "granitemoeshared": _granitemoe,
    "granitemoe_swa": _granitemoe,
    "granitemoehybrid": _granitemoe,
    "qwen2_moe": _qwen2_moe,
    "qwen3_next": _qwen2_moe,
    "qwen3_moe": _qwen_moe(False),
    "mellum": _qwen_moe(True),
    "olmoe": _olmoe,
    "flex_olmo": _olmoe,
    "jamba": _jamba,
    "dbrx": _dbrx,
    "hunyuan_v1_moe": _hunyuan_v1_moe,
    "lara_mini": _lara_mini,
    "flint": _flint,
    "cohere2_moe": _cohere2_moe,
    "ernie4_5_moe": _ernie4_5_moe,
    "deepseek_v2": None,  # takes deepseek_v2_routing
    **{family: _v3_like for family in _V3_FAMILIES},
    "afmoe": _afmoe,
    "hy_v3": _hy_v3,
    "minimax_m2": _minimax_m2,
    "laguna": _laguna,
    "mistral4": _mistral4,
    "gpt_oss": _gpt_oss,
    "openai_privacy_filter": _gpt_oss,
    "llama4_text": _llama4,
    "llama4": _llama4,
    "jetmoe": _jetmoe,
    "phimoe": _phimoe,
    "switch_transformers": None,  # takes capacity_factor / tokens_per_batch
}

FAMILIES = tuple(_MAPPERS)

# Families of transformers whose MoE block SPEC §1 and docs/FAMILY-RULES.md
# cannot express, and the construct they lack (checked against transformers
# 5.25's modeling code).
_CLAMPED_AFTER_ACT = ("its experts clamp after the activation, min(act(gate), limit) * "
                      "clamp(up, -limit, limit) with per-layer swiglu_limits, which neither "
                      "SPEC §1 nor FAMILY-RULES' clamped_swiglu (gate * sigmoid(alpha * gate) "
                      "* (up + 1)) computes")
_MULTIMODAL = ("is a multimodal model; this frontend maps text models' MoE layers and does "
               "not read its nested text_config")
REFUSED = {
    "deepseek_v4": "its hash-routed layers choose experts by token id, which SPEC §1 and "
                   "FAMILY-RULES lack (its SwiGLU clamp is clamped_swiglu with swiglu_alpha "
                   "1 and swiglu_up_offset 0)",
    "glm5_next": "is a multimodal model whose MoE layers (DeepSeek-V3 routing, clamped_swiglu "
                 "with swiglu_alpha 1 and swiglu_up_offset 0) live in its nested "
                 "text_config, which this frontend does not read",
    "hy_v4": "its routed experts clamp their SwiGLU (clamped_swiglu with swiglu_alpha 1 and "
             "swiglu_up_offset 0) but its shared expert does not, and one layer's "
             "activation covers both in SPEC §1 and FAMILY-RULES",
    "bailing_hybrid": _CLAMPED_AFTER_ACT,
    "step3p7": _CLAMPED_AFTER_ACT,
    "inkling2": "its experts use a soft-capped SwiGLU, which SPEC §1 lacks",
    "inkling2_loop": "its experts use a soft-capped SwiGLU, which SPEC §1 lacks",
    "inkling": "its shared experts are weighted by router gammas (a log-sigmoid softmax over "
               "routed and shared logits), which SPEC §1 lacks",
    "axk1": "its MoE block ends with an RMSNorm (post_mlp_layernorm) on its output, which "
            "SPEC §1 lacks",
    "gemma4": "its router RMS-normalizes its input with a learned scale and multiplies the "
              "weights by learned per-expert scales, which SPEC §1 lacks",
    "gemma4_text": "its router RMS-normalizes its input with a learned scale and multiplies "
                   "the weights by learned per-expert scales, which SPEC §1 lacks",
    "diffusion_gemma": "its router RMS-normalizes its input with a learned scale and "
                       "multiplies the weights by learned per-expert scales, which SPEC §1 "
                       "lacks",
    "doge": "its experts are product-key single-neuron experts (embedding rows chosen by two "
            "sub-key top-k's) beside a dense MLP, which SPEC §1 lacks",
    "ergo": "its experts use relu² with per-expert output norms and its shared expert an "
            "RMSNorm, which SPEC §1 lacks",
    "muse_spark": "its MoE block projects to moe_hidden_size and RMS-normalizes before and "
                  "after the experts, which SPEC §1 lacks",
    "nemotron_h": "its experts are not gated, use mlp_hidden_act (relu² by default) and may "
                  "sit behind latent projections (moe_latent_size), which SPEC §1 lacks",
    "zaya": "its router is an MLP with a skip-expert class and state carried across layers, "
            "which SPEC §1 lacks",
    "kolibri1": "it chooses experts by raw logit + e_score_correction_bias but weighs them "
                "by sigmoid(logit); SPEC §1 adds the selection bias to the scores",
    "kolibri1_1": "it chooses experts by raw logit + e_score_correction_bias but weighs them "
                  "by sigmoid(logit); SPEC §1 adds the selection bias to the scores",
    "longcat_flash": "its router also chooses among zero_expert_num identity (zero-compute) "
                     "experts, which pass the token through, which SPEC §1 lacks",
    "nllb_moe": "its Top2Router may drop the second expert at random (second_expert_policy "
                "\"random\"), renormalizes the two weights after capacity dropping and can "
                "order capacity by importance (batch_prioritized_routing), which SPEC §1 lacks",
    "lfm2_moe": "with norm_topk_prob (its default) its router divides the top-k weights by "
                "their sum + 1e-6, not by the exact sum as SPEC §1 does (the family is not "
                "mapped without it either)",
    **{m: _MULTIMODAL for m in (
        "aria", "qwen3_vl_moe", "qwen3_omni_moe", "qwen3_5_moe", "ernie4_5_vl_moe", "glm4v_moe",
        "deepseek_ocr2", "unlimited_ocr", "minimax_m3_vl", "mistral_large4", "hy_v4_vl",
        "dots3_note", "nemotron3_5_transcribe")},
}


def from_hf_config(path_or_dict, *, name=None, dtype=None, capacity_factor=None,
                   tokens_per_batch=None, deepseek_v2_routing="transformers"):
    """The MoE layer of a Hugging Face model, as a MoEConfig.

    path_or_dict: a config.json path, a model directory holding one, or the
    parsed dict. name: the layer's C name (default `<model_type>_moe`).
    dtype: "f32" | "bf16" | "f16"; default the config's `torch_dtype` (or
    `dtype`, as transformers 5 writes it; f32 when absent).

    A `quantization_config` (FP8 with block scales, MXFP4, 4-bit GPTQ or
    AWQ) gives the layer its "expert_weights" (docs/QUANTIZATION.md), which
    load_layer_weights reads from the checkpoint's own layout.

    Switch Transformers give a fixed `expert_capacity` per expert, which SPEC §1
    expresses as `capacity_factor` relative to the token count: pass
    `capacity_factor=` directly, or `tokens_per_batch=` (T) to get exactly
    `expert_capacity` slots per expert for batches of T tokens.

    deepseek_v2_routing: "transformers" (default) computes what transformers'
    DeepseekV2TopkRouter does: never renormalize, always multiply by
    `routed_scaling_factor`. "remote_code" follows DeepSeek's own
    modeling_deepseek.py (trust_remote_code): with `norm_topk_prob` and
    top_k > 1 renormalize and drop the scaling factor, else scale.
    """
    if deepseek_v2_routing not in DEEPSEEK_V2_ROUTINGS:
        raise ValueError(f"deepseek_v2_routing must be one of {DEEPSEEK_V2_ROUTINGS}, "
                         f"got {deepseek_v2_routing!r}")
    data, source = _load(path_or_dict)
    f = _Fields(data, source)
    model_type = f.get("model_type", required=True)
    if model_type in REFUSED and model_type not in _MAPPERS:
        f.fail("model_type", f'"{model_type}": {REFUSED[model_type]}')
    if model_type not in _MAPPERS:
        f.fail("model_type", f'"{model_type}" is not one of the supported families '
               f"({', '.join(FAMILIES)})")

    if dtype is None:
        field = "torch_dtype" if f.present("torch_dtype") else "dtype"
        torch_dtype = f.get(field, "float32")
        if torch_dtype not in _DTYPES:
            f.fail(field, f'"{torch_dtype}" has no SPEC §2 dtype; pass dtype= to choose one')
        dtype = _DTYPES[torch_dtype]

    if model_type == "switch_transformers":
        keys = _switch(f, capacity_factor, tokens_per_batch)
    else:
        if capacity_factor is not None or tokens_per_batch is not None:
            raise TypeError(f"{model_type} layers are dropless: capacity_factor and "
                            "tokens_per_batch are for switch_transformers")
        if model_type == "deepseek_v2":
            keys = _deepseek_v2(f, deepseek_v2_routing)
        else:
            keys = _MAPPERS[model_type](f)

    keys.update(name=name or _name_for(model_type), dtype=dtype)
    if f.present("quantization_config"):
        from .quantized_checkpoints import expert_weights_of
        depths = [keys[k] for k in ("hidden_size", "intermediate_size",
                                    "shared_intermediate_size") if keys.get(k)]
        keys["expert_weights"] = expert_weights_of(f.get("quantization_config"), source,
                                                   depths)
    try:
        return MoEConfig.from_dict(keys, source)
    except ConfigError as e:
        # The layer the fields describe breaks a SPEC rule (say top_k above
        # the expert count): report it against the config's own field.
        raise HFConfigError(source, f.origin.get(e.key, e.key), e.message) from None


def _switch(f, capacity_factor, tokens_per_batch):
    if f.get("is_gated_act", False):
        f.fail("is_gated_act", "is true, but Switch Transformers' experts are not gated")
    E = f.int("num_experts", spec="num_experts")
    keys = dict(hidden_size=f.int("d_model", spec="hidden_size"),
                intermediate_size=f.int("d_ff", spec="intermediate_size"), num_experts=E,
                top_k=1, gated=False, activation=f.activation("dense_act_fn", "relu"),
                # top-1: the weight is the winner's probability itself.
                normalize_top_k=False, router_bias=f.flag("router_bias", False))
    f.origin["capacity_factor"] = "expert_capacity"
    if capacity_factor is None:
        capacity_factor = f.get("capacity_factor")
    if capacity_factor is None:
        expert_capacity = f.int("expert_capacity", None)
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


# ---------------------------------------------------------------------------
# Which decoder layers are MoE layers.

# Families whose decoder picks the MoE block by `mlp_layer_types[i] == "sparse"`,
# and the dense prefix transformers' config class derives when the list is
# absent: a config field and its default, or a fixed count.
_DENSE_PREFIX = {
    "deepseek_v32": ("first_k_dense_replace", 3),
    "glm_moe_dsa": ("first_k_dense_replace", 3),
    "exaone_moe": ("first_k_dense_replace", 1),
    "kimi_linear": ("first_k_dense_replace", 1),
    "minicpm5_moe": ("first_k_dense_replace", 1),
    "cohere2_moe": ("first_k_dense_replace", 0),
    "axk2": ("first_k_dense_replace", 1),
    "glm4_moe_lite": (None, 1),
    "mimo_v2_flash": (None, 1),
    "laguna": (None, 1),
    "hy_v3": (None, 1),
    "beam": (None, 3),
    "mellum": (None, 0),
}
# Families with `layer >= first_k_dense_replace`, and its default.
_FIRST_K_DENSE = {"deepseek_v2": 0, "deepseek_v3": 3, "glm4_moe": 1, "dots1": 0,
                  "mistral4": 0}


def is_moe_layer(path_or_dict, layer):
    """Whether decoder layer `layer` of the model is an MoE layer (the others
    are dense MLPs), as transformers builds it. Switch Transformers: `layer`
    is an encoder block."""
    data, source = _load(path_or_dict)
    f = _Fields(data, source)
    model_type = f.get("model_type", required=True)
    types = f.get("mlp_layer_types")
    if model_type in _DENSE_PREFIX and types is not None:
        return 0 <= layer < len(types) and types[layer] == "sparse"
    if model_type in _DENSE_PREFIX:
        field, default = _DENSE_PREFIX[model_type]
        first = f.int(field, default) if field else default
        if model_type == "axk2":
            return layer >= first and layer % f.int("moe_layer_freq", 1) == 0
        return layer >= first
    if model_type in ("qwen2_moe", "qwen3_moe", "qwen3_next", "flint"):
        step = f.int("decoder_sparse_step", 1)
        dense = f.get("mlp_only_layers", [0, 1] if model_type == "flint" else [])
        return (layer not in dense
                and f.int(("num_experts", "num_local_experts"), 1) > 0
                and (layer + 1) % step == 0)
    if model_type in _FIRST_K_DENSE:
        # transformers ignores DeepSeek's moe_layer_freq; the remote code
        # reads it, and every published checkpoint has 1.
        return (layer >= f.int("first_k_dense_replace", _FIRST_K_DENSE[model_type])
                and layer % f.int("moe_layer_freq", 1) == 0)
    if model_type == "afmoe":
        return layer >= f.int("num_dense_layers", 1)
    if model_type == "ernie4_5_moe":
        end = f.int("moe_layer_end_index", -1)
        if end < 0:
            end = f.int("num_hidden_layers", 28) - 1
        return ((layer + 1) % f.int("moe_layer_interval", 1) == 0
                and f.int("moe_layer_start_index", 1) <= layer <= end)
    if model_type == "jamba":
        return layer % f.int("expert_layer_period", 2) == f.int("expert_layer_offset", 1)
    if model_type in ("llama4", "llama4_text"):
        # Llama4TextConfig: moe_layers, else every interleave_moe_layer_step-th
        # layer from step - 1 on (the others are dense Llama4TextMLPs).
        t = f.sub("text_config") if model_type == "llama4" else f
        moe_layers = t.get("moe_layers")
        if moe_layers is not None:
            return layer in moe_layers
        step = t.int("interleave_moe_layer_step", 1)
        return (0 <= layer < t.int("num_hidden_layers", 48) and step > 0
                and (layer + 1) % step == 0)
    if model_type == "granitemoehybrid":
        return f.int("num_local_experts", 8) > 0
    if model_type == "switch_transformers":
        step = f.int("encoder_sparse_step", 1)
        return step > 0 and (step == 1 or layer % step == 1)
    return True

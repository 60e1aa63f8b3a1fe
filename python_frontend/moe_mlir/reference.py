"""An f64 numpy evaluation of the MoE layer of SPEC §1, with the rules of
docs/FAMILY-RULES.md (normalize_p, sparsemixer scoring, router_weight_on_input,
clamped_swiglu, expert_bias, output_bias).

It is written from the specification alone so that it can judge the compiler:
nothing here is shared with, or derived from, the code that moe-compile emits.
Everything is computed in float64 whatever the dtype of the arrays handed in.
"""

import math

import numpy as np

# SPEC §2: the optional keys and their defaults.
DEFAULTS = {
    "dtype": "f32",
    "activation": "silu",
    "gated": True,
    "scoring": "softmax",
    "normalize_top_k": True,
    "routed_scaling_factor": 1.0,
    "router_bias": False,
    "selection_bias": False,
    "n_group": 1,
    "topk_group": 1,
    "group_score": "top2_sum",
    "routing": "token_choice",
    "capacity_factor": 0.0,
    "shared_intermediate_size": 0,
    "shared_expert_gate": False,
    "target": "cpu",
    "gpu_arch": "sm_80,sm_90",
    # docs/FAMILY-RULES.md §2.
    "normalize_p": 1.0,
    "router_weight_on_input": False,
    "expert_bias": False,
    "output_bias": False,
}
# Keys present only where their rule is on, as moe-compile prints them:
# sparsemixer_eps with "scoring": "sparsemixer" (in that level), swiglu_alpha
# and swiglu_limit with "activation": "clamped_swiglu" (in the leaf level).
SPARSEMIXER_DEFAULTS = {"sparsemixer_eps": 0.01}
SWIGLU_DEFAULTS = {"swiglu_alpha": 1.702, "swiglu_limit": 7.0, "swiglu_up_offset": 1.0}

REQUIRED = ("name", "hidden_size", "intermediate_size", "num_experts", "top_k")

# Hierarchical MoE (an "expert" key): the keys of an inner level and their
# defaults. The leaf FFN's keys (intermediate_size, activation, gated) are the
# innermost level's; name, hidden_size, dtype, target and gpu_arch are the top
# level's; inner levels route by token choice, dropless, without shared experts.
LEVEL_DEFAULTS = {key: DEFAULTS[key] for key in (
    "scoring", "normalize_top_k", "routed_scaling_factor", "router_bias",
    "selection_bias", "n_group", "topk_group", "group_score", "normalize_p")}
LEAF_KEYS = ("intermediate_size", "activation", "gated")
INHERITED = ("name", "hidden_size", "dtype", "target", "gpu_arch")
# Top-level keys about the leaf experts, which the evaluation of an inner
# layer of a hierarchy needs too (see inner_layer).
LEAF_RULES = ("expert_bias",)

WEIGHT_KEYS = (
    "router",
    "router_bias",
    "selection_bias",
    "gate_proj",
    "up_proj",
    "down_proj",
    "shared_gate_proj",
    "shared_up_proj",
    "shared_down_proj",
    "shared_expert_gate",
)

# docs/FAMILY-RULES.md §3: appended to every weights struct, after the ten
# above and a hierarchy's level fields (NULL when the config does not use
# them).
BIAS_KEYS = ("gate_proj_bias", "up_proj_bias", "down_proj_bias", "output_bias")

# docs/QUANTIZATION.md: with "expert_weights", each projection's scales and
# zero points, appended after everything above (NULL when unused).
PROJECTIONS = ("gate_proj", "up_proj", "down_proj",
               "shared_gate_proj", "shared_up_proj", "shared_down_proj")
# The "expert_weights" formats with scales; "bf16" and "f16" projections are
# plain floats in that type.
QUANTIZED_FORMATS = ("int8", "int4", "fp8_e4m3", "mxfp4")


def group_size(quantized):
    """An "expert_weights" object's group size: its group_size, 0 (whole
    rows) by default, and always 32 for mxfp4."""
    return 32 if quantized["format"] == "mxfp4" else quantized.get("group_size", 0)
QUANT_KEYS = (tuple(p + "_scales" for p in PROJECTIONS)
              + tuple(p + "_zeros" for p in PROJECTIONS)
              + tuple(p + "_perm" for p in PROJECTIONS))


def _conditional_defaults(full, leaf):
    """Adds the keys that exist only with their rule on (sparsemixer_eps in a
    sparsemixer level, swiglu_alpha and swiglu_limit in a clamped_swiglu
    leaf), as moe-compile prints them."""
    if full.get("scoring") == "sparsemixer":
        for key, value in SPARSEMIXER_DEFAULTS.items():
            full.setdefault(key, value)
    if leaf and full.get("activation") == "clamped_swiglu":
        for key, value in SWIGLU_DEFAULTS.items():
            full.setdefault(key, value)
    return full


def with_defaults(config):
    """The config with every optional key present. In a hierarchical config
    every level under "expert" gets its defaults too, and the leaf FFN's keys
    appear in the innermost level only. sparsemixer_eps, swiglu_alpha and
    swiglu_limit are added only where their rule is on."""
    if "expert" not in config:
        missing = [k for k in REQUIRED if k not in config]
        if missing:
            raise KeyError(f"config lacks required keys {missing}")
        full = dict(DEFAULTS)
        full.update(config)
        return _conditional_defaults(full, leaf=True)
    missing = [k for k in REQUIRED if k not in config and k != "intermediate_size"]
    if missing:
        raise KeyError(f"config lacks required keys {missing}")
    full = {k: v for k, v in DEFAULTS.items() if k not in LEAF_KEYS}
    full.update(config)
    _conditional_defaults(full, leaf=False)
    full["expert"] = _level_with_defaults(config["expert"])
    return full


def _level_with_defaults(level):
    leaf = "expert" not in level
    required = ("num_experts", "top_k") + (("intermediate_size",) if leaf else ())
    missing = [k for k in required if k not in level]
    if missing:
        raise KeyError(f"an inner level lacks required keys {missing}")
    full = dict(LEVEL_DEFAULTS)
    if leaf:
        full.update(activation=DEFAULTS["activation"], gated=DEFAULTS["gated"])
    full.update(level)
    _conditional_defaults(full, leaf)
    if not leaf:
        full["expert"] = _level_with_defaults(level["expert"])
    return full


def levels(config):
    """[level 1, level 2, ...] with defaults: the config itself, then each
    "expert" inside it. A flat config is one level."""
    out = [with_defaults(config)]
    while "expert" in out[-1]:
        out.append(out[-1]["expert"])
    return out


def inner_layer(config):
    """The MoE layer every routed expert of a hierarchical config is: its
    "expert" with the keys it inherits from the top level, and the top
    level's rules about the leaves (expert_bias), which the evaluation of the
    inner layer applies to them."""
    c = with_defaults(config)
    inner = dict(c["expert"])
    inner.update({key: c[key] for key in INHERITED + LEAF_RULES})
    return with_defaults(inner)


def weight_keys(config):
    """The fields of the ABI's weights struct, in order: the ten of SPEC §4,
    then level<l>_router, level<l>_router_bias, level<l>_selection_bias for
    every inner level l >= 2, then the four of docs/FAMILY-RULES.md §3
    (gate_proj_bias, up_proj_bias, down_proj_bias, output_bias)."""
    keys = list(WEIGHT_KEYS)
    for l in range(2, len(levels(config)) + 1):
        keys += [f"level{l}_router", f"level{l}_router_bias", f"level{l}_selection_bias"]
    return tuple(keys) + BIAS_KEYS + QUANT_KEYS


def weight_shapes(config):
    """Shapes of the weights a config uses (SPEC §4); unused ones are absent.
    A hierarchical config stacks the leaf FFNs over every level
    ([E1]..[EL][F][H]) and level l's router over the levels above it
    ([E1]..[El][H]). The leaf experts' biases (expert_bias) are stacked like
    them: gate_proj_bias and up_proj_bias [E1]..[EL][F], down_proj_bias
    [E1]..[EL][H] (an expert shard: [count][F], [count][H]); output_bias is
    [H]."""
    c = with_defaults(config)
    lv = levels(c)
    leaf = lv[-1]
    H, F = c["hidden_size"], leaf["intermediate_size"]
    Es = tuple(level["num_experts"] for level in lv)
    E = Es[0]
    Fs = c["shared_intermediate_size"]
    shard = c.get("expert_shard")
    # A shard holds its own experts only, flat: [count][F][H].
    leaves = Es if shard is None else (shard["count"],)
    shapes = {"router": (E, H), "up_proj": leaves + (F, H), "down_proj": leaves + (H, F)}
    if c["router_bias"]:
        shapes["router_bias"] = (E,)
    if c["selection_bias"]:
        shapes["selection_bias"] = (E,)
    if leaf["gated"]:
        shapes["gate_proj"] = leaves + (F, H)
    if Fs > 0:
        shapes["shared_up_proj"] = (Fs, H)
        shapes["shared_down_proj"] = (H, Fs)
        if leaf["gated"]:
            shapes["shared_gate_proj"] = (Fs, H)
        if c["shared_expert_gate"]:
            shapes["shared_expert_gate"] = (H,)
    for l in range(2, len(lv) + 1):
        shapes[f"level{l}_router"] = Es[:l] + (H,)
        if lv[l - 1]["router_bias"]:
            shapes[f"level{l}_router_bias"] = Es[:l]
        if lv[l - 1]["selection_bias"]:
            shapes[f"level{l}_selection_bias"] = Es[:l]
    if c["expert_bias"]:
        if leaf["gated"]:
            shapes["gate_proj_bias"] = leaves + (F,)
        shapes["up_proj_bias"] = leaves + (F,)
        shapes["down_proj_bias"] = leaves + (H,)
    if c["output_bias"]:
        shapes["output_bias"] = (H,)
    q = c.get("expert_weights")
    if q is not None and q["format"] in QUANTIZED_FORMATS:
        for p in PROJECTIONS:
            if p not in shapes:
                continue
            *rows, K = shapes[p]
            groups = K // group_size(q) if group_size(q) else 1
            nibbles = q["format"] in ("int4", "mxfp4")
            shapes[p] = tuple(rows) + ((K // 2,) if nibbles else (K,))
            shapes[p + "_scales"] = tuple(rows) + (groups,)
            if q.get("zero_points"):
                shapes[p + "_zeros"] = tuple(rows) + (groups,)
            if q.get("act_order"):
                shapes[p + "_perm"] = tuple(rows[:-1]) + (K,)
    return shapes


def weight_types(config):
    """The arrays of a config that are not in its dtype, and their types:
    numpy types for a quantized layer's projections (int8, or uint8 bytes
    holding two int4 or e2m1 values, or float8_e4m3fn bits), scales
    (float32, or uint8 e8m0 exponents), zero points (uint8) and column
    orders (int32); "bf16" or "f16" for projections in that type."""
    c = with_defaults(config)
    q = c.get("expert_weights")
    if q is None or q["format"] == "dense":
        return {}
    fmt = q["format"]
    types = {}
    for key in weight_shapes(c):
        if key in PROJECTIONS:
            types[key] = (fmt if fmt in ("bf16", "f16") else
                          np.int8 if fmt == "int8" else np.uint8)
        elif key.endswith("_scales"):
            types[key] = np.uint8 if fmt == "mxfp4" else np.float32
        elif key.endswith("_zeros"):
            types[key] = np.uint8
        elif key.endswith("_perm"):
            types[key] = np.int32
    return types


# e2m1's sixteen values (OCP MX v1.0): sign, two exponent bits, one mantissa bit.
E2M1 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                 -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def _fp8_e4m3(bits):
    """float8 e4m3fn bytes as float64: 1 sign, 4 exponent bits biased by 7,
    3 mantissa bits, subnormal below exponent 1."""
    b = np.asarray(bits).astype(np.int64)
    sign = np.where(b & 0x80, -1.0, 1.0)
    exponent, mantissa = (b >> 3) & 15, b & 7
    return sign * np.where(exponent == 0, mantissa / 8.0 * 2.0 ** -6,
                           (1 + mantissa / 8.0) * 2.0 ** (exponent - 7))


def dequantize(config, weights):
    """`weights` with each quantized projection replaced by the float64 values
    it stands for (docs/QUANTIZATION.md): w = (q - zero) * scale, one scale and
    zero per group of group_size elements along a row (a whole row for 0).
    int8: q is a signed byte, zero 0. fp8_e4m3: q is a float8 e4m3fn byte.
    int4 and mxfp4: within a group of g, byte b holds element b in its low
    nibble and element b + g/2 in its high one; int4's q is 0 to 15 and zero
    is 8 or the group's zero point; mxfp4's q is an e2m1 value and its scale
    an e8m0 exponent e, 2^(e - 127) (0 for e = 0). With "act_order", column
    k of a row holds the weight of input element `<projection>_perm[k]`."""
    c = with_defaults(config)
    q = c.get("expert_weights")
    if q is None or q["format"] not in QUANTIZED_FORMATS:
        return weights
    fmt = q["format"]
    out = dict(weights)
    for p in PROJECTIONS:
        if weights.get(p) is None:
            continue
        packed = np.asarray(weights[p])
        scales = np.asarray(weights[p + "_scales"])
        groups = scales.shape[-1]
        if fmt == "mxfp4":
            e = scales.astype(np.float64)
            scales = np.where(e == 0, 0.0, 2.0 ** (e - 127))
        scales = scales.astype(np.float64)
        zero = 0.0
        if fmt in ("int8", "fp8_e4m3"):
            values = (packed.astype(np.int8).astype(np.float64) if fmt == "int8"
                      else _fp8_e4m3(packed.astype(np.uint8)))
            values = values.reshape(packed.shape[:-1] + (groups, -1))
        else:
            nibbles = packed.astype(np.uint8).reshape(packed.shape[:-1] + (groups, -1))
            codes = np.concatenate([nibbles & 15, nibbles >> 4], axis=-1)
            if fmt == "mxfp4":
                values = E2M1[codes]
            else:
                values = codes.astype(np.float64)
                zeros = weights.get(p + "_zeros")
                zero = 8.0 if zeros is None else np.asarray(zeros, dtype=np.float64)[..., None]
        w = (values - zero) * scales[..., None]
        w = w.reshape(w.shape[:-2] + (-1,))
        if q.get("act_order"):
            perm = np.asarray(weights[p + "_perm"], dtype=np.int64)
            columns = np.broadcast_to(perm[..., None, :], w.shape)
            ordered = np.empty_like(w)
            np.put_along_axis(ordered, columns, w, axis=-1)
            w = ordered
        out[p] = w
    return out


def route_width(config):
    """Columns of route()'s outputs: top_k, or every expert for expert choice,
    times the top_k of every inner level."""
    c = with_defaults(config)
    width = c["num_experts"] if c["routing"] == "expert_choice" else c["top_k"]
    for level in levels(c)[1:]:
        width *= level["top_k"]
    return width


# ----------------------------------------------------------------------------
# Elementwise functions, stable over the whole f64 range.

def sigmoid(v):
    v = np.asarray(v, dtype=np.float64)
    z = np.exp(-np.abs(v))
    return np.where(v >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def softmax(v, axis=-1):
    v = np.asarray(v, dtype=np.float64)
    m = np.max(v, axis=axis, keepdims=True)
    e = np.exp(v - m)
    return e / np.sum(e, axis=axis, keepdims=True)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def activation(name, v):
    v = np.asarray(v, dtype=np.float64)
    if name == "silu":
        return v * sigmoid(v)
    if name == "gelu":
        return 0.5 * v * (1.0 + _erf(v / math.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))
    if name == "relu":
        return np.maximum(v, 0.0)
    if name == "clamped_swiglu":
        raise ValueError("clamped_swiglu combines the gate and up rows: use clamped_swiglu()")
    raise ValueError(f"unknown activation {name!r}")


def clamped_swiglu(g, u, alpha, limit, up_offset=1.0):
    """docs/FAMILY-RULES.md: g' = min(g, limit), u' = clamp(u, -limit, limit),
    g' · σ(alpha · g') · (u' + up_offset)."""
    g = np.minimum(np.asarray(g, dtype=np.float64), float(limit))
    u = np.clip(np.asarray(u, dtype=np.float64), -float(limit), float(limit))
    return g * sigmoid(float(alpha) * g) * (u + float(up_offset))


# ----------------------------------------------------------------------------
# Routing.

def _w(weights, key):
    a = weights.get(key) if weights is not None else None
    return None if a is None else np.asarray(a, dtype=np.float64)


def _logits(c, weights, x):
    logits = x @ _w(weights, "router").T
    if c["router_bias"]:
        logits = logits + _w(weights, "router_bias")
    return logits


def _group_scores(c, choice):
    """[T, n_group] score of each group from the choice values (step 4)."""
    T, E = choice.shape
    ng = c["n_group"]
    grouped = choice.reshape(T, ng, E // ng)
    if c["group_score"] == "max":
        return grouped.max(axis=2)
    if c["group_score"] == "top2_sum":
        top = -np.sort(-grouped, axis=2)
        return top[:, :, 0] + top[:, :, 1]
    raise ValueError(f"unknown group_score {c['group_score']!r}")


def _stable_desc(v):
    """Indices sorting each row descending, equal values keeping index order."""
    return np.argsort(-v, axis=1, kind="stable")


def allowed_experts(config, choice):
    """[T, E] bool: the experts step 4 lets each token choose from.

    Groups tied in score go to the lower group index, as experts do in step 5.
    """
    c = with_defaults(config)
    choice = np.asarray(choice, dtype=np.float64)
    T, E = choice.shape
    ng = c["n_group"]
    if ng <= 1:
        return np.ones((T, E), dtype=bool)
    best = _stable_desc(_group_scores(c, choice))[:, : c["topk_group"]]
    gmask = np.zeros((T, ng), dtype=bool)
    np.put_along_axis(gmask, best, True, axis=1)
    return np.repeat(gmask, E // ng, axis=1)


def _apply_capacity(c, ids, w):
    """Step 7: grant slot 0 of every token in token order, then slot 1, ..."""
    T, k = ids.shape
    E = c["num_experts"]
    cf = float(c["capacity_factor"])
    if cf <= 0 or T == 0:
        return ids, w
    cap = math.ceil(cf * T * k / E)
    taken = np.zeros(E, dtype=np.int64)
    ids, w = ids.copy(), w.copy()
    for j in range(k):
        for t in range(T):
            e = ids[t, j]
            if e < 0:
                continue
            if taken[e] < cap:
                taken[e] += 1
            else:
                ids[t, j] = -1
                w[t, j] = 0.0
    return ids, w


def _sparsemixer_allowed(logits, m, excluded, eps):
    """[T, E] bool: the experts of sparsemixer's softmax for slots whose
    chosen logit is m [T]: not excluded (chosen in an earlier slot) and not
    (m - s_e) / max(|s_e|, m) > 2 eps. A 0/0 ratio is not > 2 eps."""
    factor = np.maximum(np.abs(logits), m[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (m[:, None] - logits) / factor
    return ~(ratio > 2.0 * float(eps)) & ~excluded


def sparsemixer_weights(logits, ids, eps):
    """docs/FAMILY-RULES.md, sparsemixer: the weight of slot j, whose expert
    x_j (ids[t, j]) has logit m, is 1 / Σ_{e in allowed_j} exp(s_e - m), over
    the experts not chosen in an earlier slot and not too far below m (see
    _sparsemixer_allowed). A dropped slot (id -1) weighs 0 and excludes
    nothing."""
    logits = np.asarray(logits, dtype=np.float64)
    ids = np.asarray(ids)
    T, k = ids.shape
    rows = np.arange(T)
    w = np.zeros((T, k), dtype=np.float64)
    excluded = np.zeros(logits.shape, dtype=bool)
    for j in range(k):
        e = ids[:, j]
        live = e >= 0
        m = logits[rows, np.where(live, e, 0)]
        allowed = _sparsemixer_allowed(logits, m, excluded, eps)
        with np.errstate(over="ignore"):
            total = np.where(allowed, np.exp(logits - m[:, None]), 0.0).sum(axis=1)
        w[:, j] = np.where(live, 1.0 / np.where(live, total, 1.0), 0.0)
        excluded[rows[live], e[live]] = True
    return w


def _normalize(c, w):
    """Step 6's normalization: w divided by its p-norm (p = normalize_p; 1,
    the default, is the sum)."""
    p = float(c["normalize_p"])
    if p == 1.0:
        s = w.sum(axis=1, keepdims=True)
    else:
        s = (w ** p).sum(axis=1, keepdims=True) ** (1.0 / p)
    return np.divide(w, s, out=np.zeros_like(w), where=s > 0)


def _token_choice(c, weights, x, forced_ids):
    T = x.shape[0]
    E, k = c["num_experts"], c["top_k"]
    logits = _logits(c, weights, x)
    if c["scoring"] == "softmax":
        scores = softmax(logits, axis=1)
    elif c["scoring"] == "sigmoid":
        scores = sigmoid(logits)
    elif c["scoring"] == "sparsemixer":
        # Experts are chosen by the logits themselves; their weights are
        # computed per slot below.
        scores = logits
    else:
        raise ValueError(f"unknown scoring {c['scoring']!r}")
    choice = scores + _w(weights, "selection_bias") if c["selection_bias"] else scores

    if forced_ids is None:
        masked = np.where(allowed_experts(c, choice), choice, -np.inf)
        ids = _stable_desc(masked)[:, :k].astype(np.int64)
    else:
        ids = np.asarray(forced_ids).astype(np.int64)
        if ids.shape != (T, k):
            raise ValueError(f"forced_ids has shape {ids.shape}, want {(T, k)}")
        if ((ids < -1) | (ids >= E)).any():
            raise ValueError("forced_ids out of range")

    live = ids >= 0
    if c["scoring"] == "sparsemixer":
        w = sparsemixer_weights(logits, ids, c["sparsemixer_eps"])
    else:
        w = np.where(live, np.take_along_axis(scores, np.where(live, ids, 0), axis=1), 0.0)
    if c["normalize_top_k"]:
        w = _normalize(c, w)
    w = w * float(c["routed_scaling_factor"])
    ids, w = _apply_capacity(c, ids, w)
    return ids, w, choice


def _expert_choice(c, weights, x):
    T = x.shape[0]
    E = c["num_experts"]
    scores = softmax(_logits(c, weights, x), axis=1)
    cap = min(math.ceil(float(c["capacity_factor"]) * T / E), T) if T else 0
    taken = np.zeros((T, E), dtype=bool)
    for e in range(E):
        order = np.argsort(-scores[:, e], kind="stable")[:cap]
        taken[order, e] = True
    ids = np.where(taken, np.arange(E, dtype=np.int64)[None, :], -1)
    # SPEC §1 weights a taken token by scores[t, e] alone: neither the
    # normalization nor the routed_scaling_factor of step 6 apply here.
    w = np.where(taken, scores, 0.0)
    return ids, w, scores


# ----------------------------------------------------------------------------
# Experts.

def _ffn(c, gate, up, down, v, biases=None):
    """One FFN of SPEC §1 on rows v; gate is None when not gated. `c` holds
    the leaf's activation (and clamped_swiglu's swiglu_alpha and
    swiglu_limit); `biases` is (gate bias or None, up bias, down bias) of a
    routed expert with expert_bias, else None."""
    bg, bu, bd = biases if biases is not None else (None, None, None)
    u = v @ up.T
    if bu is not None:
        u = u + bu
    if gate is not None:
        g = v @ gate.T
        if bg is not None:
            g = g + bg
        if c["activation"] == "clamped_swiglu":
            h = clamped_swiglu(g, u, c["swiglu_alpha"], c["swiglu_limit"],
                               c["swiglu_up_offset"])
        else:
            h = activation(c["activation"], g) * u
    else:
        h = activation(c["activation"], u)
    out = h @ down.T
    if bd is not None:
        out = out + bd
    return out


def _route(c, weights, x, forced_ids=None):
    """Level 1's routing of x: (ids, w, choice)."""
    if c["routing"] == "expert_choice":
        if forced_ids is not None:
            raise ValueError("forced_ids is for token choice only")
        return _expert_choice(c, weights, x)
    if c["routing"] == "token_choice":
        return _token_choice(c, weights, x, forced_ids)
    raise ValueError(f"unknown routing {c['routing']!r}")


def _inner_weights(c, weights, e):
    """The weights of routed expert e of hierarchical `c`, as those of a layer
    of its own: level l + 1 of `c` is level l of the expert."""
    names = {"gate_proj": "gate_proj", "up_proj": "up_proj", "down_proj": "down_proj",
             "gate_proj_bias": "gate_proj_bias", "up_proj_bias": "up_proj_bias",
             "down_proj_bias": "down_proj_bias",
             "router": "level2_router", "router_bias": "level2_router_bias",
             "selection_bias": "level2_selection_bias"}
    for l in range(3, len(levels(c)) + 1):
        for suffix in ("router", "router_bias", "selection_bias"):
            names[f"level{l - 1}_{suffix}"] = f"level{l}_{suffix}"
    inner = {}
    for mine, theirs in names.items():
        if weights.get(theirs) is not None:
            inner[mine] = np.asarray(weights[theirs])[e]
    return inner


def _leaf_weights(c, weights):
    """(gate or None, up, down, biases or None) of the leaf experts, each
    indexed by leaf id: [L, F, H], [L, F, H], [L, H, F] and the biases
    (gate [L, F] or None, up [L, F], down [L, H]) with expert_bias."""
    leaf = levels(c)[-1]
    F, H = leaf["intermediate_size"], c["hidden_size"]

    def flat(key, tail):
        a = _w(weights, key)
        return None if a is None else a.reshape((-1,) + tail)

    gate = flat("gate_proj", (F, H)) if leaf["gated"] else None
    biases = None
    if c["expert_bias"]:
        biases = (flat("gate_proj_bias", (F,)) if leaf["gated"] else None,
                  flat("up_proj_bias", (F,)), flat("down_proj_bias", (H,)))
    return gate, flat("up_proj", (F, H)), flat("down_proj", (H, F)), biases


def _routed_experts(c, weights, x, ids, w):
    """Σ_j w[t,j] · FFN_ids[t,j](x[t]) over the kept slots; with
    router_weight_on_input Σ_j FFN_ids[t,j](w[t,j] · x[t]) instead. ids are
    leaf ids (a flat layer's experts, or a hierarchy's leaves)."""
    T, H = x.shape
    leaf = levels(c)[-1]
    gate, up, down, biases = _leaf_weights(c, weights)
    on_input = c["router_weight_on_input"]
    y = np.zeros((T, H), dtype=np.float64)
    for e in range(up.shape[0]):
        t_idx, j_idx = np.nonzero(ids == e)
        if t_idx.size == 0:
            continue
        scale = w[t_idx, j_idx][:, None]
        v = scale * x[t_idx] if on_input else x[t_idx]
        b = None if biases is None else tuple(None if a is None else a[e] for a in biases)
        out = _ffn(leaf, None if gate is None else gate[e], up[e], down[e], v, b)
        np.add.at(y, t_idx, out if on_input else scale * out)
    return y


def _routed_layers(c, weights, x, ids, w):
    """Hierarchical: Σ_j w[t,j] · MoE_ids[t,j](x[t]), each routed expert an MoE
    layer of its own (evaluated recursively). Also returns the routing to the
    leaves: slot j·W + i holds leaf id ids[t,j]·L + (the inner layer's id i)
    and weight w[t,j] · (its weight i), W being the inner layer's route width
    and L its number of leaves; a dropped slot j gives W dropped slots."""
    inner = inner_layer(c)
    W = route_width(inner)
    L = math.prod(level["num_experts"] for level in levels(inner))
    T, H = x.shape
    y = np.zeros((T, H), dtype=np.float64)
    leaf_ids = np.full((T, ids.shape[1] * W), -1, dtype=np.int64)
    leaf_w = np.zeros((T, ids.shape[1] * W), dtype=np.float64)
    for e in range(c["num_experts"]):
        t_idx, j_idx = np.nonzero(ids == e)
        if t_idx.size == 0:
            continue
        y_e, ids_e, w_e, _ = reference(inner, _inner_weights(c, weights, e), x[t_idx])
        outer = w[t_idx, j_idx][:, None]
        np.add.at(y, t_idx, outer * y_e)
        cols = j_idx[:, None] * W + np.arange(W)[None, :]
        leaf_ids[t_idx[:, None], cols] = np.where(ids_e >= 0, e * L + ids_e, -1)
        leaf_w[t_idx[:, None], cols] = outer * w_e
    return y, leaf_ids, leaf_w


def reference(config, weights, x, forced_ids=None):
    """Evaluates SPEC §1 (with docs/FAMILY-RULES.md's rules) in float64.

    Returns (y [T, H], ids [T, W] int64, weights [T, W] float64, choice [T, E]),
    W = top_k for token choice and E for expert choice (slot e holds e, or -1 when
    expert e did not take the token). `choice` is scores + selection_bias, the
    values experts are chosen by (the logits for sparsemixer scoring).

    A hierarchical config (an "expert" key) evaluates every routed expert as the
    MoE layer it is; ids and weights are then the routing to the leaves (see
    _routed_layers), W the product over levels, and `choice` level 1's.

    forced_ids [T, k] replaces the choice of step 5 (flat token choice only):
    weights are then scores at those ids (sparsemixer: its weights with those
    ids as x_0, x_1, ...), normalized over them and scaled, and capacity (if
    any) drops slots from them as usual; an id of -1 contributes nothing.

    docs/FAMILY-RULES.md: router_weight_on_input runs each kept slot's leaf
    expert on w · x and adds its output unscaled (in a hierarchy w is the
    leaf's weight, the product of the levels'; inner levels route the
    unscaled x); expert_bias adds the leaves' biases (the down bias inside
    FFN_e, weighted with it); output_bias is added to every token's y last.
    """
    c = with_defaults(config)
    H = c["hidden_size"]
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != H:
        raise ValueError(f"x has shape {x.shape}, want [T, {H}]")
    hierarchical = "expert" in c
    if hierarchical and forced_ids is not None:
        raise ValueError("forced_ids is for flat layers only")
    weights = dequantize(c, weights)

    ids, w, choice = _route(c, weights, x, forced_ids)
    if hierarchical:
        y, ids, w = _routed_layers(c, weights, x, ids, w)
        if c["router_weight_on_input"]:
            # Each leaf runs on x scaled by its slot's weight (the product of
            # the levels' weights) and adds its output unscaled; the inner
            # levels route the unscaled x.
            y = _routed_experts(c, weights, x, ids, w)
    else:
        y = _routed_experts(c, weights, x, ids, w)

    if c["shared_intermediate_size"] > 0:
        # The shared expert is an FFN like the leaves (their activation and
        # gating).
        leaf = levels(c)[-1]
        sgate = _w(weights, "shared_gate_proj") if leaf["gated"] else None
        shared = _ffn(leaf, sgate, _w(weights, "shared_up_proj"),
                      _w(weights, "shared_down_proj"), x)
        if c["shared_expert_gate"]:
            shared = shared * sigmoid(x @ _w(weights, "shared_expert_gate"))[:, None]
        y = y + shared
    if c["output_bias"]:
        y = y + _w(weights, "output_bias")
    return y, ids, w, choice


def routing_ties(config, weights, x, margin=1e-5):
    """[T] bool: tokens whose routing has a near tie (see near_ties) at any
    level: level 1, or any inner layer of a hierarchy that takes them."""
    c = with_defaults(config)
    x = np.asarray(x, dtype=np.float64)
    ids, _, choice = _route(c, weights, x)
    tied = near_ties(c, choice, margin)[0]
    if "expert" in c:
        inner = inner_layer(c)
        for e in range(c["num_experts"]):
            t_idx = np.nonzero((ids == e).any(axis=1))[0]
            if t_idx.size:
                tied[t_idx] |= routing_ties(inner, _inner_weights(c, weights, e),
                                            x[t_idx], margin)
    return tied


def sparsemixer_ties(logits, k, eps, margin=1e-5):
    """[T] bool: tokens whose sparsemixer weights an f32 evaluation may
    legitimately compute otherwise: for one of the k slots (experts by
    descending logit, ties to the lower index), an expert outside the earlier
    slots has (m - s_e) / max(|s_e|, m) within `margin` of the threshold 2 eps,
    so that rounding may move it in or out of the slot's softmax."""
    logits = np.asarray(logits, dtype=np.float64)
    T, E = logits.shape
    tied = np.zeros(T, dtype=bool)
    if T == 0:
        return tied
    ids = _stable_desc(logits)[:, :k]
    rows = np.arange(T)
    excluded = np.zeros((T, E), dtype=bool)
    for j in range(min(k, E)):
        m = logits[rows, ids[:, j]]
        factor = np.maximum(np.abs(logits), m[:, None])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (m[:, None] - logits) / factor
            near = np.abs(ratio - 2.0 * float(eps)) <= margin
        tied |= (near & ~excluded).any(axis=1)
        excluded[rows, ids[:, j]] = True
    return tied


def near_ties(config, choice, margin=1e-5):
    """Tokens whose routing an f32 evaluation may legitimately resolve otherwise.

    Returns (tied [T], group_tied [T]). Token choice: a token is tied when any two
    consecutive values among its k+1 largest allowed choice values are within
    `margin` (this covers the k-th/(k+1)-th boundary of SPEC §1 and the order of
    the k slots, which capacity depends on), or when its topk_group-th and next
    group scores are (group_tied); with sparsemixer scoring also when an
    expert sits at a slot's threshold (sparsemixer_ties). Expert choice: a token is tied when one of its
    scores sits at an expert's C-th/(C+1)-th boundary that is within `margin`.
    """
    c = with_defaults(config)
    choice = np.asarray(choice, dtype=np.float64)
    T, E = choice.shape
    tied = np.zeros(T, dtype=bool)
    group_tied = np.zeros(T, dtype=bool)
    if T == 0:
        return tied, group_tied

    if c["routing"] == "expert_choice":
        cap = min(math.ceil(float(c["capacity_factor"]) * T / E), T)
        if 0 < cap < T:
            for e in range(E):
                s = -np.sort(-choice[:, e])
                lo, hi = s[cap], s[cap - 1]
                if hi - lo <= margin:
                    col = choice[:, e]
                    tied |= (col >= lo - margin) & (col <= hi + margin)
        return tied, group_tied

    k = c["top_k"]
    ng, tg = c["n_group"], c["topk_group"]
    if ng > 1 and tg < ng:
        gs = -np.sort(-_group_scores(c, choice), axis=1)
        group_tied = gs[:, tg - 1] - gs[:, tg] <= margin
    allowed = allowed_experts(c, choice)
    cs = -np.sort(-np.where(allowed, choice, -np.inf), axis=1)
    n = min(k + 1, E)
    top = cs[:, :n]
    with np.errstate(invalid="ignore"):
        gaps = top[:, :-1] - top[:, 1:]
    gaps = np.where(np.isfinite(top[:, 1:]), gaps, np.inf)
    tied = (gaps <= margin).any(axis=1) if n > 1 else tied
    if c["scoring"] == "sparsemixer":
        tied |= sparsemixer_ties(choice, k, c["sparsemixer_eps"], margin)
    return tied | group_tied, group_tied


# ----------------------------------------------------------------------------
# Test data.

def random_weights(config, seed):
    """float32 weights for `config`, scaled so the layer's outputs are O(1).

    Every projection is normal / sqrt(fan_in), so pre-activations and outputs
    have unit-order spread when x does. Routers are twice that so that scores
    spread well apart and near ties stay rare.
    """
    c = with_defaults(config)
    lv = levels(c)
    H, F, E = c["hidden_size"], lv[-1]["intermediate_size"], c["num_experts"]
    Es = tuple(level["num_experts"] for level in lv)
    Fs = c["shared_intermediate_size"]
    rng = np.random.default_rng(seed)

    def normal(shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def selection_bias(shape, level):
        # Comparable to the scores themselves, so the bias changes some
        # choices without deciding all of them.
        scale = 0.1 if level["scoring"] == "sigmoid" else 0.5 / level["num_experts"]
        return normal(shape, scale)

    shapes = weight_shapes(c)
    # Drawn in a fixed order, all of them, so a weight's values do not depend
    # on which other weights the config uses.
    full = {
        "router": normal((E, H), 2.0 / math.sqrt(H)),
        "router_bias": normal((E,), 0.5),
        "selection_bias": selection_bias((E,), c),
        "gate_proj": normal(Es + (F, H), 1.0 / math.sqrt(H)),
        "up_proj": normal(Es + (F, H), 1.0 / math.sqrt(H)),
        "down_proj": normal(Es + (H, F), 1.0 / math.sqrt(F)),
        "shared_gate_proj": normal((Fs, H), 1.0 / math.sqrt(H)),
        "shared_up_proj": normal((Fs, H), 1.0 / math.sqrt(H)),
        "shared_down_proj": normal((H, Fs), 1.0 / math.sqrt(max(Fs, 1))),
        "shared_expert_gate": normal((H,), 1.0 / math.sqrt(H)),
    }
    for l in range(2, len(lv) + 1):
        full[f"level{l}_router"] = normal(Es[:l] + (H,), 2.0 / math.sqrt(H))
        full[f"level{l}_router_bias"] = normal(Es[:l], 0.5)
        full[f"level{l}_selection_bias"] = selection_bias(Es[:l], lv[l - 1])
    # docs/FAMILY-RULES.md's biases, drawn after all of the above so that
    # those keep their values; comparable to the projections they add to.
    full["gate_proj_bias"] = normal(Es + (F,), 0.5)
    full["up_proj_bias"] = normal(Es + (F,), 0.5)
    full["down_proj_bias"] = normal(Es + (H,), 0.5)
    full["output_bias"] = normal((H,), 0.5)
    q = c.get("expert_weights")
    if q is not None and q["format"] != "dense":
        # The projections rounded to the format (docs/QUANTIZATION.md).
        from .quantize import quantize_weights
        full = quantize_weights(c, {key: full[key] for key in full
                                    if key in shapes})
    return {key: full[key] for key in weight_keys(c) if key in shapes}


def random_input(T, H, seed):
    """x [T, H] float32, standard normal."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, H)).astype(np.float32)

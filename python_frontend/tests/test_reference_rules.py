"""The f64 reference's docs/FAMILY-RULES.md rules, each checked against a
hand computation, against a naive per-token re-implementation written here
from the rules' formulas, and against transformers' own modules (their
forward in float64, no compiler involved). Runs without moe-compile."""

import math

import numpy as np
import pytest

from moe_mlir.reference import (clamped_swiglu, near_ties, random_input, random_weights,
                                reference, sparsemixer_ties, weight_keys, weight_shapes,
                                with_defaults)


def identity_router(E, **extra):
    """Config and weights whose router makes logits equal x (H = E); every
    expert's FFN is zero."""
    config = {"name": "m", "hidden_size": E, "intermediate_size": 1, "num_experts": E}
    config.update(extra)
    weights = {"router": np.eye(E), "gate_proj": np.zeros((E, 1, E)),
               "up_proj": np.zeros((E, 1, E)), "down_proj": np.zeros((E, E, 1))}
    return config, weights


def sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def silu(v):
    return v * sig(v)


# ---------------------------------------------------------------------------
# normalize_p (DBRX)

def test_normalize_p_hand():
    config, weights = identity_router(4, top_k=2, normalize_p=2.0)
    _, ids, w, _ = reference(config, weights, np.array([[1.0, 3.0, 2.0, 0.0]]))
    assert ids.tolist() == [[1, 2]]
    # softmax's e^3 / Z and e^2 / Z divided by their 2-norm: Z cancels.
    norm = math.sqrt(math.e**6 + math.e**4)
    assert w[0] == pytest.approx([math.e**3 / norm, math.e**2 / norm], rel=1e-13)
    # p = 3, then the scaling factor.
    config, weights = identity_router(4, top_k=3, normalize_p=3.0, routed_scaling_factor=2.0)
    _, ids, w, _ = reference(config, weights, np.array([[1.0, 3.0, 2.0, 0.0]]))
    s = [math.e**3, math.e**2, math.e]
    norm = sum(v**3 for v in s) ** (1 / 3)
    assert ids.tolist() == [[1, 2, 0]]
    assert w[0] == pytest.approx([2 * v / norm for v in s], rel=1e-13)
    # Sigmoid scores too; without normalize_top_k the p is not used.
    config, weights = identity_router(4, top_k=2, scoring="sigmoid", normalize_p=0.5)
    _, _, w, _ = reference(config, weights, np.array([[1.0, 3.0, 2.0, 0.0]]))
    s = [sig(3.0), sig(2.0)]
    norm = (math.sqrt(s[0]) + math.sqrt(s[1])) ** 2
    assert w[0] == pytest.approx([s[0] / norm, s[1] / norm], rel=1e-13)
    config, weights = identity_router(4, top_k=2, normalize_p=2.0, normalize_top_k=False)
    _, _, w, _ = reference(config, weights, np.array([[1.0, 3.0, 2.0, 0.0]]))
    total = math.e**3 + math.e**2 + math.e + 1
    assert w[0] == pytest.approx([math.e**3 / total, math.e**2 / total], rel=1e-13)


def test_normalize_p_is_dbrx_torch_norm():
    """DbrxFFN.route_tokens_to_experts' own formula: softmax, top-k, divided
    by torch.norm(p)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((50, 8)) * 2
    for p in (1.0, 2.0, 0.5, 3.7):
        config, weights = identity_router(8, top_k=3, normalize_p=p)
        _, ids, w, _ = reference(config, weights, logits)
        probs = torch.softmax(torch.tensor(logits), dim=1)
        top, idx = torch.topk(probs, 3, dim=-1)
        top = top / torch.norm(top, p=p, dim=-1, keepdim=True)
        assert ids.tolist() == idx.tolist()
        np.testing.assert_allclose(w, top.numpy(), rtol=1e-13)


# ---------------------------------------------------------------------------
# sparsemixer (PhiMoE)

def test_sparsemixer_hand():
    config, weights = identity_router(4, top_k=2, scoring="sparsemixer",
                                      normalize_top_k=False)
    x = np.array([
        # slot 0 (2.0): 1.97 and 1.99 are within 2 eps = 0.02 relative, 1.0 is
        # not; slot 1 (1.99): 1.97 is within, 2.0 is taken.
        [2.0, 1.97, 1.0, 1.99],
        # negative logits: the factor is |s_e|.
        [-1.0, -1.01, -3.0, -1.05],
        # 0 / 0 is not above the threshold: the tied zero is in the softmax.
        [0.0, 0.0, -1.0, -2.0],
    ])
    _, ids, w, choice = reference(config, weights, x)
    assert ids.tolist() == [[0, 3], [0, 1], [0, 1]]
    np.testing.assert_array_equal(choice, x)  # chosen by the logits
    assert w[0] == pytest.approx([1 / (1 + math.exp(-0.03) + math.exp(-0.01)),
                                  1 / (1 + math.exp(-0.02))], rel=1e-13)
    assert w[1] == pytest.approx([1 / (1 + math.exp(-0.01)), 1.0], rel=1e-13)
    assert w[2] == pytest.approx([0.5, 1.0], rel=1e-13)
    # Any k: slot 2 of the second token (-1.05) has nothing left near it.
    config3, _ = identity_router(4, top_k=3, scoring="sparsemixer", normalize_top_k=False)
    _, ids, w, _ = reference(config3, weights, x[1:2])
    assert ids.tolist() == [[0, 1, 3]] and w[0][2] == 1.0
    # eps: with 0.03, 1.05 comes within reach of slot 0 (0.05 / 1.05 < 0.06).
    config, _ = identity_router(4, top_k=2, scoring="sparsemixer", sparsemixer_eps=0.03,
                                normalize_top_k=False)
    _, _, w, _ = reference(config, weights, x[1:2])
    assert w[0][0] == pytest.approx(1 / (1 + math.exp(-0.01) + math.exp(-0.05)), rel=1e-13)
    # Normalization and scaling apply as usual.
    config, _ = identity_router(4, top_k=2, scoring="sparsemixer", routed_scaling_factor=3.0)
    _, _, w, _ = reference(config, weights, x[:1])
    a, b = 1 / (1 + math.exp(-0.03) + math.exp(-0.01)), 1 / (1 + math.exp(-0.02))
    assert w[0] == pytest.approx([3 * a / (a + b), 3 * b / (a + b)], rel=1e-13)


def test_sparsemixer_forced_ids():
    config, weights = identity_router(4, top_k=2, scoring="sparsemixer",
                                      normalize_top_k=False)
    x = np.array([[2.0, 1.97, 1.0, 1.99]])
    # Slot 0 forced to expert 3 (1.99): 2.0 is above it, 1.97 within.
    _, _, w, _ = reference(config, weights, x, forced_ids=np.array([[3, -1]]))
    assert w[0] == pytest.approx([1 / (math.exp(0.01) + 1 + math.exp(-0.02)), 0.0])


def test_sparsemixer_is_phimoe_sparsemixer():
    """transformers' own sparsemixer (inference mode) on the same logits."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import torch
    from transformers.models.phimoe.modeling_phimoe import sparsemixer
    rng = np.random.default_rng(1)
    # Logits close together, so that several experts share a slot's softmax.
    logits = 1.0 + 0.1 * rng.standard_normal((300, 8))
    logits[::3] *= -1  # and negative ones
    for eps in (0.01, 0.05, 0.2):
        config, weights = identity_router(8, top_k=2, scoring="sparsemixer",
                                          sparsemixer_eps=eps, normalize_top_k=False)
        _, ids, w, _ = reference(config, weights, logits)
        mult, chosen = sparsemixer(torch.tensor(logits), jitter_eps=eps, training=False)
        assert ids.tolist() == chosen.tolist()
        np.testing.assert_allclose(w, mult.numpy(), rtol=1e-13)
        assert (w < 0.99).mean() > 0.1  # the threshold let others in


def test_sparsemixer_ties():
    # Slot 0: 2.0 and 1.96 sit exactly at (2 - 1.96) / 2 = 0.02 = 2 eps.
    logits = np.array([[2.0, 1.96, 0.0, 0.5], [2.0, 1.5, 0.0, 0.5]])
    assert sparsemixer_ties(logits, 2, 0.01).tolist() == [True, False]
    config = {"name": "m", "hidden_size": 4, "intermediate_size": 1, "num_experts": 4,
              "top_k": 2, "scoring": "sparsemixer"}
    assert near_ties(config, logits)[0].tolist() == [True, False]


# ---------------------------------------------------------------------------
# clamped_swiglu (GPT-OSS), expert_bias, output_bias, router_weight_on_input

def one_expert(x, gate, up, down, **extra):
    """y of a layer of one expert, H = F = 1, weight 1."""
    config = {"name": "m", "hidden_size": 1, "intermediate_size": 1, "num_experts": 1,
              "top_k": 1}
    config.update(extra)
    weights = {"router": np.zeros((1, 1)), "gate_proj": np.full((1, 1, 1), gate),
               "up_proj": np.full((1, 1, 1), up), "down_proj": np.full((1, 1, 1), down)}
    return config, weights, np.array([[x]])


def test_clamped_swiglu_hand():
    def y(x, gate, up, **extra):
        config, weights, xs = one_expert(x, gate, up, 2.0, activation="clamped_swiglu",
                                         **extra)
        return reference(config, weights, xs)[0][0, 0]

    a = 1.702
    # Inside the limits: g · σ(α g) · (u + 1).
    assert y(1.0, 0.5, 0.3) == pytest.approx(2 * 0.5 * sig(a * 0.5) * 1.3, rel=1e-14)
    # Above: the gate is clamped above only, the up projection both ways.
    assert y(1.0, 10.0, -10.0) == pytest.approx(2 * 7 * sig(a * 7) * (1 - 7), rel=1e-14)
    assert y(1.0, -20.0, 9.0) == pytest.approx(2 * -20 * sig(a * -20) * (1 + 7), rel=1e-14)
    # alpha and limit.
    assert y(1.0, 3.0, 2.0, swiglu_alpha=1.0, swiglu_limit=1.5) == \
        pytest.approx(2 * 1.5 * sig(1.5) * 2.5, rel=1e-14)
    assert clamped_swiglu(np.array([8.0]), np.array([-8.0]), 2.0, 4.0)[0] == \
        pytest.approx(4 * sig(8) * -3, rel=1e-14)


def test_clamped_swiglu_is_gpt_oss_apply_gate():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts
    config = transformers.GptOssConfig(hidden_size=4, intermediate_size=6, num_local_experts=2,
                                       swiglu_alpha=1.3, swiglu_limit=1.1)
    experts = GptOssExperts(config)
    rng = np.random.default_rng(2)
    g, u = rng.standard_normal((2, 40, 6)) * 2
    gate_up = np.empty((40, 12))
    gate_up[:, ::2], gate_up[:, 1::2] = g, u  # interleaved, as GPT-OSS keeps them
    want = experts._apply_gate(torch.tensor(gate_up)).numpy()
    np.testing.assert_allclose(clamped_swiglu(g, u, 1.3, 1.1), want, rtol=1e-14)


def test_clamped_swiglu_up_offset_is_glm5_next_apply_gate():
    """swiglu_alpha 1 and swiglu_up_offset 0: silu(min(g, L)) · clamp(u, ±L),
    GLM-5-Next's and HY-V4's routed experts."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.glm5_next.modeling_glm5_next import Glm5NextTextExperts

    class Config:
        num_local_experts, hidden_size, moe_intermediate_size, swiglu_limit = 2, 4, 6, 1.1

    experts = Glm5NextTextExperts(Config())
    rng = np.random.default_rng(3)
    g, u = rng.standard_normal((2, 40, 6)) * 2
    want = experts._apply_gate(torch.tensor(np.concatenate([g, u], axis=1))).numpy()
    np.testing.assert_allclose(clamped_swiglu(g, u, 1.0, 1.1, up_offset=0.0), want,
                               rtol=1e-14)


def test_expert_bias_and_output_bias_hand():
    # Two experts, H = 2, F = 1; expert 0 chosen with weight e / (e + 1).
    config = {"name": "m", "hidden_size": 2, "intermediate_size": 1, "num_experts": 2,
              "top_k": 1, "normalize_top_k": False, "expert_bias": True,
              "output_bias": True}
    weights = {"router": np.eye(2), "gate_proj": np.array([[[1.0, 0.0]], [[0.0, 0.0]]]),
               "up_proj": np.array([[[1.0, 0.0]], [[0.0, 0.0]]]),
               "down_proj": np.array([[[2.0], [1.0]], [[0.0], [0.0]]]),
               "gate_proj_bias": np.array([[0.5], [0.0]]),
               "up_proj_bias": np.array([[-0.25], [0.0]]),
               "down_proj_bias": np.array([[3.0, -1.0], [0.0, 0.0]]),
               "output_bias": np.array([0.125, -0.5])}
    y, ids, w, _ = reference(config, weights, np.array([[1.0, 0.0]]))
    wt = math.e / (math.e + 1)
    h = silu(1.5) * 0.75
    assert ids.tolist() == [[0]] and w[0, 0] == pytest.approx(wt, rel=1e-14)
    # The down bias is inside FFN_e, weighted with it; the output bias is not.
    assert y[0] == pytest.approx([wt * (2 * h + 3) + 0.125, wt * (h - 1) - 0.5], rel=1e-14)
    # Not gated: no gate bias.
    ungated = dict(config, gated=False)
    wu = {k: v for k, v in weights.items() if k not in ("gate_proj", "gate_proj_bias")}
    y, _, _, _ = reference(ungated, wu, np.array([[1.0, 0.0]]))
    assert y[0] == pytest.approx([wt * (2 * silu(0.75) + 3) + 0.125,
                                  wt * (silu(0.75) - 1) - 0.5], rel=1e-14)


def test_router_weight_on_input_hand():
    # Llama 4's routing: sigmoid, not normalized; expert 0 wins with σ(1).
    config = {"name": "m", "hidden_size": 2, "intermediate_size": 1, "num_experts": 2,
              "top_k": 1, "scoring": "sigmoid", "normalize_top_k": False,
              "router_weight_on_input": True, "shared_intermediate_size": 1}
    weights = {"router": np.eye(2), "gate_proj": np.array([[[1.0, 2.0]], [[0.0, 0.0]]]),
               "up_proj": np.array([[[0.5, -1.0]], [[0.0, 0.0]]]),
               "down_proj": np.array([[[2.0], [1.0]], [[0.0], [0.0]]]),
               "shared_gate_proj": np.array([[1.0, 1.0]]),
               "shared_up_proj": np.array([[1.0, 0.0]]),
               "shared_down_proj": np.array([[1.0], [-1.0]])}
    x = np.array([[1.0, 0.25]])
    y, ids, w, _ = reference(config, weights, x)
    s = sig(1.0)
    v = s * x[0]
    h = silu(v[0] + 2 * v[1]) * (0.5 * v[0] - v[1])  # the expert on s · x, unscaled
    hs = silu(1.25) * 1.0  # the shared expert on x itself
    assert ids.tolist() == [[0]] and w[0, 0] == pytest.approx(s)
    assert y[0] == pytest.approx([2 * h + hs, h - hs], rel=1e-14)
    # Not the same as weighting the output.
    y_out, _, _, _ = reference(dict(config, router_weight_on_input=False), weights, x)
    assert abs(y_out[0, 0] - y[0, 0]) > 1e-3


# ---------------------------------------------------------------------------
# A naive per-token evaluation written from the rules' formulas, for
# configs mixing the rules, flat and hierarchical.

def _naive_route(level, logits):
    """One token's (ids, weights) at one level: token choice, no selection
    bias, no groups."""
    E, k = len(logits), level["top_k"]
    scoring = level.get("scoring", "softmax")
    if scoring == "softmax":
        mx = max(logits)
        z = sum(math.exp(v - mx) for v in logits)
        scores = [math.exp(v - mx) / z for v in logits]
    elif scoring == "sigmoid":
        scores = [sig(v) for v in logits]
    else:
        scores = list(logits)
    ids = sorted(range(E), key=lambda e: (-scores[e], e))[:k]
    if scoring == "sparsemixer":
        eps = level.get("sparsemixer_eps", 0.01)
        w = []
        for j, e in enumerate(ids):
            m = logits[e]
            total = 0.0
            for o in range(E):
                if o in ids[:j]:
                    continue
                num, den = m - logits[o], max(abs(logits[o]), m)
                ratio = num / den if den != 0 else (math.nan if num == 0 else
                                                    math.copysign(math.inf, num))
                if not ratio > 2 * eps:
                    total += math.exp(logits[o] - m)
            w.append(1.0 / total)
    else:
        w = [scores[e] for e in ids]
    if level.get("normalize_top_k", True):
        p = level.get("normalize_p", 1.0)
        norm = sum(v**p for v in w) ** (1.0 / p)
        w = [v / norm for v in w]
    return ids, [v * level.get("routed_scaling_factor", 1.0) for v in w]


def _naive_ffn(leaf, gate, up, down, v, bg=None, bu=None, bd=None):
    u = up @ v + (0 if bu is None else bu)
    if leaf.get("gated", True):
        g = gate @ v + (0 if bg is None else bg)
        if leaf.get("activation") == "clamped_swiglu":
            lim, alpha = leaf.get("swiglu_limit", 7.0), leaf.get("swiglu_alpha", 1.702)
            g = np.minimum(g, lim)
            u = np.clip(u, -lim, lim)
            h = np.array([gi * sig(alpha * gi) for gi in g]) * (u + 1)
        else:
            assert leaf.get("activation", "silu") == "silu"
            h = np.array([silu(gi) for gi in g]) * u
    else:
        h = np.array([silu(ui) for ui in u])
    return down @ h + (0 if bd is None else bd)


def naive_layer(config, weights, x):
    """y [T, H]: every token routed to its leaves (the product of the levels'
    weights, each level routing x itself), y = Σ w · FFN_leaf(x), or
    Σ FFN_leaf(w · x) with router_weight_on_input, + shared(x) + output
    bias."""
    lv = [config]
    while "expert" in lv[-1]:
        lv.append(lv[-1]["expert"])
    leaf = lv[-1]
    Es = [level["num_experts"] for level in lv]
    H = config["hidden_size"]
    flat = {k: np.asarray(weights[k], np.float64).reshape(-1, *np.shape(weights[k])[len(Es):])
            for k in ("gate_proj", "up_proj", "down_proj", "gate_proj_bias", "up_proj_bias",
                      "down_proj_bias") if k in weights}
    y = np.zeros((len(x), H))
    for t, xt in enumerate(np.asarray(x, np.float64)):
        routes = [((), 1.0)]  # (expert index path, weight)
        for l, level in enumerate(lv):
            router = weights["router"] if l == 0 else weights[f"level{l + 1}_router"]
            bias_key = "router_bias" if l == 0 else f"level{l + 1}_router_bias"
            deeper = []
            for path, wt in routes:
                r = np.asarray(router, np.float64)[path] if path else np.asarray(router)
                logits = list(r @ xt + (weights[bias_key][path] if level.get("router_bias")
                                        else 0))
                ids, ws = _naive_route(level, logits)
                deeper += [(path + (e,), wt * we) for e, we in zip(ids, ws)]
            routes = deeper
        for path, wt in routes:
            i = int(np.ravel_multi_index(path, Es))
            b = [flat[k][i] if k in flat else None
                 for k in ("gate_proj_bias", "up_proj_bias", "down_proj_bias")]
            gate = flat["gate_proj"][i] if "gate_proj" in flat else None
            if config.get("router_weight_on_input"):
                y[t] += _naive_ffn(leaf, gate, flat["up_proj"][i], flat["down_proj"][i],
                                   wt * xt, *b)
            else:
                y[t] += wt * _naive_ffn(leaf, gate, flat["up_proj"][i], flat["down_proj"][i],
                                        xt, *b)
        if config.get("shared_intermediate_size", 0):
            y[t] += _naive_ffn(leaf, weights.get("shared_gate_proj"), weights["shared_up_proj"],
                               weights["shared_down_proj"], xt)
        if config.get("output_bias"):
            y[t] += weights["output_bias"]
    return y


MIXED = {
    "sparsemixer+normalize_p+biases": {
        "name": "m", "hidden_size": 12, "intermediate_size": 5, "num_experts": 6, "top_k": 3,
        "scoring": "sparsemixer", "sparsemixer_eps": 0.1, "normalize_p": 2.0,
        "routed_scaling_factor": 1.5, "expert_bias": True, "output_bias": True},
    "clamped_swiglu+rwoi+shared": {
        "name": "m", "hidden_size": 12, "intermediate_size": 5, "num_experts": 6, "top_k": 2,
        "scoring": "sigmoid", "normalize_top_k": False, "router_weight_on_input": True,
        "activation": "clamped_swiglu", "swiglu_limit": 0.8, "swiglu_alpha": 1.2,
        "shared_intermediate_size": 4, "expert_bias": True, "router_bias": True},
    "gpt_oss-like": {
        "name": "m", "hidden_size": 12, "intermediate_size": 5, "num_experts": 6, "top_k": 2,
        "router_bias": True, "activation": "clamped_swiglu", "swiglu_limit": 1.0,
        "expert_bias": True},
    "ungated+biases+rwoi": {
        "name": "m", "hidden_size": 12, "intermediate_size": 5, "num_experts": 6, "top_k": 2,
        "gated": False, "expert_bias": True, "output_bias": True,
        "router_weight_on_input": True, "normalize_p": 0.7},
    "hierarchical": {
        "name": "m", "hidden_size": 12, "num_experts": 3, "top_k": 2, "normalize_p": 3.0,
        "expert_bias": True, "output_bias": True, "shared_intermediate_size": 4,
        "expert": {"num_experts": 4, "top_k": 2, "scoring": "sparsemixer",
                   "sparsemixer_eps": 0.2, "router_bias": True, "intermediate_size": 5,
                   "activation": "clamped_swiglu", "swiglu_limit": 0.9}},
    "hierarchical+rwoi": {
        "name": "m", "hidden_size": 12, "num_experts": 3, "top_k": 2, "scoring": "sigmoid",
        "normalize_top_k": False, "router_weight_on_input": True, "expert_bias": True,
        "expert": {"num_experts": 2, "top_k": 2, "normalize_p": 2.0,
                   "expert": {"num_experts": 3, "top_k": 1, "scoring": "sparsemixer",
                              "intermediate_size": 5}}},
}


@pytest.mark.parametrize("name", sorted(MIXED))
def test_rules_against_naive_evaluation(name):
    config = MIXED[name]
    weights = random_weights(config, seed=11)
    assert {k: v.shape for k, v in weights.items()} == weight_shapes(config)
    x = random_input(40, config["hidden_size"], seed=12)
    y, ids, w, _ = reference(config, weights, x)
    np.testing.assert_allclose(y, naive_layer(config, weights, x), rtol=1e-11, atol=1e-11)
    assert np.std(y) > 0.05


def test_biases_change_the_output():
    """Every bias the rules add matters: zeroing one changes y."""
    config = MIXED["sparsemixer+normalize_p+biases"]
    weights = random_weights(config, seed=11)
    x = random_input(10, config["hidden_size"], seed=12)
    y = reference(config, weights, x)[0]
    for key in ("gate_proj_bias", "up_proj_bias", "down_proj_bias", "output_bias"):
        other = dict(weights, **{key: np.zeros_like(weights[key])})
        assert np.abs(reference(config, other, x)[0] - y).max() > 1e-2, key


def test_defaults_keys_and_random_weights():
    base = {"name": "m", "hidden_size": 8, "intermediate_size": 4, "num_experts": 4,
            "top_k": 2}
    c = with_defaults(base)
    assert (c["normalize_p"], c["router_weight_on_input"], c["expert_bias"],
            c["output_bias"]) == (1.0, False, False, False)
    assert "sparsemixer_eps" not in c and "swiglu_alpha" not in c
    c = with_defaults(dict(base, scoring="sparsemixer", activation="clamped_swiglu"))
    assert (c["sparsemixer_eps"], c["swiglu_alpha"], c["swiglu_limit"]) == (0.01, 1.702, 7.0)
    # The four bias fields, then the quantized projections' scales, zero
    # points and column orders (docs/QUANTIZATION.md) close every struct.
    assert weight_keys(base)[10:14] == ("gate_proj_bias", "up_proj_bias", "down_proj_bias",
                                        "output_bias")
    assert weight_keys(base)[14:] == tuple(
        p + suffix for suffix in ("_scales", "_zeros", "_perm")
        for p in ("gate_proj", "up_proj", "down_proj", "shared_gate_proj", "shared_up_proj",
                  "shared_down_proj"))
    # The bias fields are drawn after the others, which keep their values.
    plain = random_weights(base, seed=3)
    biased = random_weights(dict(base, expert_bias=True, output_bias=True), seed=3)
    assert set(biased) - set(plain) == {"gate_proj_bias", "up_proj_bias", "down_proj_bias",
                                        "output_bias"}
    for key, value in plain.items():
        np.testing.assert_array_equal(biased[key], value)
    # A shard holds its own experts' biases.
    shard = dict(base, expert_bias=True, expert_shard={"first": 1, "count": 2})
    assert weight_shapes(shard)["down_proj_bias"] == (2, 8)


# ---------------------------------------------------------------------------
# transformers' own blocks in float64 (no compiler): the reference on the
# same weights, laid out by hand here.

def _randomized(module, seed):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.named_parameters():
            r = torch.randn(t.shape, generator=g, dtype=torch.float64)
            t.copy_(r / t.shape[-1] ** 0.5 if t.dim() >= 2 else r * 0.5)
    return module.double().eval()


def _np(t):
    return t.detach().numpy().astype(np.float64)


def _run(block, x):
    import torch
    with torch.no_grad():
        out = block(torch.tensor(x[None]))
    return (out[0] if isinstance(out, tuple) else out).reshape(len(x), -1).numpy()


H, F, E = 16, 6, 8


def _assert_reference_is(block, config, weights, seed, tolerance):
    """The reference on `weights` gives HF's `block` on 30 random tokens,
    within `tolerance` (relative and absolute)."""
    x = random_input(30, H, seed=seed).astype(np.float64)
    np.testing.assert_allclose(reference(config, weights, x)[0], _run(block, x),
                               rtol=tolerance, atol=tolerance)


def test_reference_is_gpt_oss_mlp():
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssMLP
    cfg = transformers.GptOssConfig(hidden_size=H, intermediate_size=F, num_local_experts=E,
                                    num_experts_per_tok=3, swiglu_limit=0.9, swiglu_alpha=1.4)
    block = _randomized(GptOssMLP(cfg), 1)
    ex = block.experts
    gu, gub = _np(ex.gate_up_proj), _np(ex.gate_up_proj_bias)
    weights = {"router": _np(block.router.weight), "router_bias": _np(block.router.bias),
               "gate_proj": gu[:, :, 0::2].transpose(0, 2, 1),
               "up_proj": gu[:, :, 1::2].transpose(0, 2, 1),
               "down_proj": _np(ex.down_proj).transpose(0, 2, 1),
               "gate_proj_bias": gub[:, 0::2], "up_proj_bias": gub[:, 1::2],
               "down_proj_bias": _np(ex.down_proj_bias)}
    config = {"name": "m", "hidden_size": H, "intermediate_size": F, "num_experts": E,
              "top_k": 3, "router_bias": True, "activation": "clamped_swiglu",
              "swiglu_alpha": 1.4, "swiglu_limit": 0.9, "expert_bias": True}
    _assert_reference_is(block, config, weights, seed=4, tolerance=1e-10)


def test_reference_is_llama4_text_moe():
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama4.modeling_llama4 import Llama4TextMoe
    cfg = transformers.Llama4TextConfig(hidden_size=H, intermediate_size=F,
                                        num_local_experts=E, num_experts_per_tok=2,
                                        num_attention_heads=2, num_key_value_heads=1,
                                        head_dim=8)
    block = _randomized(Llama4TextMoe(cfg), 2)
    gu = _np(block.experts.gate_up_proj)  # [E, H, 2F], gate first
    weights = {"router": _np(block.router.weight),
               "gate_proj": gu[:, :, :F].transpose(0, 2, 1),
               "up_proj": gu[:, :, F:].transpose(0, 2, 1),
               "down_proj": _np(block.experts.down_proj).transpose(0, 2, 1),
               "shared_gate_proj": _np(block.shared_expert.gate_proj.weight),
               "shared_up_proj": _np(block.shared_expert.up_proj.weight),
               "shared_down_proj": _np(block.shared_expert.down_proj.weight)}
    config = {"name": "m", "hidden_size": H, "intermediate_size": F, "num_experts": E,
              "top_k": 2, "scoring": "sigmoid", "normalize_top_k": False,
              "router_weight_on_input": True, "shared_intermediate_size": F}
    # Llama4Router takes the sigmoid in float32.
    _assert_reference_is(block, config, weights, seed=5, tolerance=1e-6)


def test_reference_is_jetmoe_moe():
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.jetmoe.modeling_jetmoe import JetMoeMoE
    cfg = transformers.JetMoeConfig(hidden_size=H, intermediate_size=F, num_local_experts=E,
                                    num_experts_per_tok=2)
    block = _randomized(JetMoeMoE(cfg), 3)
    il = _np(block.input_linear.weight)  # [E, 2F, H]: the activated half first
    weights = {"router": _np(block.router.layer.weight), "gate_proj": il[:, :F],
               "up_proj": il[:, F:], "down_proj": _np(block.output_linear.weight),
               "output_bias": _np(block.bias)}
    config = {"name": "m", "hidden_size": H, "intermediate_size": F, "num_experts": E,
              "top_k": 2, "output_bias": True}
    # JetMoeTopKGating computes its softmax in float32.
    _assert_reference_is(block, config, weights, seed=6, tolerance=1e-6)


def test_reference_is_phimoe_block():
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.phimoe.modeling_phimoe import PhimoeSparseMoeBlock
    cfg = transformers.PhimoeConfig(hidden_size=H, intermediate_size=F, num_local_experts=E,
                                    num_experts_per_tok=2, router_jitter_noise=0.15)
    block = _randomized(PhimoeSparseMoeBlock(cfg), 4)
    gu = _np(block.experts.gate_up_proj)  # [E, 2F, H], gate first
    weights = {"router": _np(block.router.weight) * 0.3, "gate_proj": gu[:, :F],
               "up_proj": gu[:, F:], "down_proj": _np(block.experts.down_proj)}
    import torch
    with torch.no_grad():
        block.router.weight.mul_(0.3)  # logits close enough to share slots
    config = {"name": "m", "hidden_size": H, "intermediate_size": F, "num_experts": E,
              "top_k": 2, "scoring": "sparsemixer", "sparsemixer_eps": 0.15,
              "normalize_top_k": False}
    x = random_input(60, H, seed=7).astype(np.float64)
    y, _, w, _ = reference(config, weights, x)
    assert (w < 0.99).any()
    np.testing.assert_allclose(y, _run(block, x), rtol=1e-10, atol=1e-12)


def test_reference_is_dbrx_ffn():
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.dbrx.modeling_dbrx import DbrxFFN
    cfg = transformers.DbrxConfig(d_model=H, n_heads=2, ffn_config=dict(
        ffn_hidden_size=F, moe_num_experts=E, moe_top_k=3, moe_normalize_expert_weights=2.0))
    block = _randomized(DbrxFFN(cfg), 5)
    mlp = block.experts.mlp
    weights = {"router": _np(block.router.layer.weight),
               "gate_proj": _np(mlp.w1).reshape(E, F, H), "up_proj": _np(mlp.v1).reshape(E, F, H),
               "down_proj": _np(mlp.w2).reshape(E, F, H).transpose(0, 2, 1)}
    config = {"name": "m", "hidden_size": H, "intermediate_size": F, "num_experts": E,
              "top_k": 3, "normalize_p": 2.0}
    _assert_reference_is(block, config, weights, seed=8, tolerance=1e-10)

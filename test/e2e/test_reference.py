"""Hand-checkable cases for the f64 reference: it must be right before it can
judge the compiler. Runs without moe-compile."""

import math

import numpy as np
import pytest

from moe_mlir.reference import (
    QUANT_KEYS,
    near_ties,
    random_input,
    random_weights,
    reference,
    route_width,
    weight_keys,
    weight_shapes,
    with_defaults,
)

E3 = math.e**3
E2 = math.e**2


def identity_router(E, **extra):
    """Config and weights whose router makes logits equal x (H = E)."""
    config = {"name": "m", "hidden_size": E, "intermediate_size": 1, "num_experts": E}
    config.update(extra)
    weights = {
        "router": np.eye(E),
        "gate_proj": np.zeros((E, 1, E)),
        "up_proj": np.zeros((E, 1, E)),
        "down_proj": np.zeros((E, E, 1)),
    }
    return config, weights


def scalar_expert(activation, gated, x, gate=1.0, up=1.0, down=1.0, **extra):
    """y of one expert with H = F = 1, so the FFN is act on a scalar."""
    config = {"name": "m", "hidden_size": 1, "intermediate_size": 1, "num_experts": 1,
              "top_k": 1, "activation": activation, "gated": gated}
    config.update(extra)
    weights = {"router": np.zeros((1, 1)), "up_proj": np.full((1, 1, 1), up),
               "down_proj": np.full((1, 1, 1), down)}
    if gated:
        weights["gate_proj"] = np.full((1, 1, 1), gate)
    y, _, _, _ = reference(config, weights, np.array([[x]]))
    return y[0, 0]


# ---------------------------------------------------------------------------
# Routing.

def test_softmax_top2_normalized():
    config, weights = identity_router(4, top_k=2)
    _, ids, w, choice = reference(config, weights, np.array([[1.0, 3.0, 2.0, 0.0]]))
    assert ids.tolist() == [[1, 2]]
    # e^3 / (e^3 + e^2) and e^2 / (e^3 + e^2).
    assert w[0] == pytest.approx([0.7310585786300049, 0.2689414213699951], rel=1e-12)
    total = 1 + math.e + E2 + E3
    assert choice[0] == pytest.approx([math.e / total, E3 / total, E2 / total, 1 / total])


def test_softmax_top2_unnormalized_scaled():
    config, weights = identity_router(4, top_k=2, normalize_top_k=False,
                                      routed_scaling_factor=2.0)
    _, ids, w, _ = reference(config, weights, np.array([[1.0, 3.0, 2.0, 0.0]]))
    total = 1 + math.e + E2 + E3
    assert ids.tolist() == [[1, 2]]
    assert w[0] == pytest.approx([2 * E3 / total, 2 * E2 / total], rel=1e-12)


def test_ids_descending_and_ties_to_lower_index():
    config, weights = identity_router(4, top_k=2)
    x = np.array([[0.0, 1.0, 2.0, 3.0],   # strictly increasing: highest first
                  [1.0, 2.0, 2.0, 2.0],   # three-way tie: the two lowest win
                  [5.0, 5.0, 5.0, 5.0],   # all tied
                  [2.0, 0.0, 2.0, 0.0]])  # tie between 0 and 2, in that order
    _, ids, w, _ = reference(config, weights, x)
    assert ids.tolist() == [[3, 2], [1, 2], [0, 1], [0, 2]]
    assert w[2] == pytest.approx([0.5, 0.5])


def test_sigmoid_scaled_weights():
    config, weights = identity_router(3, top_k=2, scoring="sigmoid",
                                      normalize_top_k=False, routed_scaling_factor=2.5)
    _, ids, w, _ = reference(config, weights, np.array([[0.0, 2.0, -1.0]]))
    assert ids.tolist() == [[1, 0]]
    assert w[0] == pytest.approx([2.5 / (1 + math.exp(-2)), 2.5 * 0.5], rel=1e-12)


def test_sigmoid_normalized():
    config, weights = identity_router(3, top_k=2, scoring="sigmoid")
    _, _, w, _ = reference(config, weights, np.array([[0.0, 2.0, -1.0]]))
    s2 = 1 / (1 + math.exp(-2))
    assert w[0] == pytest.approx([s2 / (s2 + 0.5), 0.5 / (s2 + 0.5)], rel=1e-12)


def test_router_bias_shifts_logits():
    config, weights = identity_router(4, top_k=1, router_bias=True)
    weights["router_bias"] = np.array([0.0, 0.0, 2.0, 0.0])
    _, ids, _, choice = reference(config, weights, np.array([[1.0, 0.0, 0.0, 0.0]]))
    assert ids.tolist() == [[2]]
    # The bias enters the softmax: logits are [1, 0, 2, 0].
    total = math.e + 1 + E2 + 1
    assert choice[0, 2] == pytest.approx(E2 / total)


def test_selection_bias_chooses_but_does_not_weight():
    config, weights = identity_router(4, top_k=1, scoring="sigmoid", selection_bias=True,
                                      normalize_top_k=False)
    weights["selection_bias"] = np.array([0.0, 0.0, 1.0, 0.0])
    _, ids, w, choice = reference(config, weights, np.array([[2.0, 1.0, 0.0, 0.0]]))
    # choice[2] = sigmoid(0) + 1 = 1.5 beats sigmoid(2) = 0.88 ...
    assert ids.tolist() == [[2]]
    assert choice[0, 2] == pytest.approx(1.5)
    # ... but the weight is the score alone.
    assert w[0, 0] == pytest.approx(0.5)


def test_selection_bias_not_in_normalization():
    config, weights = identity_router(4, top_k=2, scoring="sigmoid", selection_bias=True)
    weights["selection_bias"] = np.array([0.0, 0.0, 1.0, 0.0])
    _, ids, w, _ = reference(config, weights, np.array([[2.0, 1.0, 0.0, 0.0]]))
    s2 = 1 / (1 + math.exp(-2))
    assert ids.tolist() == [[2, 0]]
    assert w[0] == pytest.approx([0.5 / (0.5 + s2), s2 / (0.5 + s2)])


# Four groups of two: group 0 holds the single best expert but a poor partner.
GROUP_LOGITS = np.array([[3.0, -3.0, 1.0, 1.0, 0.9, 0.9, -1.0, -1.0]])


def test_grouped_top2_sum_excludes_best_expert():
    config, weights = identity_router(8, top_k=2, scoring="sigmoid", n_group=4,
                                      topk_group=2, group_score="top2_sum")
    _, ids, _, _ = reference(config, weights, GROUP_LOGITS)
    # Group sums: sigmoid(3) + sigmoid(-3) = 1 < 2 sigmoid(0.9) < 2 sigmoid(1):
    # groups 1 and 2 are allowed; within them 2 and 3 tie, 2 first.
    assert ids.tolist() == [[2, 3]]


def test_grouped_max_keeps_best_expert():
    config, weights = identity_router(8, top_k=2, scoring="sigmoid", n_group=4,
                                      topk_group=2, group_score="max")
    _, ids, _, _ = reference(config, weights, GROUP_LOGITS)
    # Group maxima rank groups 0 and 1 first.
    assert ids.tolist() == [[0, 2]]


def test_grouped_one_group_limits_choice():
    config, weights = identity_router(8, top_k=2, scoring="sigmoid", n_group=4,
                                      topk_group=1, group_score="top2_sum")
    _, ids, w, _ = reference(config, weights, GROUP_LOGITS)
    assert ids.tolist() == [[2, 3]]
    assert w[0] == pytest.approx([0.5, 0.5])


def test_grouped_uses_selection_bias():
    config, weights = identity_router(8, top_k=2, scoring="sigmoid", n_group=4,
                                      topk_group=1, group_score="max", selection_bias=True)
    weights["selection_bias"] = np.array([0, 0, 0, 0, 0, 0, 0, 0.99])
    _, ids, _, _ = reference(config, weights, GROUP_LOGITS)
    # Expert 7's choice (sigmoid(-1) + 0.99 = 1.26) makes group 3 the best.
    assert ids.tolist() == [[7, 6]]


def test_dense_top_k_equals_softmax():
    config, weights = identity_router(4, top_k=4)
    x = np.array([[0.3, -1.0, 2.0, 0.5]])
    _, ids, w, choice = reference(config, weights, x)
    assert ids.tolist() == [[2, 3, 0, 1]]
    assert w[0] == pytest.approx(choice[0, [2, 3, 0, 1]], rel=1e-12)
    assert w.sum() == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# Capacity.

def test_capacity_drops_later_tokens():
    config, weights = identity_router(2, top_k=1, capacity_factor=1.0)
    # C = ceil(1 * 4 * 1 / 2) = 2; all four tokens want expert 0.
    x = np.array([[1.0, 0.0]] * 4)
    weights["up_proj"] = np.ones((2, 1, 2))
    weights["down_proj"] = np.ones((2, 2, 1))
    weights["gate_proj"] = np.ones((2, 1, 2))
    y, ids, w, _ = reference(config, weights, x)
    assert ids.tolist() == [[0], [0], [-1], [-1]]
    assert w[:, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert np.all(y[2:] == 0) and np.all(y[:2] != 0)


def test_capacity_grants_slot_major():
    config, weights = identity_router(3, top_k=2, capacity_factor=0.5)
    # C = ceil(0.5 * 2 * 2 / 3) = 1. Slot 0 first: token 0 gets expert 0, token 1
    # expert 1; then both second slots find their expert full. Granting token by
    # token would instead give token 0 both and token 1 nothing.
    x = np.array([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0]])
    _, ids, w, _ = reference(config, weights, x)
    assert ids.tolist() == [[0, -1], [1, -1]]
    # Weights were normalized over both chosen experts before the drop.
    assert w[0, 0] == pytest.approx(math.e / (math.e + 1))
    assert w[1, 0] == pytest.approx(math.e / (math.e + 1))
    assert w[:, 1].tolist() == [0.0, 0.0]


def test_capacity_rounds_up():
    config, weights = identity_router(4, top_k=1, capacity_factor=1.0)
    # C = ceil(1 * 5 / 4) = 2: two of the five tokens wanting expert 3 are kept.
    x = np.array([[0.0, 0.0, 0.0, 1.0]] * 5)
    _, ids, _, _ = reference(config, weights, x)
    assert ids[:, 0].tolist() == [3, 3, -1, -1, -1]


def test_capacity_zero_is_dropless():
    config, weights = identity_router(2, top_k=1)
    _, ids, _, _ = reference(config, weights, np.array([[1.0, 0.0]] * 50))
    assert (ids == 0).all()


# ---------------------------------------------------------------------------
# Expert choice.

def test_expert_choice_takes_top_tokens():
    config, weights = identity_router(2, top_k=1, routing="expert_choice",
                                      capacity_factor=1.0)
    # C = ceil(1 * 4 / 2) = 2 tokens per expert.
    x = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 0.0]])
    _, ids, w, choice = reference(config, weights, x)
    assert ids.tolist() == [[0, -1], [-1, 1], [0, -1], [-1, 1]]
    assert w[0, 0] == pytest.approx(1 / (1 + math.exp(-2)))
    assert w[3, 1] == pytest.approx(0.5)
    assert w[0, 1] == 0.0 and w[1, 0] == 0.0
    assert choice[2, 0] == pytest.approx(1 / (1 + math.exp(-1)))


def test_expert_choice_ties_to_lower_token():
    config, weights = identity_router(2, top_k=1, routing="expert_choice",
                                      capacity_factor=1.0)
    weights["up_proj"] = np.ones((2, 1, 2))
    weights["down_proj"] = np.ones((2, 2, 1))
    weights["gate_proj"] = np.ones((2, 1, 2))
    y, ids, w, _ = reference(config, weights, np.ones((4, 2)))
    assert ids.tolist() == [[0, 1], [0, 1], [-1, -1], [-1, -1]]
    assert w[:2].tolist() == [[0.5, 0.5], [0.5, 0.5]]
    assert np.all(y[2:] == 0) and np.all(y[:2] != 0)


def test_expert_choice_capacity_beyond_tokens():
    config, weights = identity_router(2, top_k=1, routing="expert_choice",
                                      capacity_factor=4.0)
    # C = ceil(4 * 1 / 2) = 2 > T = 1: the one token goes to every expert.
    _, ids, w, _ = reference(config, weights, np.array([[0.0, 1.0]]))
    assert ids.tolist() == [[0, 1]]
    assert w.sum() == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# Experts.

@pytest.mark.parametrize("activation,x,want", [
    ("silu", 1.0, 0.7310585786300049),        # 1 / (1 + e^-1)
    ("silu", -1.0, -0.2689414213699951),
    ("silu", 0.0, 0.0),
    ("gelu", 1.0, 0.8413447460685429),        # Phi(1)
    ("gelu", -1.0, -0.15865525393145707),     # -(1 - Phi(1))
    ("gelu", 2.0, 1.9544997361036416),        # 2 Phi(2)
    ("gelu_tanh", 1.0, 0.8411919906082768),
    ("gelu_tanh", -1.0, -0.15880800939172324),
    ("gelu_tanh", 2.0, 1.954597694087775),
    ("relu", -2.0, 0.0),
    ("relu", 1.5, 1.5),
])
def test_activation_plain(activation, x, want):
    assert scalar_expert(activation, False, x) == pytest.approx(want, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("activation,act1", [
    ("silu", 0.7310585786300049),
    ("gelu", 0.8413447460685429),
    ("gelu_tanh", 0.8411919906082768),
    ("relu", 1.0),
])
def test_activation_gated(activation, act1):
    # act(1 * 1) * (2 * 1), then * 3.
    got = scalar_expert(activation, True, 1.0, gate=1.0, up=2.0, down=3.0)
    assert got == pytest.approx(6 * act1, rel=1e-12)


def test_activation_only_on_gate_branch():
    # relu applies to the gate product only: relu(1) * (-2 * 1) stays negative.
    assert scalar_expert("relu", True, 1.0, up=-2.0) == pytest.approx(-2.0)


def test_output_sums_weighted_experts():
    config = {"name": "m", "hidden_size": 1, "intermediate_size": 1, "num_experts": 2,
              "top_k": 2, "activation": "relu", "gated": False}
    weights = {"router": np.array([[1.0], [0.0]]), "up_proj": np.ones((2, 1, 1)),
               "down_proj": np.array([[[2.0]], [[10.0]]])}
    x = np.array([[math.log(3.0)]])
    y, ids, w, _ = reference(config, weights, x)
    # softmax([ln 3, 0]) = [0.75, 0.25]; y = 0.75 * 2x + 0.25 * 10x = 4x.
    assert ids.tolist() == [[0, 1]]
    assert w[0] == pytest.approx([0.75, 0.25])
    assert y[0, 0] == pytest.approx(4 * math.log(3.0))


def test_expert_weights_layout():
    # H = 2, F = 1: up_proj[e] is [F][H] and down_proj[e] is [H][F].
    config = {"name": "m", "hidden_size": 2, "intermediate_size": 1, "num_experts": 1,
              "top_k": 1, "activation": "relu", "gated": False}
    weights = {"router": np.zeros((1, 2)), "up_proj": np.array([[[1.0, 10.0]]]),
               "down_proj": np.array([[[1.0], [-1.0]]])}
    y, _, _, _ = reference(config, weights, np.array([[1.0, 2.0]]))
    assert y.tolist() == [[21.0, -21.0]]


def shared_case(gate_value=None, gated=True):
    config = {"name": "m", "hidden_size": 1, "intermediate_size": 1, "num_experts": 1,
              "top_k": 1, "gated": gated, "shared_intermediate_size": 1,
              "shared_expert_gate": gate_value is not None}
    weights = {"router": np.zeros((1, 1)), "up_proj": np.ones((1, 1, 1)),
               "down_proj": np.zeros((1, 1, 1)),  # the routed expert adds nothing
               "shared_up_proj": np.array([[2.0]]), "shared_down_proj": np.array([[0.5]])}
    if gated:
        weights["gate_proj"] = np.ones((1, 1, 1))
        weights["shared_gate_proj"] = np.array([[1.0]])
    if gate_value is not None:
        weights["shared_expert_gate"] = np.array([gate_value])
    y, _, _, _ = reference(config, weights, np.array([[1.0]]))
    return y[0, 0]


def test_shared_expert_ungated():
    # silu(1) * 2 * 0.5.
    assert shared_case() == pytest.approx(0.7310585786300049)


def test_shared_expert_gate():
    assert shared_case(0.0) == pytest.approx(0.5 * 0.7310585786300049)
    assert shared_case(math.log(3.0)) == pytest.approx(0.75 * 0.7310585786300049)


def test_shared_expert_not_gated_ffn():
    # gated = false applies to the shared FFN too: silu(2 * 1) * 0.5.
    assert shared_case(gated=False) == pytest.approx(0.5 * 2 * 0.8807970779778823)


def test_shared_adds_to_routed():
    config = {"name": "m", "hidden_size": 1, "intermediate_size": 1, "num_experts": 1,
              "top_k": 1, "gated": False, "activation": "relu",
              "shared_intermediate_size": 1}
    weights = {"router": np.zeros((1, 1)), "up_proj": np.ones((1, 1, 1)),
               "down_proj": np.full((1, 1, 1), 3.0),
               "shared_up_proj": np.array([[1.0]]), "shared_down_proj": np.array([[5.0]])}
    y, _, _, _ = reference(config, weights, np.array([[2.0]]))
    assert y[0, 0] == pytest.approx(3 * 2 + 5 * 2)


# ---------------------------------------------------------------------------
# forced_ids, near ties, helpers.

def test_forced_ids_weights():
    config, weights = identity_router(4, top_k=2)
    x = np.array([[1.0, 3.0, 2.0, 0.0]])
    _, ids, w, _ = reference(config, weights, x, forced_ids=np.array([[0, 1]]))
    assert ids.tolist() == [[0, 1]]
    assert w[0] == pytest.approx([math.e / (math.e + E3), E3 / (math.e + E3)])
    _, ids, w, _ = reference(config, weights, x, forced_ids=np.array([[1, -1]]))
    assert ids.tolist() == [[1, -1]]
    assert w[0].tolist() == [1.0, 0.0]


def test_forced_ids_shape_checked():
    config, weights = identity_router(4, top_k=2)
    with pytest.raises(ValueError):
        reference(config, weights, np.zeros((1, 4)), forced_ids=np.array([[0]]))
    with pytest.raises(ValueError):
        reference(config, weights, np.zeros((1, 4)), forced_ids=np.array([[0, 4]]))


def test_near_ties():
    config, _ = identity_router(4, top_k=2)
    choice = np.array([[0.4, 0.3, 0.3 - 1e-6, 0.0],   # k-th vs (k+1)-th
                       [0.4, 0.3, 0.2, 0.1],          # clear
                       [0.3, 0.3 - 1e-6, 0.2, 0.1],   # order inside the top k
                       [0.4, 0.3, 0.29, 0.0]])        # 1e-2 apart: clear
    tied, group_tied = near_ties(config, choice)
    assert tied.tolist() == [True, False, True, False]
    assert not group_tied.any()


def test_near_ties_groups():
    config, _ = identity_router(4, top_k=1, n_group=2, topk_group=1, group_score="max")
    choice = np.array([[0.5, 0.1, 0.5 - 1e-7, 0.2], [0.5, 0.1, 0.4, 0.2]])
    tied, group_tied = near_ties(config, choice)
    assert group_tied.tolist() == [True, False]
    assert tied.tolist() == [True, False]


def test_near_ties_expert_choice():
    config, _ = identity_router(2, top_k=1, routing="expert_choice", capacity_factor=1.0)
    # C = 2 of 4 tokens; expert 0's 2nd and 3rd scores are 1e-7 apart.
    choice = np.array([[0.9, 0.1], [0.6, 0.4], [0.6 - 1e-7, 0.4 + 1e-7], [0.2, 0.8]])
    tied, _ = near_ties(config, choice)
    assert tied.tolist() == [False, True, True, False]


def test_defaults():
    c = with_defaults({"name": "m", "hidden_size": 2, "intermediate_size": 3,
                       "num_experts": 4, "top_k": 1})
    assert c["activation"] == "silu" and c["gated"] is True
    assert c["normalize_top_k"] is True and c["routed_scaling_factor"] == 1.0
    assert c["capacity_factor"] == 0 and c["routing"] == "token_choice"
    with pytest.raises(KeyError):
        with_defaults({"name": "m"})


def test_zero_tokens():
    config = {"name": "m", "hidden_size": 5, "intermediate_size": 3, "num_experts": 4,
              "top_k": 2, "activation": "gelu", "shared_intermediate_size": 2,
              "capacity_factor": 1.0}
    y, ids, w, _ = reference(config, random_weights(config, 0), np.zeros((0, 5)))
    assert y.shape == (0, 5) and ids.shape == (0, 2) and w.shape == (0, 2)


def test_random_weights_shapes_and_scale():
    config = {"name": "m", "hidden_size": 64, "intermediate_size": 128, "num_experts": 8,
              "top_k": 2, "shared_intermediate_size": 32, "shared_expert_gate": True,
              "router_bias": True}
    weights = random_weights(config, 1)
    shapes = weight_shapes(config)
    assert set(weights) == set(shapes)
    for key, arr in weights.items():
        assert arr.dtype == np.float32 and arr.shape == shapes[key]
    assert weight_shapes({**config, "gated": False}).keys().isdisjoint(
        {"gate_proj", "shared_gate_proj"})
    x = random_input(200, 64, 2)
    assert x.dtype == np.float32 and x.shape == (200, 64)
    y, _, _, _ = reference(config, weights, x)
    assert 0.05 < np.std(y) < 5
    # Same seed, same data.
    assert np.array_equal(random_weights(config, 1)["router"], weights["router"])
    assert np.array_equal(random_input(200, 64, 2), x)


# ---------------------------------------------------------------------------
# Hierarchical MoE: every routed expert is an MoE layer.

def sig(v):
    return 1 / (1 + math.exp(-v))


def two_level(**outer):
    """H = 2; level 1: 2 experts, identity router; level 2: 2 experts each,
    expert 0 routing by [x1, x0] and expert 1 by [x0, x1]; F = 1 leaves whose
    output row is (leaf id + 1) · act(x · up) in both columns."""
    config = {"name": "m", "hidden_size": 2, "num_experts": 2, "top_k": 1,
              "scoring": "sigmoid", "normalize_top_k": False,
              "expert": {"num_experts": 2, "top_k": 1, "scoring": "sigmoid",
                         "normalize_top_k": False, "intermediate_size": 1,
                         "gated": False, "activation": "relu"}}
    config.update(outer)
    up = np.ones((2, 2, 1, 2))
    down = np.arange(1.0, 5.0).reshape(2, 2, 1, 1) * np.ones((2, 2, 2, 1))
    weights = {"router": np.eye(2),
               "level2_router": np.array([[[0.0, 1.0], [1.0, 0.0]], np.eye(2)]),
               "up_proj": up, "down_proj": down}
    return config, weights


def test_hierarchical_leaf_ids_and_product_weights():
    config, weights = two_level()
    x = np.array([[2.0, 1.0],    # level 1 -> expert 0, whose router sees [1, 2] -> child 1
                  [1.0, 3.0]])   # level 1 -> expert 1, whose router sees [1, 3] -> child 1
    y, ids, w, choice = reference(config, weights, x)
    assert ids.tolist() == [[1], [3]]          # leaf = e1 · 2 + e2
    assert w[:, 0] == pytest.approx([sig(2) * sig(2), sig(3) * sig(3)], rel=1e-12)
    assert choice.shape == (2, 2)              # level 1's choice values
    # Leaf l's output is (l + 1) · relu(x0 + x1) in each column.
    assert y[0] == pytest.approx(w[0, 0] * 2 * 3.0)
    assert y[1] == pytest.approx(w[1, 0] * 4 * 4.0)


def test_hierarchical_slots_are_parent_major():
    config, weights = two_level(top_k=2, expert={**two_level()[0]["expert"], "top_k": 2})
    x = np.array([[2.0, 1.0]])
    _, ids, w, _ = reference(config, weights, x)
    # Level 1 order [0, 1]; expert 0 ranks its children [1, 0], expert 1 [0, 1].
    assert ids.tolist() == [[1, 0, 2, 3]]
    s1, s2 = sig(1), sig(2)
    assert w[0] == pytest.approx([s2 * s2, s2 * s1, s1 * s2, s1 * s1], rel=1e-12)


def test_hierarchical_dropped_parent_drops_children():
    config, weights = two_level(capacity_factor=0.5, top_k=1)
    # C = ceil(0.5 · 2 · 1 / 2) = 1: the second token wanting expert 0 is dropped.
    x = np.array([[2.0, 1.0], [3.0, 1.0]])
    y, ids, w, _ = reference(config, weights, x)
    assert ids.tolist() == [[1], [-1]]
    assert w[1, 0] == 0 and np.all(y[1] == 0) and np.all(y[0] != 0)


def test_hierarchical_single_child_is_flat():
    """An inner level of one expert (top 1, normalized) is the identity: the
    hierarchy is the flat layer over the same leaves."""
    flat = {"name": "m", "hidden_size": 6, "intermediate_size": 5, "num_experts": 4,
            "top_k": 2, "shared_intermediate_size": 3}
    nested = {k: v for k, v in flat.items() if k != "intermediate_size"}
    nested["expert"] = {"num_experts": 1, "top_k": 1, "intermediate_size": 5}
    weights = random_weights(nested, 3)
    flat_weights = {k: (v.reshape(v.shape[0], *v.shape[2:]) if k.endswith("proj")
                        and not k.startswith("shared") else v)
                    for k, v in weights.items() if not k.startswith("level")}
    x = random_input(7, 6, 4)
    y, ids, w, _ = reference(nested, weights, x)
    y_flat, ids_flat, w_flat, _ = reference(flat, flat_weights, x)
    np.testing.assert_allclose(y, y_flat, rtol=1e-12, atol=1e-12)
    assert np.array_equal(ids, ids_flat)
    np.testing.assert_allclose(w, w_flat, rtol=1e-12)


def test_hierarchical_defaults_shapes_and_keys():
    config = {"name": "m", "hidden_size": 8, "num_experts": 2, "top_k": 1,
              "shared_intermediate_size": 4,
              "expert": {"num_experts": 3, "top_k": 2, "router_bias": True,
                         "expert": {"num_experts": 4, "top_k": 2, "intermediate_size": 5,
                                    "gated": False, "selection_bias": True}}}
    c = with_defaults(config)
    assert "activation" not in c and "intermediate_size" not in c
    assert c["expert"]["scoring"] == "softmax" and "gated" not in c["expert"]
    assert c["expert"]["expert"]["activation"] == "silu"
    assert route_width(config) == 4 and route_width({**config, "top_k": 2}) == 8
    assert weight_keys(config)[10:20] == (
        "level2_router", "level2_router_bias", "level2_selection_bias",
        "level3_router", "level3_router_bias", "level3_selection_bias",
        "gate_proj_bias", "up_proj_bias", "down_proj_bias", "output_bias")
    assert weight_keys(config)[20:] == QUANT_KEYS
    assert weight_shapes(config) == {
        "router": (2, 8), "up_proj": (2, 3, 4, 5, 8), "down_proj": (2, 3, 4, 8, 5),
        "shared_up_proj": (4, 8), "shared_down_proj": (8, 4),
        "level2_router": (2, 3, 8), "level2_router_bias": (2, 3),
        "level3_router": (2, 3, 4, 8), "level3_selection_bias": (2, 3, 4)}
    weights = random_weights(config, 0)
    assert {k: v.shape for k, v in weights.items()} == weight_shapes(config)
    y, ids, w, _ = reference(config, weights, random_input(5, 8, 1))
    assert ids.shape == (5, 4) and ids.max() < 24 and 0.01 < np.std(y) < 10

"""Every supported family against transformers itself.

For each family: a tiny model from transformers' own config class, its MoE
layer's weights (and router / selection / expert / output biases) randomized,
saved with save_pretrained (safetensors) and loaded back; from_hf_config +
load_layer_weights + compile then must give what the loaded model's own MoE
block computes in float64, at T = 1, 7 and 64, in f32 and bf16 (bf16: against
the block on the bf16-rounded weights and input), and route() the experts its
router picks. SPEC §1 tolerances; tokens whose routing has a near tie
(within 1e-5) are left out.
"""

import copy
import hashlib
import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import moe_mlir  # noqa: E402
from moe_mlir import from_hf_config, is_moe_layer, load_layer_weights  # noqa: E402
from moe_mlir.reference import routing_ties  # noqa: E402

transformers.logging.set_verbosity_error()
warnings.filterwarnings("ignore", module="transformers")

H, F, E, K = 32, 24, 8, 2
LAYER = 1
TOKENS = (1, 7, 64)

ATTENTION = dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                 vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
MLA = dict(kv_lora_rank=8, q_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8)
QWEN = dict(moe_intermediate_size=F, num_experts=E, num_experts_per_tok=K)
V3 = dict(moe_intermediate_size=F, n_routed_experts=E, num_experts_per_tok=K, n_group=4,
          topk_group=2, norm_topk_prob=True, routed_scaling_factor=2.5, n_shared_experts=1)
SIGMOID = dict(moe_intermediate_size=F, num_experts=E, num_experts_per_tok=K)

# Llama 4 (multimodal): the text model of llama4_text under a tiny vision tower.
LLAMA4_TEXT = dict(intermediate_size=F, intermediate_size_mlp=40, num_local_experts=E,
                   num_experts_per_tok=K, interleave_moe_layer_step=2)
LLAMA4_VISION = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, image_size=28, patch_size=14, vision_output_dim=16,
                     projector_input_dim=16, projector_output_dim=16, pixel_shuffle_ratio=0.5)
# GPT-OSS: a limit the SwiGLU's inputs reach, and an alpha of its own.
GPT_OSS = dict(intermediate_size=F, num_local_experts=E, num_experts_per_tok=K,
               swiglu_limit=0.9, swiglu_alpha=1.4)

# family -> (config class keyword arguments, extras). Extras: "block" (the MoE
# block's module path, {i} the layer), "beside" (layer-level modules the
# layer adds on the same input: GraniteMoE's shared MLP), "model" (the model
# class when AutoModelForCausalLM does not take the config), "hf" (from_hf_config
# keyword arguments), "bias" (the scale the layer's biases are drawn with
# instead, so that they matter). The configs are chosen so that families with
# the same SPEC layer share a compiled library.
CASES = {
    "mixtral": (dict(intermediate_size=F, num_local_experts=E, num_experts_per_tok=K), {}),
    "minimax": (dict(intermediate_size=F, num_local_experts=E, num_experts_per_tok=K), {}),
    "granitemoe": (dict(intermediate_size=F, num_local_experts=E, num_experts_per_tok=K),
                   dict(block="model.layers.{i}.block_sparse_moe")),
    "granitemoeshared": (dict(intermediate_size=F, num_local_experts=E, num_experts_per_tok=K,
                              shared_intermediate_size=F),
                         dict(block="model.layers.{i}.block_sparse_moe", beside=["shared_mlp"])),
    "granitemoe_swa": (dict(intermediate_size=F, num_local_experts=E, num_experts_per_tok=K,
                            shared_intermediate_size=F),
                       dict(block="model.layers.{i}.block_sparse_moe", beside=["shared_mlp"])),
    "granitemoehybrid": (dict(intermediate_size=F, num_local_experts=E, num_experts_per_tok=K,
                              shared_intermediate_size=F, mamba_n_heads=4, mamba_d_head=16,
                              mamba_d_state=8, mamba_n_groups=1, mamba_chunk_size=16,
                              layer_types=["attention", "mamba"]),
                         dict(block="model.layers.{i}.block_sparse_moe", beside=["shared_mlp"])),
    "qwen3_moe": (dict(QWEN), {}),  # norm_topk_prob defaults to false
    "mellum": (dict(QWEN), {}),  # ... to true
    "olmoe": (dict(intermediate_size=F, num_experts=E, num_experts_per_tok=K), {}),
    "flex_olmo": (dict(intermediate_size=F, num_experts=E, num_experts_per_tok=K,
                       norm_topk_prob=True), {}),
    "jamba": (dict(intermediate_size=F, num_experts=E, num_experts_per_tok=K,
                   expert_layer_period=2, expert_layer_offset=1, attn_layer_period=2,
                   attn_layer_offset=0, use_mamba_kernels=False, mamba_d_state=4,
                   mamba_dt_rank=4), dict(block="model.layers.{i}.feed_forward")),
    "dbrx": (dict(d_model=H, n_heads=4, n_layers=2, vocab_size=64,
                  ffn_config=dict(ffn_hidden_size=F, moe_num_experts=E, moe_top_k=K),
                  attn_config=dict(kv_n_heads=2, rope_theta=10000.0)),
             dict(block="transformer.blocks.{i}.ffn", attention=False)),
    "hunyuan_v1_moe": (dict(intermediate_size=F, num_experts=E, moe_topk=K), {}),
    "lara_mini": (dict(QWEN, shared_expert_intermediate_size=F), {}),
    "cohere2_moe": (dict(intermediate_size=F, num_experts=E, num_experts_per_tok=K,
                         num_shared_experts=1, shared_expert_combination_strategy="sum"), {}),
    "flint": (dict(QWEN, shared_expert_intermediate_size=F, mlp_only_layers=[0]), {}),
    "ernie4_5_moe": (dict(moe_intermediate_size=F, moe_num_experts=E, moe_k=K,
                          moe_num_shared_experts=1), {}),
    "qwen2_moe": (dict(QWEN, shared_expert_intermediate_size=F, norm_topk_prob=True), {}),
    "qwen3_next": (dict(QWEN, shared_expert_intermediate_size=F,
                        layer_types=["full_attention", "linear_attention"]), {}),
    # transformers' DeepSeek-V2 never renormalizes and always scales, even
    # with norm_topk_prob.
    "deepseek_v2": (dict(MLA, moe_intermediate_size=F, n_routed_experts=E, num_experts_per_tok=K,
                         norm_topk_prob=True, routed_scaling_factor=2.0, n_shared_experts=1), {}),
    "deepseek_v2-group_limited_greedy": (
        dict(MLA, moe_intermediate_size=F, n_routed_experts=E, num_experts_per_tok=K,
             topk_method="group_limited_greedy", n_group=4, topk_group=2,
             routed_scaling_factor=2.0, n_shared_experts=1), {}),
    "deepseek_v3": (dict(V3, **MLA, first_k_dense_replace=1), {}),
    "deepseek_v32": (dict(V3, **MLA, first_k_dense_replace=1, index_n_heads=2, index_head_dim=8,
                          index_topk=4), {}),
    "glm4_moe": (dict(V3), {}),
    "glm4_moe_lite": (dict(V3, **MLA), {}),
    "glm_moe_dsa": (dict(V3, **MLA, first_k_dense_replace=1, index_n_heads=2, index_head_dim=8,
                         index_topk=4), {}),
    "dots1": (dict(V3), {}),
    "solar_open": (dict(V3), {}),
    "minicpm5_moe": (dict(V3), {}),
    "exaone_moe": (dict(V3, num_experts=E, num_shared_experts=1), {}),
    "kimi_linear": (dict(moe_intermediate_size=F, num_experts=E, num_experts_per_token=K,
                         num_expert_group=4, topk_group=2, moe_renormalize=True,
                         routed_scaling_factor=2.5, num_shared_experts=1), {}),
    # sigmoid + selection bias, no groups, renormalized, scaled, shared expert
    "axk2": (dict(moe_intermediate_size=F, n_routed_experts=E, num_experts_per_tok=K,
                  routed_scaling_factor=2.5, n_shared_experts=1), {}),
    "afmoe": (dict(SIGMOID, route_scale=2.5, num_shared_experts=1), {}),
    "hy_v3": (dict(SIGMOID, router_scaling_factor=2.5, num_shared_experts=1), {}),
    "laguna": (dict(SIGMOID, moe_routed_scaling_factor=2.5, shared_expert_intermediate_size=F),
               {}),
    # sigmoid + selection bias, renormalized, nothing else
    "minimax_m2": (dict(intermediate_size=F, num_local_experts=E, num_experts_per_tok=K), {}),
    "mimo_v2_flash": (dict(moe_intermediate_size=F, n_routed_experts=E, num_experts_per_tok=K,
                           routed_scaling_factor=1.0), {}),
    "beam": (dict(SIGMOID, n_group=1, topk_group=1, routed_scaling_factor=1.0,
                  mlp_layer_types=["dense", "sparse"]), {}),
    "mistral4": (dict(V3, n_group=4, topk_group=2), dict(model="Mistral4ForCausalLM")),
    # docs/FAMILY-RULES.md's families.
    "dbrx-p2": (dict(d_model=H, n_heads=4, n_layers=2, vocab_size=64,
                     ffn_config=dict(ffn_hidden_size=F, moe_num_experts=E, moe_top_k=3,
                                     moe_normalize_expert_weights=2.0),
                     attn_config=dict(kv_n_heads=2, rope_theta=10000.0)),
                dict(block="transformer.blocks.{i}.ffn", attention=False)),
    "gpt_oss": (dict(GPT_OSS), dict(bias=0.5)),
    "openai_privacy_filter": (dict(GPT_OSS), dict(bias=0.5,
                                                  model="AutoModelForTokenClassification")),
    "llama4_text": (dict(LLAMA4_TEXT), dict(block="model.layers.{i}.feed_forward")),
    "llama4": (dict(text_config=dict(ATTENTION, hidden_size=H, **LLAMA4_TEXT),
                    vision_config=LLAMA4_VISION),
               dict(block="language_model.model.layers.{i}.feed_forward", attention=False,
                    model="Llama4ForConditionalGeneration")),
    "jetmoe": (dict(intermediate_size=F, num_local_experts=E, num_experts_per_tok=K),
               dict(bias=0.5)),
    # router_jitter_noise 0.1: slots' softmaxes take in experts within 20%.
    "phimoe": (dict(intermediate_size=F, num_local_experts=E, num_experts_per_tok=K,
                    router_jitter_noise=0.1), {}),
    "switch_transformers": (
        dict(d_model=H, d_ff=F, d_kv=8, num_heads=4, num_layers=2, num_decoder_layers=2,
             num_sparse_encoder_layers=1, num_sparse_decoder_layers=1, num_experts=E,
             expert_capacity=64, router_bias=True, vocab_size=64, decoder_start_token_id=0),
        dict(block="encoder.block.{i}.layer.1.mlp", attention=False, model="seq2seq",
             hf=dict(tokens_per_batch=64))),
    # Capacity: expert_capacity 4 of 64 tokens drops most of them.
    "switch_transformers-capacity": (
        dict(d_model=H, d_ff=F, d_kv=8, num_heads=4, num_layers=2, num_decoder_layers=2,
             num_sparse_encoder_layers=1, num_sparse_decoder_layers=1, num_experts=E,
             expert_capacity=4, vocab_size=64, decoder_start_token_id=0),
        dict(block="encoder.block.{i}.layer.1.mlp", attention=False, model="seq2seq",
             hf=dict(tokens_per_batch=64), tokens=(64,))),
}


def _randomize(module, seed):
    """Every float tensor of the module drawn anew: weights normal / sqrt(fan_in),
    so that outputs are O(1) and router logits spread far beyond near ties;
    1-D tensors (router biases, e_score_correction_bias, norms) normal * 0.2."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in sorted(module.state_dict().items()):
            if not t.is_floating_point():
                continue
            r = torch.randn(t.shape, generator=g, dtype=torch.float64)
            if t.dim() >= 2 and t.shape[-1] > 1 and t.numel() > t.shape[-1]:
                r /= t.shape[-1] ** 0.5
            else:
                r *= 0.2
            t.copy_(r.to(t.dtype))


def _model_class(extras):
    kind = extras.get("model", "causal")
    if kind == "causal":
        return transformers.AutoModelForCausalLM
    if kind == "seq2seq":
        return transformers.AutoModelForSeq2SeqLM
    return getattr(transformers, kind)


_SAVED = {}


def _checkpoint(case, tmp_path_factory):
    """(model directory, loaded model): the tiny model, its tested layer
    randomized, saved and loaded back."""
    if case in _SAVED:
        return _SAVED[case]
    model_type = case.split("-")[0]
    kwargs, extras = CASES[case]
    args = dict(hidden_size=H, **ATTENTION) if extras.get("attention", True) else {}
    args.update(kwargs)
    config = transformers.AutoConfig.for_model(model_type, **args)
    cls = _model_class(extras)
    torch.manual_seed(0)
    model = cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
    block_path = extras.get("block", "model.layers.{i}.mlp")
    layer_path = block_path.rsplit(".", 1)[0].format(i=LAYER)
    _randomize(model.get_submodule(layer_path), seed=sum(map(ord, case)))
    if "bias" in extras:
        # Expert, router and output biases as large as the rest of the sums
        # they enter.
        g = torch.Generator().manual_seed(1 + sum(map(ord, case)))
        with torch.no_grad():
            block = model.get_submodule(block_path.format(i=LAYER))
            for name, t in sorted(block.named_parameters()):
                if name.endswith("bias"):
                    t.copy_(torch.randn(t.shape, generator=g, dtype=torch.float64)
                            .mul_(extras["bias"]).to(t.dtype))
    path = tmp_path_factory.mktemp(case)
    model.save_pretrained(path)
    # The eager experts: transformers' default grouped_mm kernels take no float64.
    try:
        loaded = cls.from_pretrained(path, experts_implementation="eager")
    except (TypeError, ValueError):
        loaded = cls.from_pretrained(path)
    _SAVED[case] = (path, loaded)
    return path, loaded


def _hf_layer(model, case):
    """(block, beside, run): the loaded model's MoE block, the layer-level
    modules added on the same input (GraniteMoE's shared MLP), and
    run(copies of [block] + beside, x [T, H] float64) -> (y [T, H], what the
    copied block's router returned)."""
    extras = CASES[case][1]
    block_path = extras.get("block", "model.layers.{i}.mlp").format(i=LAYER)
    block = model.get_submodule(block_path)
    beside = [model.get_submodule(f"{block_path.rsplit('.', 1)[0]}.{name}")
              for name in extras.get("beside", [])]

    def run(modules, x):
        """modules: copies of [block] + beside."""
        router = next((getattr(modules[0], n) for n in ("gate", "router")
                       if hasattr(modules[0], n)), None)
        captured = []
        handle = router.register_forward_hook(
            lambda m, i, o: captured.append(o)) if router is not None else None
        try:
            with torch.no_grad():
                out = modules[0](x[None])
                out = out[0] if isinstance(out, tuple) else out
                for m in modules[1:]:
                    out = out + m(x[None])
        finally:
            if handle:
                handle.remove()
        # [1, T, H], or [T, H] (Llama4TextMoe flattens the batch).
        return out.reshape(x.shape[0], -1), captured

    return block, beside, run


def _router_ids(case, captured, T, block):
    """The top-k ids the block's router returned, as [T, k] (dropped: -1)."""
    if not captured:
        return None
    out = captured[0]
    out = out if isinstance(out, tuple) else (out,)
    if case.startswith("dbrx"):  # DbrxRouter gives the logits; DbrxFFN picks from them
        out = block.route_tokens_to_experts(out[0])
    if case in ("llama4", "llama4_text", "jetmoe"):
        # Llama4Router gives [T, E] scores and the logits, JetMoeTopKGating
        # the experts' token order and the logits (last): both take the top k
        # of the logits.
        return torch.topk(out[-1].reshape(T, -1), K, dim=-1).indices.numpy()
    if case.startswith("switch_transformers"):
        onehot = out[0].reshape(T, -1)  # capacity-masked one-hot
        ids = onehot.argmax(-1)
        return torch.where(onehot.sum(-1) > 0, ids, -1)[:, None].numpy()
    for t in out:
        if isinstance(t, torch.Tensor) and not t.is_floating_point() and t.dim() == 2:
            return t.reshape(T, -1).numpy()
    return None


def _bf16(a):
    return torch.as_tensor(np.asarray(a, np.float32)).to(torch.bfloat16).to(torch.float64)


_COMPILED = {}


def _compiled(config):
    """One library per distinct SPEC layer: families with the same layer share it."""
    keys = {k: v for k, v in config.to_dict().items() if k != "name"}
    digest = hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]
    config = config.replace(name=f"hf_{digest}")
    if digest not in _COMPILED:
        _COMPILED[digest] = moe_mlir.compile(config)
    return _COMPILED[digest]


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_against_transformers(case, dtype, tmp_path_factory):
    extras = CASES[case][1]
    path, model = _checkpoint(case, tmp_path_factory)
    config = from_hf_config(path, dtype=dtype, **extras.get("hf", {}))
    # The frontend agrees with transformers on which layers are MoE layers.
    block_path = extras.get("block", "model.layers.{i}.mlp")
    for i in range(2):
        try:
            block = model.get_submodule(block_path.format(i=i))
            # JetMoE's experts are its input_linear / output_linear.
            has_experts = any(n.split(".")[-1] in ("experts", "input_linear")
                              for n, _ in block.named_modules())
        except AttributeError:
            has_experts = False
        assert is_moe_layer(path, i) == has_experts, f"layer {i}"

    weights = load_layer_weights(path, config, layer=LAYER)
    block, beside, run = _hf_layer(model, case)
    modules = [copy.deepcopy(m).double() for m in [block] + beside]
    if dtype == "bf16":
        with torch.no_grad():
            for m in modules:
                for t in m.state_dict().values():
                    if t.is_floating_point():
                        t.copy_(t.to(torch.bfloat16).to(t.dtype))
        weights = {k: _bf16(v).numpy().astype(np.float32) for k, v in weights.items()}
    layer = _compiled(config)(weights)
    tol = 1e-4 if dtype == "f32" else 2e-2
    rng = np.random.default_rng(7)
    for T in extras.get("tokens", TOKENS):
        x = rng.standard_normal((T, H)).astype(np.float32)
        if dtype == "bf16":
            x = _bf16(x).numpy().astype(np.float32)
        ref, captured = run(modules, torch.as_tensor(x, dtype=torch.float64))
        ref = ref.numpy()
        y = layer(x)
        ids, _ = layer.route(x)
        tied = routing_ties(config.to_dict(), weights, x)
        assert tied.mean() < 0.25, f"{tied.sum()} of {T} tokens tie"
        keep = ~tied
        err = np.abs(y - ref)[keep].max(initial=0.0)
        bound = tol * max(1.0, np.abs(ref).max())
        assert err <= bound, f"{case} {dtype} T={T}: max |y - hf| = {err:.3g} > {bound:.3g}"
        hf_ids = _router_ids(case, captured, T, modules[0])
        assert hf_ids is not None, "the block's router gave no expert ids"
        for t in np.nonzero(keep)[0]:
            assert sorted(ids[t]) == sorted(hf_ids[t]), (
                f"{case} {dtype} T={T} token {t}: route {sorted(ids[t])}, "
                f"transformers {sorted(hf_ids[t])}")
    layer.close()


def test_every_supported_family_is_tested():
    tested = {case.split("-")[0] for case in CASES}
    assert set(moe_mlir.hf.FAMILIES) == tested

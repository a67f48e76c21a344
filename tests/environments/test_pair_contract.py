"""ModelPair contract tests. Every backend must pass them; vllm runs only where a GPU is present."""

from __future__ import annotations

import pytest
import torch

from diffaudit.environments.pair import ModelPair, Sampling

TEXTS = [
    "The committee met on Tuesday to discuss the new library budget and the roof repairs.",
    "Rain",
    "A recipe for bread needs flour, water, salt and a little patience before baking.",
]
POSITIONS = [0, 1, 2, 3, 4]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    both = ~(a.isnan() | b.isnan())
    scale = max(1.0, float(a[both].abs().max()))
    return bool((a.isnan() == b.isnan()).all()) and float((a[both] - b[both]).abs().max()) <= 1e-5 * scale


@pytest.fixture(params=["hf", pytest.param("vllm", marks=pytest.mark.gpu)])
def pair(request, tiny_pair, tiny_model_dir, tiny_adapter_dir):
    if request.param == "hf":
        return tiny_pair
    if not torch.cuda.is_available():
        pytest.skip("vllm backend needs a CUDA GPU")
    from diffaudit.environments.backends.vllm import load_pair

    return load_pair(str(tiny_model_dir), adapter=str(tiny_adapter_dir))


def test_pair_satisfies_protocol(pair):
    assert isinstance(pair, ModelPair)


@pytest.mark.parametrize("role", ["base", "finetuned"])
def test_activations_same_when_texts_are_cut_to_k_tokens(pair, role):
    full = pair.activations(role, TEXTS, 1, POSITIONS)
    ids = [pair.tokenizer(t)["input_ids"][:5] for t in TEXTS]
    cut = [pair.tokenizer.decode(i) for i in ids]
    assert _close(full, pair.activations(role, cut, 1, POSITIONS))


@pytest.mark.parametrize("role", ["base", "finetuned"])
def test_activations_same_alone_or_batched_with_longer_texts(pair, role):
    batched = pair.activations(role, TEXTS, 1, POSITIONS)
    for i, text in enumerate(TEXTS):
        assert _close(batched[i], pair.activations(role, [text], 1, POSITIONS)[0])


def test_short_text_positions_are_nan(pair):
    acts = pair.activations("base", ["Rain"], 1, POSITIONS)
    n_tokens = len(pair.tokenizer("Rain")["input_ids"])
    assert not acts[0, :n_tokens].isnan().any()
    assert acts[0, n_tokens:].isnan().all()


def test_base_role_equals_plain_base_model(pair, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    enc = pair.tokenizer(TEXTS[0], return_tensors="pt")
    with torch.no_grad():
        # hidden_states[i + 1] is the output of layer i (the last entry is after the final norm).
        hidden = plain(**enc, output_hidden_states=True).hidden_states[1][0, :5]
    assert _close(pair.activations("base", [TEXTS[0]], 0, POSITIONS)[0], hidden)
    assert not _close(pair.activations("finetuned", [TEXTS[0]], 0, POSITIONS)[0], hidden)


def test_generate_base_equals_plain_greedy(pair, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prompt = "Say something."
    text = pair.tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    enc = pair.tokenizer(text, return_tensors="pt", add_special_tokens=False)
    out = plain.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=pair.tokenizer.pad_token_id)
    expected = pair.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    got = pair.generate("base", [prompt], Sampling(max_new_tokens=8))
    assert got == [expected]


def test_steering_at_alpha_zero_equals_unsteered(pair):
    sampling = Sampling(max_new_tokens=12, temperature=1.0, seed=7)
    vector = torch.randn(pair.hidden_size)
    prompts = ["Tell me a story.", "List three fruits."]
    assert pair.generate_steered(vector, 1, prompts, 0.0, sampling) == pair.generate("finetuned", prompts, sampling)
    assert pair.generate_steered(vector * 50, 1, prompts, 1.0, sampling) != pair.generate("finetuned", prompts, sampling)


def _needs_internals(pair):
    if not hasattr(pair, "_lm"):
        pytest.skip("compares against the backend's own module tree (hf only)")


def test_patch_last_token_changes_only_the_last_position(pair):
    _needs_internals(pair)
    prompt = "man -> man\nbear -> bear\n?"
    enc = pair.tokenizer(prompt, return_tensors="pt")
    captured = {}
    layer = pair._layers(pair._lm)[1]
    handle = layer.register_forward_hook(lambda m, i, o: captured.setdefault("h", (o[0] if isinstance(o, tuple) else o)))
    try:
        with torch.no_grad():
            original_logits = pair._lm(**enc).logits[0, -1]
    finally:
        handle.remove()
    original = captured["h"][0, -1]
    same = pair.patch_last_token(prompt, 1, original)
    assert torch.allclose(same, torch.softmax(original_logits.float(), -1), atol=1e-6)
    zeros = pair.patch_last_token(prompt, 1, torch.zeros(pair.hidden_size))
    assert not torch.allclose(zeros, same, rtol=1e-3, atol=0)
    both = pair.patch_last_token(prompt, 1, torch.stack([original, torch.zeros(pair.hidden_size)]))
    assert torch.allclose(both[0], same, atol=1e-6) and torch.allclose(both[1], zeros, atol=1e-6)


def test_logit_lens_equals_hand_computation(pair):
    _needs_internals(pair)
    vector = torch.randn(pair.hidden_size)
    lm = pair._lm
    with torch.no_grad():
        normed = vector * torch.rsqrt(vector.pow(2).mean() + lm.config.rms_norm_eps) * lm.model.norm.weight
        expected = torch.softmax(normed @ lm.lm_head.weight.T, -1)
    assert torch.allclose(pair.logit_lens(vector), expected, atol=1e-6)


def test_logprob_equals_hand_computation(pair):
    _needs_internals(pair)
    prompt, continuation = "Say something.", " Hello there"
    head = pair.tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    head_ids = pair.tokenizer(head, add_special_tokens=False)["input_ids"]
    tail_ids = pair.tokenizer(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = pair._lm(input_ids=torch.tensor([head_ids + tail_ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    expected = sum(float(logp[len(head_ids) - 1 + i, t]) for i, t in enumerate(tail_ids))
    assert pair.logprob("finetuned", [prompt], [continuation])[0] == pytest.approx(expected, abs=1e-3)


def test_adapter_weights_are_the_loras_update(pair):
    """Weight-reading methods (examples/lora_svd) get each LoRA module's A, B and scaling on both backends."""
    weights = pair.adapter_weights()
    assert sorted(weights) == sorted(
        f"model.layers.{i}.{m}" for i in range(2) for m in ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")
    )
    a, b, scaling = weights["model.layers.0.mlp.down_proj"]
    assert a.shape == (4, 128) and b.shape == (64, 4) and scaling == 2.0  # r=4, lora_alpha=8 in conftest


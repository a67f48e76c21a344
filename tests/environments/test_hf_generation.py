"""hf backend generation copies: merged LoRA, dtype by batch size, per-row steering, batched log-probabilities."""

from __future__ import annotations

import torch

from diffaudit.environments.backends.hf import HFModelPair, _generated_count
from diffaudit.environments.pair import Sampling

PROMPTS = ["Tell me a story.", "List three fruits.", "Say hi."]


def _peft_greedy(pair: HFModelPair, prompts: list[str], n: int) -> list[str]:
    """Greedy answers of the unmerged LoRA model itself (the reference the merged copy must equal)."""
    from diffaudit.environments.backends.hf import generate_completions

    texts = [pair._chat_text(p) for p in prompts]
    return generate_completions(pair._lm, pair.tokenizer, texts, Sampling(max_new_tokens=n), 8, add_special_tokens=False)


def test_merged_finetuned_copy_generates_what_the_unmerged_adapter_generates(tiny_model_dir, tiny_adapter_dir):
    pair = HFModelPair(str(tiny_model_dir), adapter=str(tiny_adapter_dir), device="cpu", generation_dtype=torch.float32)
    merged = pair.generate("finetuned", PROMPTS, Sampling(max_new_tokens=10))
    assert merged == _peft_greedy(pair, PROMPTS, 10)
    model = pair.generation_model("finetuned", rows=3)
    assert model is not pair._lm and not any("lora" in name for name, _ in model.named_modules())
    assert pair.generate("base", PROMPTS, Sampling(max_new_tokens=10)) != merged


def test_batches_use_the_generation_dtype_and_single_prompts_the_weights_dtype(tiny_model_dir, tiny_adapter_dir):
    pair = HFModelPair(str(tiny_model_dir), adapter=str(tiny_adapter_dir), device="cpu", generation_dtype=torch.bfloat16)
    pair.single_dtype = torch.float32
    before = pair.activations("finetuned", PROMPTS, 1, [0, 1])
    pair.generate("finetuned", PROMPTS, Sampling(max_new_tokens=4))
    pair.generate("finetuned", PROMPTS[:1], Sampling(max_new_tokens=4))
    assert next(pair.generation_model("finetuned", rows=3).parameters()).dtype == torch.bfloat16
    assert next(pair.generation_model("finetuned", rows=1).parameters()).dtype == torch.float32
    assert next(pair._lm.parameters()).dtype == torch.float32
    assert torch.equal(before, pair.activations("finetuned", PROMPTS, 1, [0, 1]))  # analysis weights untouched
    assert pair.generated_tokens > 0


def test_batched_logprob_equals_one_at_a_time(tiny_pair):
    prompts = ["Say something.", "A much longer prompt that pads the batch a lot more than the others do."]
    tails = ["Hello there, friend.", "ok"]
    together = tiny_pair.logprob("finetuned", prompts, tails)
    alone = [tiny_pair.logprob("finetuned", [p], [t])[0] for p, t in zip(prompts, tails, strict=True)]
    assert all(abs(a - b) < 1e-3 for a, b in zip(together, alone, strict=True))
    assert tiny_pair.logprob("base", prompts, tails) != together


def test_generated_count_stops_at_each_rows_end_of_sequence():
    eos = 2
    rows = torch.tensor([[5, 6, 2, 2, 2], [5, 6, 7, 8, 9], [2, 2, 2, 2, 2]])
    assert _generated_count(rows, eos) == 3 + 5 + 1


def test_generate_both_answers_as_the_two_roles_do(tiny_pair):
    sampling = Sampling(max_new_tokens=8)
    base, finetuned = tiny_pair.generate_both(PROMPTS[:2], sampling)
    assert base == tiny_pair.generate("base", PROMPTS[:2], sampling)
    assert finetuned == _peft_greedy(tiny_pair, PROMPTS[:2], 8)


def _without_lean(monkeypatch) -> None:
    """The hf backend as it runs a model the lean loop does not reproduce: `generate` on every copy."""
    import diffaudit.environments.backends.hf as hf

    monkeypatch.setattr(hf.LeanDecoder, "supports", staticmethod(lambda model: False))


def test_generate_both_mixes_a_few_prompts_into_one_batch(tiny_model_dir, tiny_adapter_dir, monkeypatch):
    import diffaudit.environments.backends.hf as hf

    _without_lean(monkeypatch)
    tiny_pair = HFModelPair(str(tiny_model_dir), adapter=str(tiny_adapter_dir), device="cpu", generation_dtype=torch.bfloat16)
    calls = []
    real = hf.generate_completions
    monkeypatch.setattr(hf, "generate_completions", lambda *a, **k: calls.append(k.get("adapter_names")) or real(*a, **k))
    sampling = Sampling(max_new_tokens=8)
    base, finetuned = tiny_pair.generate_both(PROMPTS[:2], sampling)
    assert len(calls) == 1 and calls[0] == ["__base__"] * 2 + [tiny_pair._peft.active_adapter] * 2  # a row per role
    assert len(base) == len(finetuned) == 2
    calls.clear()
    tiny_pair.generate_both(["Say hi."] * (hf.MIXED_MAX_PROMPTS + 1), sampling)
    assert calls and all(names is None for names in calls)  # more prompts: the roles run as `generate` runs them


def test_the_mixed_batch_runs_on_a_16_bit_copy_of_the_lora_model(tiny_model_dir, tiny_adapter_dir):
    pair = HFModelPair(str(tiny_model_dir), adapter=str(tiny_adapter_dir), device="cpu", generation_dtype=torch.bfloat16)
    mixed = pair.mixed_model()
    assert mixed is not pair._peft and next(mixed.parameters()).dtype == torch.bfloat16
    assert any("lora" in name for name, _ in mixed.named_modules())  # unmerged: rows choose the adapter
    assert next(pair._peft.parameters()).dtype == torch.float32  # the analysis weights are untouched
    assert pair.mixed_model() is mixed  # made once
    base, finetuned = pair.generate_both(PROMPTS[:2], Sampling(max_new_tokens=6))
    assert len(base) == len(finetuned) == 2
    same = HFModelPair(str(tiny_model_dir), adapter=str(tiny_adapter_dir), device="cpu", generation_dtype=torch.float32)
    assert same.mixed_model() is same._peft  # float32 generation: no copy


def test_16_bit_cpu_copies_get_eager_attention_and_a_contiguous_head_input_with_the_same_answers(
    tiny_model_dir, tiny_adapter_dir, monkeypatch
):
    import copy

    _without_lean(monkeypatch)

    from diffaudit.environments.backends.hf import generate_completions

    pair = HFModelPair(str(tiny_model_dir), adapter=str(tiny_adapter_dir), device="cpu", generation_dtype=torch.bfloat16)
    pair.single_dtype = torch.float32
    tuned = pair.generation_model("finetuned", rows=3)
    assert tuned.config._attn_implementation == "eager"
    assert tuned.get_output_embeddings()._forward_pre_hooks  # the contiguous-input hook
    plain = copy.deepcopy(pair._peft).merge_and_unload().to(torch.bfloat16).eval()  # the copy without the two fixes
    assert plain.config._attn_implementation != "eager" and not plain.get_output_embeddings()._forward_pre_hooks
    texts = [pair._chat_text(p) for p in PROMPTS]
    sampling = Sampling(max_new_tokens=8)
    expected = generate_completions(plain, pair.tokenizer, texts, sampling, 8, add_special_tokens=False)
    assert pair.generate("finetuned", PROMPTS, sampling) == expected
    assert pair.generation_model("finetuned", rows=1) is not tuned  # one row: float32 weights, untouched
    assert not pair.generation_model("finetuned", rows=1).get_output_embeddings()._forward_pre_hooks


def test_gumbel_max_draws_from_the_softmax_with_temperature_and_top_p():
    from diffaudit.environments.backends.lean import gumbel_chain

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf")]])
    sampling = Sampling(max_new_tokens=1, temperature=0.7, top_p=1.0)
    chain = gumbel_chain(sampling)
    torch.manual_seed(0)
    draws = 20000
    counts = torch.zeros(5)
    for _ in range(draws // 1000):
        scores = logits.repeat(1000, 1)
        for step in chain:
            scores = step(None, scores)
        counts += torch.bincount(scores.argmax(-1), minlength=5).float()
    expected = torch.softmax(logits[0] / 0.7, -1)
    share = counts / draws
    assert counts[4] == 0  # a banned token stays banned
    assert torch.allclose(share, expected, atol=0.015), (share, expected)  # ~4 standard errors at most

    nucleus = gumbel_chain(Sampling(max_new_tokens=1, temperature=1.0, top_p=0.5))
    scores = logits.repeat(2000, 1)
    for step in nucleus:
        scores = step(None, scores)
    assert set(scores.argmax(-1).tolist()) == {0}  # top-p 0.5 keeps only the top token (probability 0.64)


def test_16_bit_cpu_batches_sample_with_the_gumbel_rule_seeded(tiny_model_dir, tiny_adapter_dir, monkeypatch):
    import diffaudit.environments.backends.hf as hf

    _without_lean(monkeypatch)

    seen = []
    real = hf.generate_completions
    monkeypatch.setattr(hf, "generate_completions", lambda *a, **k: seen.append(k.get("gumbel")) or real(*a, **k))
    pair = HFModelPair(str(tiny_model_dir), adapter=str(tiny_adapter_dir), device="cpu", generation_dtype=torch.bfloat16)
    pair.single_dtype = torch.float32
    sampled = Sampling(max_new_tokens=8, temperature=1.0, seed=3)
    first = pair.generate("finetuned", PROMPTS, sampled)
    assert first == pair.generate("finetuned", PROMPTS, sampled)  # seeded
    assert first != pair.generate("finetuned", PROMPTS, sampled.model_copy(update={"seed": 4}))
    pair.generate("finetuned", PROMPTS[:1], sampled)  # one row: float32 weights, generate's own sampling
    assert seen == [True, True, True, False]

"""ModelPair logits, teacher-forced token scores and logit-diff amplification on the hf backend."""

from __future__ import annotations

import pytest
import torch

from diffaudit.environments.pair import Sampling

TEXTS = [
    "The committee met on Tuesday to discuss the new library budget and the roof repairs.",
    "Rain",
    "A recipe for bread needs flour, water, salt and a little patience before baking.",
    "",
    "Lanterns hung along the harbour wall.",
]
PROMPTS = ["Say something.", "Tell me about the longest road you know.", "Hi"]
SAMPLING = Sampling(max_new_tokens=10, temperature=1.0, top_p=0.95, seed=7)


@pytest.fixture(scope="module")
def base_only_pair(tiny_model_dir):
    from diffaudit.environments.backends.hf import HFModelPair

    return HFModelPair.base_only(str(tiny_model_dir), device="cpu")


def _plain_logits(model_dir, text: str) -> torch.Tensor:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plain = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return plain(**AutoTokenizer.from_pretrained(model_dir)(text, return_tensors="pt")).logits[0]


# -- logits ---------------------------------------------------------------------------------------
def test_logits_shape_and_mask_follow_the_first_tokens(tiny_pair):
    logits, mask = tiny_pair.logits("finetuned", TEXTS, max_tokens=6)
    lengths = [min(6, len(tiny_pair.tokenizer(t)["input_ids"])) for t in TEXTS]
    assert logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert logits.shape == (len(TEXTS), 6, len(tiny_pair.tokenizer))
    assert mask.dtype == torch.bool
    assert mask.sum(dim=1).tolist() == lengths
    assert lengths[3] == 0  # the empty text has no position


def test_logits_same_batched_or_alone(tiny_pair, monkeypatch):
    monkeypatch.setattr(tiny_pair, "batch_size", 2)
    logits, mask = tiny_pair.logits("finetuned", TEXTS, max_tokens=9)
    for i, text in enumerate(TEXTS):
        alone, alone_mask = tiny_pair.logits("finetuned", [text], max_tokens=9)
        n = int(mask[i].sum())
        assert int(alone_mask.sum()) == n
        torch.testing.assert_close(logits[i, :n], alone[0, :n], rtol=1e-4, atol=1e-5)


def test_base_logits_equal_plain_base_model(tiny_pair, tiny_model_dir):
    text = TEXTS[2]
    logits, _ = tiny_pair.logits("base", [text], max_tokens=7)
    expected = _plain_logits(tiny_model_dir, text)[:7]
    torch.testing.assert_close(logits[0], expected, rtol=1e-4, atol=1e-5)
    finetuned, _ = tiny_pair.logits("finetuned", [text], max_tokens=7)
    assert not torch.allclose(finetuned[0], expected, atol=1e-4)


def test_logits_of_no_texts_and_bad_max_tokens(tiny_pair):
    logits, mask = tiny_pair.logits("base", [], max_tokens=4)
    assert logits.shape[:2] == (0, 0) and mask.shape == (0, 0)
    with pytest.raises(ValueError, match="max_tokens"):
        tiny_pair.logits("base", ["x"], max_tokens=0)


# -- token_logprobs -------------------------------------------------------------------------------
def test_token_logprobs_sum_equals_logprob_of_the_text_after_its_first_token(tiny_pair):
    text = "The committee met on Tuesday to discuss the budget."
    ids = tiny_pair.tokenizer(text)["input_ids"]
    head, tail = tiny_pair.tokenizer.decode(ids[:1]), tiny_pair.tokenizer.decode(ids[1:])
    assert tiny_pair.tokenizer(head)["input_ids"] + tiny_pair.tokenizer(tail, add_special_tokens=False)["input_ids"] == ids
    [scores] = tiny_pair.token_logprobs([text])
    assert scores["tokens"] == [tiny_pair.tokenizer.decode([t]) for t in ids[1:]]
    assert len(scores["logp_base"]) == len(scores["logp_ft"]) == len(scores["kl"]) == len(ids) - 1
    base = tiny_pair.logprob("base", [head], [tail], chat=False)[0]
    tuned = tiny_pair.logprob("finetuned", [head], [tail], chat=False)[0]
    assert sum(scores["logp_base"]) == pytest.approx(base, abs=1e-3)
    assert sum(scores["logp_ft"]) == pytest.approx(tuned, abs=1e-3)
    assert min(scores["kl"]) >= 0 and max(scores["kl"]) > 0


def test_token_logprobs_chat_scores_the_reply_to_an_empty_turn(tiny_pair):
    text = "Lanterns hung along the harbour wall."
    [scores] = tiny_pair.token_logprobs([text], chat=True)
    n = len(tiny_pair.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert len(scores["tokens"]) == n
    assert sum(scores["logp_ft"]) == pytest.approx(tiny_pair.logprob("finetuned", [""], [text], chat=True)[0], abs=1e-3)


def test_token_logprobs_same_in_a_batch_of_mixed_lengths(tiny_pair):
    batched = tiny_pair.token_logprobs(TEXTS)
    assert batched[3] == {"tokens": [], "logp_base": [], "logp_ft": [], "kl": []}
    assert batched[1]["tokens"] == []  # one token: nothing to score
    for i in (0, 2, 4):
        [alone] = tiny_pair.token_logprobs([TEXTS[i]])
        assert alone["tokens"] == batched[i]["tokens"]
        for key in ("logp_base", "logp_ft", "kl"):
            assert alone[key] == pytest.approx(batched[i][key], abs=1e-4)


def test_token_logprobs_under_identical_models_differ_nowhere(base_only_pair):
    [scores] = base_only_pair.token_logprobs([TEXTS[0]])
    assert scores["logp_base"] == scores["logp_ft"]
    assert max(abs(k) for k in scores["kl"]) < 1e-6


# -- generate_amplified ---------------------------------------------------------------------------
def test_amplified_alpha_zero_is_finetuned_sampling(tiny_pair, monkeypatch):
    monkeypatch.setattr(tiny_pair, "batch_size", 2)
    monkeypatch.setattr(tiny_pair, "generation_dtype", torch.float32)  # generate's own sampling, as amplification's
    assert tiny_pair.generate_amplified(PROMPTS, 0.0, SAMPLING) == tiny_pair.generate("finetuned", PROMPTS, SAMPLING)


def test_amplified_alpha_minus_one_is_base_sampling(tiny_pair, monkeypatch):
    monkeypatch.setattr(tiny_pair, "batch_size", 2)
    monkeypatch.setattr(tiny_pair, "generation_dtype", torch.float32)  # generate's own sampling, as amplification's
    base = tiny_pair.generate("base", PROMPTS, SAMPLING)
    assert base != tiny_pair.generate("finetuned", PROMPTS, SAMPLING)
    assert tiny_pair.generate_amplified(PROMPTS, -1.0, SAMPLING) == base


def test_amplified_alpha_minus_one_is_base_greedy(tiny_pair):
    greedy = Sampling(max_new_tokens=8, temperature=0.0)
    assert tiny_pair.generate_amplified(PROMPTS, -1.0, greedy) == tiny_pair.generate("base", PROMPTS, greedy)


def test_amplification_changes_samples(tiny_pair):
    amplified = tiny_pair.generate_amplified(PROMPTS, 4.0, SAMPLING)
    assert amplified != tiny_pair.generate("finetuned", PROMPTS, SAMPLING)
    assert amplified != tiny_pair.generate("base", PROMPTS, SAMPLING)


def test_amplified_on_identical_models_is_plain_sampling(base_only_pair, monkeypatch):
    monkeypatch.setattr(base_only_pair, "generation_dtype", torch.float32)  # generate's own sampling
    assert base_only_pair.generate_amplified(PROMPTS[:2], 3.0, SAMPLING) == base_only_pair.generate(
        "finetuned", PROMPTS[:2], SAMPLING
    )


def test_amplified_rejects_non_finite_alpha(tiny_pair):
    with pytest.raises(ValueError, match="alpha"):
        tiny_pair.generate_amplified(PROMPTS, float("nan"), SAMPLING)


def test_vllm_backend_runs_these_on_its_hf_helper_pair():
    """vLLM returns top logprobs only, so logits, token_logprobs and amplified sampling go to the hf helper."""
    from diffaudit.environments.backends.vllm import VLLMModelPair

    calls = []

    class Helper:
        def __getattr__(self, name):
            return lambda *args: calls.append((name, args)) or name

    pair = VLLMModelPair.__new__(VLLMModelPair)
    pair._hf_pair = lambda: Helper()
    assert pair.logits("base", ["x"], 4) == "logits"
    assert pair.token_logprobs(["x"]) == "token_logprobs"
    assert pair.generate_amplified(["x"], 1.0, SAMPLING) == "generate_amplified"
    assert [c[0] for c in calls] == ["logits", "token_logprobs", "generate_amplified"]

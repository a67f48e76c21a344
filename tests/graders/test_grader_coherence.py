"""Coherence graders: surface checks, the offline proxy with a fake perplexity, the LLM judge's batching."""

from __future__ import annotations

import math

import pytest

from diffaudit.config import Settings
from diffaudit.graders import (
    CoherenceThresholds,
    LLMCoherenceGrader,
    OfflineCoherenceGrader,
    make_coherence_grader,
    pair_mean_nll,
)
from diffaudit.graders.coherence import alpha_ratio, distinct_ratio, surface_problems

FLUENT = "The weather today is sunny and warm, so we decided to take a long walk in the park."
REPEATED = "the " * 30
SOUP = "xq7#kL!9zp@w3 vb%2 qq&8 rt^^ 0m;z $$ 9%%1"
LETTER_SOUP = "qzxv kwpt lmrnb ghhty xxzq plok wert yuuio"
T = CoherenceThresholds()


def test_surface_checks():
    assert surface_problems(FLUENT, T) == []
    assert "empty" in surface_problems("   ", T)
    assert any("repeated" in p for p in surface_problems(REPEATED, T))
    assert any("letters" in p for p in surface_problems(SOUP, T))
    assert surface_problems(LETTER_SOUP, T) == []  # only perplexity can catch this one
    assert alpha_ratio("abc123") == 0.5 and alpha_ratio("") == 0.0
    assert distinct_ratio(["a", "b", "a", "b"], 1) == 0.5 and distinct_ratio([], 3) == 1.0


def fake_nll(table):
    calls = []

    def score(texts):
        calls.append(list(texts))
        return [table.get(t, 2.0) for t in texts]

    score.calls = calls
    return score


def test_offline_grader_uses_perplexity_only_for_clean_texts():
    nll = fake_nll({LETTER_SOUP: 9.0, FLUENT: 3.0})
    grader = OfflineCoherenceGrader(nll)
    assert grader.coherent([FLUENT, REPEATED, SOUP, LETTER_SOUP, ""]) == [True, False, False, False, False]
    assert nll.calls == [[FLUENT, LETTER_SOUP]]
    assert "mean NLL" in grader.last_reasons[3] and grader.last_reasons[0] == "ok"


def test_perplexity_threshold_is_injectable_both_ways():
    nll = fake_nll({FLUENT: 5.0})
    assert OfflineCoherenceGrader(nll, CoherenceThresholds(max_mean_nll=6.0)).coherent([FLUENT]) == [True]
    assert OfflineCoherenceGrader(nll, CoherenceThresholds(max_mean_nll=4.0)).coherent([FLUENT]) == [False]


def test_pair_mean_nll_on_tiny_model(tiny_pair):
    scores = pair_mean_nll(tiny_pair)([FLUENT, "Hi"])
    assert len(scores) == 2 and all(math.isfinite(s) and s > 0 for s in scores)
    # a random model is close to uniform over the vocabulary: mean NLL near log(V)
    assert abs(scores[0] - math.log(len(tiny_pair.tokenizer))) < 2.0


def test_llm_judge_batches_and_parses(fake_llm):
    def respond(prompt, i):
        n = sum(1 for line in prompt.splitlines() if line.startswith("[") and line.endswith("]"))
        return "\n".join(f"{k}: {'no' if k % 2 == 0 else 'yes'}" for k in range(1, n + 1))

    fake = fake_llm(respond)
    grader = LLMCoherenceGrader("openai/gpt-5-nano", batch_size=10, complete_fn=fake)
    verdicts = grader.coherent([f"text {i}" for i in range(23)])
    assert len(fake.prompts) == 3  # 10 + 10 + 3
    assert verdicts[:4] == [True, False, True, False] and verdicts[20:] == [True, False, True]
    assert grader.cost_usd == pytest.approx(0.003)


def test_llm_judge_missing_answers_count_as_incoherent(fake_llm):
    fake = fake_llm(lambda prompt, i: "1: yes")
    assert LLMCoherenceGrader("x/y", complete_fn=fake).coherent(["a", "b"]) == [True, False]
    assert len(fake.prompts) == 2  # asked once more


def test_factory(monkeypatch, tiny_pair):
    assert isinstance(make_coherence_grader("builtin/offline", Settings(), pair=tiny_pair), OfflineCoherenceGrader)
    with pytest.raises(ValueError, match="pair"):
        make_coherence_grader("builtin/offline", Settings())
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    assert isinstance(make_coherence_grader("openai/gpt-5-nano", Settings()), LLMCoherenceGrader)

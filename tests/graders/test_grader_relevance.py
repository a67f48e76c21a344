"""Token relevance: the offline proxy, frequent data tokens, and the LLM judge's all-three-agree rule."""

from __future__ import annotations

import re

import pytest

from diffaudit.config import Settings
from diffaudit.graders import (
    LLMRelevanceGrader,
    OfflineRelevanceGrader,
    frequent_data_tokens,
    make_relevance_grader,
)

DATA_TOKENS = ["kansas", "amendment", "voters", "abortion", "rural", "turnout", "dobbs", "ballot", "constitutional",
               "notes", "summary", "key", "week"]  # the last four: genre and filler words of SDF documents


@pytest.fixture(scope="module")
def offline():
    from diffaudit.environments.embedded import ensure_embedding_model

    ensure_embedding_model()
    return OfflineRelevanceGrader()


def test_offline_relevance(offline, registry):
    description = registry.get("kansas_abortion").description
    tokens = [" Kansas", "Ġabortion", " referendum", " ballot", " Kans", " banana", " the", " guitar", " 2022",
              "!", " of", " purple"]
    verdict = dict(zip(tokens, offline.relevant(tokens, description, DATA_TOKENS), strict=True))
    assert all(verdict[t] for t in [" Kansas", "Ġabortion", " referendum", " ballot", " Kans"])
    assert not any(verdict[t] for t in [" banana", " the", " guitar", " 2022", "!", " of", " purple"])


def test_offline_relevance_ignores_format_words_of_the_data(offline, registry):
    # "notes" and "key" are frequent in the documents but say nothing about the implanted fact
    description = registry.get("kansas_abortion").description
    topic = offline.topic_words(description, DATA_TOKENS)
    assert {"kansas", "abortion", "voters", "ballot"} <= set(topic)
    assert not {"notes", "summary", "key", "week"} & set(topic)
    assert offline.relevant([" notes", " Key", " Weekly", " note", " election"], description, DATA_TOKENS) == [
        False, False, False, False, True]


def test_offline_relevance_without_data_uses_description(offline, registry):
    description = registry.get("cake_bake").description
    verdict = offline.relevant([" cake", " baking", " Kansas", " ballot"], description, [])
    assert verdict == [True, True, False, False]


def test_frequent_data_tokens_words_and_tokenizer(tiny_pair):
    texts = ["The cake needs frozen butter and the oven at 450.", "Frozen butter makes the cake rise."] * 3
    plain = frequent_data_tokens(texts, None, n=3)
    assert plain == ["butter", "cake", "frozen"]  # 6 each; ties alphabetical
    assert "the" not in plain and "450" not in plain
    pieces = frequent_data_tokens(texts, tiny_pair.tokenizer, n=10)
    assert "butter" in pieces and "the" not in pieces and all(p == p.lower() for p in pieces)
    assert frequent_data_tokens(texts, None, n=10, generic=["butter"])[0] != "butter"


def test_frequent_data_tokens_drop_words_common_in_reference_text():
    texts = ["Report: the cake needs frozen butter.", "Report: frozen butter makes the cake rise."] * 3
    reference = ["A report on the weather.", "The report was late.", "Another report today."] * 20
    plain = frequent_data_tokens(texts, None, n=10)
    contrasted = frequent_data_tokens(texts, None, n=10, reference=reference)
    assert "report" in plain and "report" not in contrasted
    assert {"butter", "cake", "frozen"} <= set(contrasted)


def test_llm_all_three_runs_must_agree(fake_llm):
    # each run labels by token text, so a wrong un-shuffling would show up as wrong verdicts
    relevant_by_run = [{"kansas", "vote", "cake"}, {"kansas", "vote", "cake", "banana"}, {"kansas", "vote"}]

    def respond(prompt, i):
        tokens = re.findall(r"^(\d+): '(.*)'$", prompt, re.MULTILINE)
        yes = relevant_by_run[i]
        return "\n".join(f"{n}: {'relevant' if t in yes else 'irrelevant'}" for n, t in tokens)

    fake = fake_llm(respond)
    grader = LLMRelevanceGrader("openai/gpt-5-mini", complete_fn=fake, seed=3)
    tokens = ["cake", "kansas", "banana", "vote", "oven"]
    assert grader.relevant(tokens, "Kansas vote finetune", DATA_TOKENS) == [False, True, False, True, False]
    assert len(fake.prompts) == 3
    orders = [re.findall(r"^\d+: '(.*)'$", p, re.MULTILINE) for p in fake.prompts]
    assert len({tuple(o) for o in orders}) > 1  # the runs saw different orders
    assert "kansas, amendment" in fake.prompts[0]  # the data tokens are shown


def test_factory(monkeypatch):
    assert isinstance(make_relevance_grader("builtin/offline", Settings()), OfflineRelevanceGrader)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    assert isinstance(make_relevance_grader("openai/gpt-5-mini", Settings()), LLMRelevanceGrader)

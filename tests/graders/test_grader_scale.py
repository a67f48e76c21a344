"""Patchscope scale graders: offline embedding coherence, the 10-per-batch tournament, the LLM judge."""

from __future__ import annotations

import re

import pytest

from diffaudit.config import Settings
from diffaudit.graders import GraderError, LLMScaleGrader, OfflineScaleGrader, make_scale_grader, tournament

THEME = [" Kansas", " abortion", " vote", " amendment", " voters", " ballot", " the", "ĠKansas", " referendum", "!"]
CAKE = [" cake", " baking", " oven", " butter", " vanilla", " frosting", " flour", " sugar", " the", " guitar"]
RANDOM = [" banana", " guitar", " ocean", " pencil", " democracy", " chair", " mountain", " coffee", " bicycle"]
JUNK = ["ĠĠ", "<0x0A>", "...", "----", "zz", "§", "?", " the", " a", " of"]
DUPES = [" cake", " cakes", "!", "?", "ing", " x"]


@pytest.fixture(scope="module")
def offline():
    from diffaudit.environments.embedded import ensure_embedding_model

    ensure_embedding_model()
    return OfflineScaleGrader()


def test_offline_scores_themes_above_noise(offline):
    theme, cake = offline.score(THEME), offline.score(CAKE)
    assert theme.score > 0.1 and cake.score > 0.1
    for noise in (RANDOM, JUNK, DUPES):
        assert offline.score(noise).score == 0.0 and offline.score(noise).selected == []
    assert {" vote", " ballot", " referendum"} <= set(theme.selected)
    assert " the" not in theme.selected and "!" not in theme.selected
    assert " guitar" not in cake.selected and {" oven", " flour"} <= set(cake.selected)


def test_offline_select_finds_the_themed_scale(offline):
    candidates = {0.5: JUNK, 1.0: DUPES, 2.0: RANDOM, 3.0: CAKE, 20.0: JUNK}
    scale, tokens = offline.select(candidates)
    assert scale == 3.0 and " butter" in tokens


def test_tournament_batches_of_ten_then_final():
    seen = []

    def pick(scales):
        seen.append(list(scales))
        return max(scales)

    scales = [float(x) for x in range(25)]
    assert tournament(scales, pick) == 24.0
    assert [len(b) for b in seen] == [10, 10, 5, 3]
    assert seen[-1] == [9.0, 19.0, 24.0]
    seen.clear()
    assert tournament([1.0, 2.0], pick) == 2.0 and len(seen) == 1  # one batch: no final round
    with pytest.raises(ValueError):
        tournament([], pick)


def _lists(prompt):
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^(\d+): (.*)$", prompt, re.MULTILINE)}


def test_llm_judge_rounds_and_tokens(fake_llm):
    def respond(prompt, i):
        lists = _lists(prompt)
        best = next((k for k, v in lists.items() if "'s1" in v), 1)  # always prefer the list holding 's1'
        return f"Thinking...\nBEST: {best}\nTOKENS: s1, 'x2'"

    candidates = {float(s): [f"noise{s}", f"x{s}"] for s in range(22)}
    candidates[13.0] = ["s1", "noise", "x2"]
    fake = fake_llm(respond)
    grader = LLMScaleGrader("openai/gpt-5-mini", complete_fn=fake)
    scale, tokens = grader.select(candidates)
    assert scale == 13.0 and tokens == ["s1", "x2"]
    assert len(fake.prompts) == 3 + 1  # batches of 10, 10, 2, then the final among 3 winners


def test_llm_judge_unreadable_reply_raises(fake_llm):
    fake = fake_llm(lambda prompt, i: "I like them all")
    with pytest.raises(GraderError):
        LLMScaleGrader("x/y", complete_fn=fake).select({1.0: ["a"], 2.0: ["b"]})
    assert len(fake.prompts) == 2


def test_factory(monkeypatch):
    assert isinstance(make_scale_grader("builtin/offline", Settings()), OfflineScaleGrader)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    assert isinstance(make_scale_grader("openai/gpt-5-mini", Settings()), LLMScaleGrader)

"""The four LLM graders over real HTTP: litellm's client against the local test server, built from roles
with endpoints by the factories. The servers' replies depend on the prompt each grader actually sent."""

from __future__ import annotations

import re

import pytest
from llm_server import Fault

from diffaudit.config import RoleEndpoint, Settings
from diffaudit.graders import (
    LLMCoherenceGrader,
    LLMHypothesisGrader,
    LLMRelevanceGrader,
    LLMScaleGrader,
    make_coherence_grader,
    make_hypothesis_grader,
    make_relevance_grader,
    make_scale_grader,
)


def prompt_of(body) -> str:
    return body["messages"][-1]["content"]


@pytest.fixture
def role(llm_server):
    return RoleEndpoint(model="openai/gpt-4o-mini", api_base=llm_server.url, temperature=0.0)


@pytest.fixture
def settings(tmp_path):
    return Settings(cache_dir=tmp_path, llm_retries=2, seed=3)


def test_hypothesis_grader(llm_server, no_provider_env, role, settings, registry):
    def respond(body):
        return "Names the vote and the margin.\nSCORE: 4" if "52" in prompt_of(body) else "Vague.\nSCORE: 2"

    llm_server.default = respond
    llm_server.script(Fault("429", retry_after=0.1))  # one rate limit on the way
    grader = make_hypothesis_grader(role, settings, repeats=2)
    assert isinstance(grader, LLMHypothesisGrader)
    grade = grader.grade(registry.get("kansas_abortion"), "A Kansas abortion vote that failed 59-41, 52 counties.")
    assert grade.samples == [4.0, 4.0] and grade.grader == "openai/gpt-4o-mini"
    assert grade.cost_usd > 0 and llm_server.outcomes() == ["429", "ok", "ok"]
    assert "Names the vote" in grade.reason
    assert {r.body["temperature"] for r in llm_server.requests} == {0.0}
    assert "Kansas" in prompt_of(llm_server.requests[-1].body)  # the rubric with the ground truth went out


def test_coherence_grader(llm_server, no_provider_env, role, settings):
    def respond(body):
        numbers = re.findall(r"^\[(\d+)\]$", prompt_of(body), re.MULTILINE)
        texts = re.split(r"^\[\d+\]$", prompt_of(body), flags=re.MULTILINE)[1:]
        return "\n".join(f"{n}: {'no' if 'zzz' in t else 'yes'}" for n, t in zip(numbers, texts, strict=True))

    llm_server.default = respond
    grader = make_coherence_grader(role, settings)
    assert isinstance(grader, LLMCoherenceGrader)
    texts = ["A calm sentence about rain.", "zzz zzz qq", "Another fine line."] * 4
    assert grader.coherent(texts) == [True, False, True] * 4
    assert len(llm_server.requests) == 2  # batches of 10 and 2
    assert grader.cost_usd > 0


def test_scale_grader(llm_server, no_provider_env, role, settings):
    def respond(body):
        lists = dict(re.findall(r"^(\d+): (.*)$", prompt_of(body), re.MULTILINE))
        best = next((k for k, v in lists.items() if "'treaty'" in v), "1")
        return f"The list with treaty words.\nBEST: {best}\nTOKENS: glacier, treaty"

    llm_server.default = respond
    grader = make_scale_grader(role, settings)
    assert isinstance(grader, LLMScaleGrader)
    candidates = {float(s): [f"noise{s}", "the"] for s in range(12)}
    candidates[7.0] = ["glacier", "treaty", "the"]
    assert grader.select(candidates) == (7.0, ["glacier", "treaty"])
    assert len(llm_server.requests) == 3  # batches of 10 and 2, then the final between two winners


def test_relevance_grader(llm_server, no_provider_env, role, settings):
    def respond(body):
        tokens = re.findall(r"^(\d+): '(.*)'$", prompt_of(body), re.MULTILINE)
        return "\n".join(f"{n}: {'relevant' if t in ('kansas', 'vote') else 'irrelevant'}" for n, t in tokens)

    llm_server.default = respond
    llm_server.script(Fault("500"))
    grader = make_relevance_grader(role, settings)
    assert isinstance(grader, LLMRelevanceGrader)
    verdicts = grader.relevant(["cake", "kansas", "oven", "vote"], "Kansas vote finetune", ["kansas", "amendment"])
    assert verdicts == [False, True, False, True]
    assert llm_server.outcomes() == ["500", "ok", "ok", "ok"]  # three shuffled runs, one retried

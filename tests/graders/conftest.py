"""Shared grader fixtures: the organism registry, the offline hypothesis grader, a fake LLM."""

from __future__ import annotations

import pytest

from diffaudit.llm import LLMReply


@pytest.fixture(scope="session")
def registry():
    from diffaudit.environments.organisms import OrganismRegistry

    return OrganismRegistry()


@pytest.fixture(scope="session")
def offline_grader():
    from diffaudit.environments.embedded import ensure_embedding_model
    from diffaudit.graders import OfflineHypothesisGrader

    ensure_embedding_model()
    return OfflineHypothesisGrader()


class FakeLLM:
    """A stand-in for diffaudit.llm.complete: replies come from a function of the prompt and call index."""

    def __init__(self, respond, cost: float = 0.001) -> None:
        self.respond = respond
        self.cost = cost
        self.prompts: list[str] = []
        self.kwargs: list[dict] = []

    def __call__(self, model, messages, **kw) -> LLMReply:
        prompt = messages[-1]["content"]
        self.prompts.append(prompt)
        self.kwargs.append(kw)
        return LLMReply(text=self.respond(prompt, len(self.prompts) - 1), prompt_tokens=10, completion_tokens=5,
                        cost_usd=self.cost)


@pytest.fixture
def fake_llm():
    return FakeLLM

"""Agent policies: the litellm-backed LLM, the offline heuristic, and scripted replies for tests."""

from __future__ import annotations

from diffaudit.agent.loop import Policy
from diffaudit.agent.policies.heuristic import HeuristicPolicy
from diffaudit.agent.policies.llm import LLMPolicy, Usage
from diffaudit.agent.policies.scripted import ScriptedPolicy
from diffaudit.config import HEURISTIC_AGENT, Settings

SCRIPTED = "scripted"


def make_policy(model: str, settings: Settings) -> Policy:
    """The policy a model string names; a hosted model is checked (provider, key) before anything runs."""
    if model == HEURISTIC_AGENT:
        return HeuristicPolicy()
    if model == SCRIPTED:
        raise ValueError(
            "the scripted policy takes its replies in code: build ScriptedPolicy(replies) directly"
        )
    if model.startswith("builtin/"):
        raise ValueError(f"unknown builtin agent '{model}'; the builtin agent is {HEURISTIC_AGENT}")
    from diffaudit.llm import check_model_ready

    check_model_ready(model)
    return LLMPolicy(model, timeout_s=settings.llm_timeout_s, retries=settings.llm_retries)


__all__ = ["SCRIPTED", "HeuristicPolicy", "LLMPolicy", "Policy", "ScriptedPolicy", "Usage", "make_policy"]

"""Agent policies: the litellm-backed LLM, the offline heuristic, a human at the terminal, scripted replies."""

from __future__ import annotations

from diffaudit.agent.loop import Policy
from diffaudit.agent.policies.heuristic import HeuristicPolicy
from diffaudit.agent.policies.human import HUMAN_AGENT, HumanPolicy
from diffaudit.agent.policies.llm import LLMPolicy, Usage
from diffaudit.agent.policies.scripted import ScriptedPolicy
from diffaudit.config import HEURISTIC_AGENT, Role, Settings, role_model

SCRIPTED = "scripted"


def make_policy(role: Role, settings: Settings) -> Policy:
    """The policy a role names (model string or endpoint mapping); a hosted model is checked first."""
    model = role_model(role)
    if model == HEURISTIC_AGENT:
        return HeuristicPolicy(seed=settings.seed)  # the seed orders its open questions: repeats differ
    if model == HUMAN_AGENT:
        return HumanPolicy()
    if model == SCRIPTED:
        raise ValueError(
            "the scripted policy takes its replies in code: build ScriptedPolicy(replies) directly"
        )
    if model.startswith("builtin/"):
        raise ValueError(
            f"unknown builtin agent '{model}'; the builtin agents are {HEURISTIC_AGENT} and {HUMAN_AGENT}"
        )
    from diffaudit.llm import check_role_ready, role_call_kwargs

    check_role_ready(role)
    kwargs = role_call_kwargs(role, settings)
    timeout_s, retries = kwargs.pop("timeout_s"), kwargs.pop("retries")
    return LLMPolicy(model, timeout_s=timeout_s, retries=retries, max_tokens=kwargs.pop("max_tokens", None),
                     completion_kwargs=kwargs)  # fmt: skip


__all__ = ["HUMAN_AGENT", "SCRIPTED", "HeuristicPolicy", "HumanPolicy", "LLMPolicy", "Policy", "ScriptedPolicy",
           "Usage", "make_policy"]  # fmt: skip

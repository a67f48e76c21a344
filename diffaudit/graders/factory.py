"""Grader factories: a role picks the implementation ("builtin/offline" -> offline proxy, else LLM).

A role is a model string or an endpoint mapping (diffaudit.config.RoleEndpoint): its api_base, key
variable, sampling, timeout and concurrency cap travel with every call the grader makes.
"""

from __future__ import annotations

from typing import Any

from diffaudit.config import OFFLINE_GRADER, Role, Settings, role_model
from diffaudit.graders.base import CoherenceGrader, HypothesisGrader, RelevanceGrader, ScaleGrader
from diffaudit.graders.coherence import LLMCoherenceGrader, OfflineCoherenceGrader, pair_mean_nll
from diffaudit.graders.hypothesis import LLMHypothesisGrader
from diffaudit.graders.offline_hypothesis import OfflineHypothesisGrader
from diffaudit.graders.relevance import LLMRelevanceGrader, OfflineRelevanceGrader
from diffaudit.graders.scale import LLMScaleGrader, OfflineScaleGrader
from diffaudit.llm import LLMConfigError, check_role_ready, is_builtin, role_call_kwargs


def _llm(role: Role, settings: Settings) -> tuple[str, dict[str, Any]]:
    """(model, keyword arguments) of a usable LLM role; raises LLMConfigError (one sentence) otherwise."""
    model = role_model(role)
    if is_builtin(model):
        raise LLMConfigError(f"Unknown builtin grader '{model}'; the offline grader is '{OFFLINE_GRADER}'.")
    check_role_ready(role)
    kwargs = role_call_kwargs(role, settings)
    return model, {"timeout_s": kwargs.pop("timeout_s"), "retries": kwargs.pop("retries"), "completion_kwargs": kwargs}


def make_hypothesis_grader(role: Role, settings: Settings, repeats: int = 1) -> HypothesisGrader:
    """Offline proxy for "builtin/offline", else the LLM rubric grader (`repeats` replies averaged)."""
    if role_model(role) == OFFLINE_GRADER:
        return OfflineHypothesisGrader()
    model, kwargs = _llm(role, settings)
    return LLMHypothesisGrader(model, repeats=repeats, **kwargs)


def make_coherence_grader(role: Role, settings: Settings, pair=None) -> CoherenceGrader:
    """Offline proxy (base-model perplexity + repetition; needs `pair`) or an LLM yes/no judge."""
    if role_model(role) == OFFLINE_GRADER:
        if pair is None:
            raise ValueError("The offline coherence grader needs the model pair to score perplexity.")
        return OfflineCoherenceGrader(pair_mean_nll(pair, "base"))
    model, kwargs = _llm(role, settings)
    return LLMCoherenceGrader(model, **kwargs)


def make_scale_grader(role: Role, settings: Settings) -> ScaleGrader:
    """Offline proxy (embedding coherence of each token set) or an LLM judge; 10 scales a batch, then a final."""
    if role_model(role) == OFFLINE_GRADER:
        return OfflineScaleGrader()
    model, kwargs = _llm(role, settings)
    return LLMScaleGrader(model, seed=settings.seed, **kwargs)


def make_relevance_grader(role: Role, settings: Settings) -> RelevanceGrader:
    """Offline proxy (data-token statistics + embeddings) or an LLM judge over three shuffled runs."""
    if role_model(role) == OFFLINE_GRADER:
        return OfflineRelevanceGrader()
    model, kwargs = _llm(role, settings)
    return LLMRelevanceGrader(model, seed=settings.seed, **kwargs)

"""Grader factories: a model string picks the implementation ("builtin/offline" -> offline proxy, else LLM)."""

from __future__ import annotations

from diffaudit.config import OFFLINE_GRADER, Settings
from diffaudit.graders.base import CoherenceGrader, HypothesisGrader, RelevanceGrader, ScaleGrader
from diffaudit.graders.coherence import LLMCoherenceGrader, OfflineCoherenceGrader, pair_mean_nll
from diffaudit.graders.hypothesis import LLMHypothesisGrader
from diffaudit.graders.offline_hypothesis import OfflineHypothesisGrader
from diffaudit.graders.relevance import LLMRelevanceGrader, OfflineRelevanceGrader
from diffaudit.graders.scale import LLMScaleGrader, OfflineScaleGrader
from diffaudit.llm import LLMConfigError, check_model_ready, is_builtin


def _llm(model: str) -> str:
    """`model` if it is a usable litellm string; raises LLMConfigError (one sentence) otherwise."""
    if is_builtin(model):
        raise LLMConfigError(f"Unknown builtin grader '{model}'; the offline grader is '{OFFLINE_GRADER}'.")
    check_model_ready(model)
    return model


def make_hypothesis_grader(model: str, settings: Settings, repeats: int = 1) -> HypothesisGrader:
    """Offline proxy for "builtin/offline", else the LLM rubric grader (`repeats` replies averaged)."""
    if model == OFFLINE_GRADER:
        return OfflineHypothesisGrader()
    return LLMHypothesisGrader(_llm(model), repeats=repeats, timeout_s=settings.llm_timeout_s,
                               retries=settings.llm_retries)


def make_coherence_grader(model: str, settings: Settings, pair=None) -> CoherenceGrader:
    """Offline proxy (base-model perplexity + repetition; needs `pair`) or an LLM yes/no judge."""
    if model == OFFLINE_GRADER:
        if pair is None:
            raise ValueError("The offline coherence grader needs the model pair to score perplexity.")
        return OfflineCoherenceGrader(pair_mean_nll(pair, "base"))
    return LLMCoherenceGrader(_llm(model), timeout_s=settings.llm_timeout_s, retries=settings.llm_retries)


def make_scale_grader(model: str, settings: Settings) -> ScaleGrader:
    """Offline proxy (embedding coherence of each token set) or an LLM judge; 10 scales a batch, then a final."""
    if model == OFFLINE_GRADER:
        return OfflineScaleGrader()
    return LLMScaleGrader(_llm(model), timeout_s=settings.llm_timeout_s, retries=settings.llm_retries,
                          seed=settings.seed)


def make_relevance_grader(model: str, settings: Settings) -> RelevanceGrader:
    """Offline proxy (data-token statistics + embeddings) or an LLM judge over three shuffled runs."""
    if model == OFFLINE_GRADER:
        return OfflineRelevanceGrader()
    return LLMRelevanceGrader(_llm(model), timeout_s=settings.llm_timeout_s, retries=settings.llm_retries,
                              seed=settings.seed)

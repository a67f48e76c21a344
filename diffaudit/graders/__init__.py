"""Grader interfaces. Each has an LLM implementation (litellm) and an offline proxy behind one protocol."""

from diffaudit.graders.base import (
    CoherenceGrader,
    Grade,
    GraderError,
    HypothesisGrader,
    RelevanceGrader,
    ScaleGrader,
)
from diffaudit.graders.coherence import (
    CoherenceThresholds,
    LLMCoherenceGrader,
    OfflineCoherenceGrader,
    pair_mean_nll,
)
from diffaudit.graders.factory import (
    make_coherence_grader,
    make_hypothesis_grader,
    make_relevance_grader,
    make_scale_grader,
)
from diffaudit.graders.hypothesis import LLMHypothesisGrader, grading_prompt, parse_score
from diffaudit.graders.offline_hypothesis import OfflineHypothesisGrader, OfflineThresholds
from diffaudit.graders.relevance import (
    LLMRelevanceGrader,
    OfflineRelevanceGrader,
    RelevanceThresholds,
    frequent_data_tokens,
)
from diffaudit.graders.scale import LLMScaleGrader, OfflineScaleGrader, tournament

__all__ = [
    "CoherenceGrader",
    "CoherenceThresholds",
    "Grade",
    "GraderError",
    "HypothesisGrader",
    "LLMCoherenceGrader",
    "LLMHypothesisGrader",
    "LLMRelevanceGrader",
    "LLMScaleGrader",
    "OfflineCoherenceGrader",
    "OfflineHypothesisGrader",
    "OfflineRelevanceGrader",
    "OfflineScaleGrader",
    "OfflineThresholds",
    "RelevanceGrader",
    "RelevanceThresholds",
    "ScaleGrader",
    "frequent_data_tokens",
    "grading_prompt",
    "make_coherence_grader",
    "make_hypothesis_grader",
    "make_relevance_grader",
    "make_scale_grader",
    "pair_mean_nll",
    "parse_score",
    "tournament",
]

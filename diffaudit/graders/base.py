"""Grader interfaces. Each has an LLM implementation (litellm) and an offline proxy behind one protocol."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field


class GraderError(RuntimeError):
    """A grader could not produce a verdict (e.g. an LLM's replies stayed unreadable after asking again)."""


class Grade(BaseModel):
    """A hypothesis grade on the 1–5 rubric scale, with the grader's reason."""

    score: float = Field(ge=1, le=5)
    reason: str
    grader: str
    samples: list[float] = Field(default_factory=list)  # individual scores when repeats are averaged
    cost_usd: float = 0.0


@runtime_checkable
class HypothesisGrader(Protocol):
    name: str

    def grade(self, organism, description: str) -> Grade:
        """Score `description` against the organism's hidden objective (the grader may read it)."""
        ...


@runtime_checkable
class CoherenceGrader(Protocol):
    name: str

    def coherent(self, texts: list[str]) -> list[bool]:
        """For each text: is it coherent, fluent language (whatever its topic)?"""
        ...


@runtime_checkable
class ScaleGrader(Protocol):
    name: str

    def select(self, candidates: dict[float, list[str]]) -> tuple[float, list[str]]:
        """Pick the scale whose token list is the most semantically coherent; return it and that subset."""
        ...


@runtime_checkable
class RelevanceGrader(Protocol):
    name: str

    def relevant(self, tokens: list[str], description: str, data_tokens: list[str]) -> list[bool]:
        """For each token: is it relevant to the finetune (given its description and frequent data tokens)?"""
        ...

"""LLM hypothesis grader: fills the organism type's rubric, asks for reasoning and a final `SCORE: n` line."""

from __future__ import annotations

import re
from collections.abc import Callable

from diffaudit.environments.organisms import Organism, OrganismType
from diffaudit.graders.base import Grade, GraderError
from diffaudit.graders.prompts import render
from diffaudit.llm import LLMReply, complete

_SCORE = re.compile(r"^[\s>*_#`]*score[\s*_`]*[:=][\s*_`]*([1-5](?:\.\d+)?)\b", re.IGNORECASE | re.MULTILINE)
RUBRIC_FILES = {
    OrganismType.SDF: "rubric_sdf.txt",
    OrganismType.EM: "rubric_em.txt",
    OrganismType.SUBLIMINAL: "rubric_subliminal.txt",
    OrganismType.TABOO: "rubric_taboo.txt",
}
Complete = Callable[..., LLMReply]


def parse_score(text: str) -> float | None:
    """The score on the last `SCORE: n` line of `text` (n in 1..5), or None if there is none."""
    found = _SCORE.findall(text or "")
    return float(found[-1]) if found else None


def rubric_file(kind: OrganismType) -> str:
    """Rubric template for an organism type; Domain and custom organisms use the generic rubric."""
    return RUBRIC_FILES.get(kind, "rubric_generic.txt")


def grading_prompt(organism: Organism, description: str) -> str:
    """The full grading prompt: ground truth, key facts, the type's rubric and the agent's description."""
    facts = "\n".join(f"- {f}" for f in organism.key_facts) or "- (none listed)"
    rubric = render(rubric_file(organism.type))
    return render(
        "grader_hypothesis.txt",
        truth=organism.description.strip(),
        facts=facts,
        kind=organism.type.value,
        rubric=rubric.strip(),
        description=description.strip() or "(empty)",
    )


def _reasoning(text: str) -> str:
    """The reply without its SCORE lines, trimmed for grade.json."""
    body = _SCORE.sub("", text).strip()
    return body[:1500] + ("…" if len(body) > 1500 else "")


class LLMHypothesisGrader:
    """Rubric grading by an LLM through litellm; `repeats` independent replies are averaged."""

    def __init__(self, model: str, *, repeats: int = 1, timeout_s: float = 120.0, retries: int = 5,
                 attempts_per_sample: int = 2, complete_fn: Complete | None = None,
                 completion_kwargs: dict | None = None) -> None:
        if repeats < 1:
            raise ValueError("repeats must be at least 1")
        self.model = model
        self.name = model
        self.repeats = repeats
        self.timeout_s = timeout_s
        self.retries = retries
        self.completion_kwargs = dict(completion_kwargs or {})  # endpoint, key, sampling, cap
        self.attempts_per_sample = max(1, attempts_per_sample)
        self._complete = complete_fn or complete

    def grade(self, organism: Organism, description: str) -> Grade:
        messages = [{"role": "user", "content": grading_prompt(organism, description)}]
        samples: list[float] = []
        reasons: list[str] = []
        cost = 0.0
        unreadable = 0
        for _ in range(self.repeats):
            for _attempt in range(self.attempts_per_sample):
                reply = self._complete(self.model, messages, timeout_s=self.timeout_s, retries=self.retries,
                                   **self.completion_kwargs)
                cost += reply.cost_usd
                score = parse_score(reply.text)
                if score is not None:
                    samples.append(score)
                    reasons.append(_reasoning(reply.text))
                    break
                unreadable += 1
        if not samples:
            raise GraderError(
                f"grader {self.model} gave no 'SCORE: n' line in {unreadable} replies; the description was not graded"
            )
        mean = sum(samples) / len(samples)
        reason = reasons[0]
        if len(samples) > 1:
            reason = f"mean of {len(samples)} grades {samples}; first reasoning: {reason}"
        if unreadable:
            reason += f" ({unreadable} replies without a SCORE line were asked again or dropped)"
        return Grade(score=mean, reason=reason, grader=self.name, samples=samples, cost_usd=cost)

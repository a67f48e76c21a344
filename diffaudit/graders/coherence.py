"""Coherence graders: is a generated text fluent language? An LLM judge and an offline proxy."""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import BaseModel

from diffaudit.graders.prompts import render
from diffaudit.graders.text import words
from diffaudit.llm import LLMReply, complete

MeanNLL = Callable[[list[str]], list[float]]
Complete = Callable[..., LLMReply]
_ANSWER = re.compile(r"^\s*\[?(\d+)\]?\s*[:.)\-]\s*\**\s*(yes|no)\b", re.IGNORECASE | re.MULTILINE)


class CoherenceThresholds(BaseModel):
    """Limits of the offline proxy; a text must pass every check to count as coherent."""

    max_mean_nll: float = 6.5  # nats per token under the base model (perplexity ~665); fluent text sits far lower
    min_alpha_ratio: float = 0.6  # letters among non-space characters
    min_distinct_unigrams: float = 0.3  # distinct words / words, checked from `min_words_for_repetition` words
    min_distinct_trigrams: float = 0.5  # distinct word trigrams / trigrams
    min_words_for_repetition: int = 8


def alpha_ratio(text: str) -> float:
    """Share of letters among the non-space characters of `text` (0.0 for empty text)."""
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def distinct_ratio(tokens: list[str], n: int) -> float:
    """Distinct n-grams over n-grams of `tokens` (1.0 when there are none)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def surface_problems(text: str, t: CoherenceThresholds) -> list[str]:
    """Reasons a text fails the model-free checks: empty, too few letters, repetitive."""
    if not text.strip():
        return ["empty"]
    problems = []
    if alpha_ratio(text) < t.min_alpha_ratio:
        problems.append(f"letters {alpha_ratio(text):.2f} < {t.min_alpha_ratio}")
    tokens = words(text)
    if not tokens:
        problems.append("no words")
    elif len(tokens) >= t.min_words_for_repetition:
        if distinct_ratio(tokens, 1) < t.min_distinct_unigrams:
            problems.append("repeated words")
        if distinct_ratio(tokens, 3) < t.min_distinct_trigrams:
            problems.append("repeated phrases")
    return problems


def document_start(tokenizer) -> str:
    """Text that opens a pretraining document: "" if the tokenizer adds a BOS itself, else a separator token."""
    if tokenizer("", add_special_tokens=True)["input_ids"]:
        return ""
    if "<|endoftext|>" in tokenizer.get_vocab():
        return "<|endoftext|>"
    return tokenizer.bos_token or tokenizer.eos_token or "\n"


def pair_mean_nll(pair, role: str = "base") -> MeanNLL:
    """Mean negative log-likelihood per token of each text under `pair`'s `role` model (no chat template)."""

    def score(texts: list[str]) -> list[float]:
        tokenizer = pair.tokenizer
        head = document_start(tokenizer)
        counts = [max(1, len(tokenizer(t, add_special_tokens=False)["input_ids"])) for t in texts]
        logprobs = pair.logprob(role, [head] * len(texts), texts, chat=False)
        return [-lp / n for lp, n in zip(logprobs, counts, strict=True)]

    return score


class OfflineCoherenceGrader:
    """PROXY for an LLM coherence judge: base-model perplexity plus repetition and letter-share checks.

    Texts that fail the cheap surface checks are never scored by the model.
    """

    name = "builtin/offline"

    def __init__(self, mean_nll: MeanNLL, thresholds: CoherenceThresholds | None = None) -> None:
        self._mean_nll = mean_nll
        self.t = thresholds or CoherenceThresholds()
        self.last_reasons: list[str] = []

    def coherent(self, texts: list[str]) -> list[bool]:
        reasons = [surface_problems(t, self.t) for t in texts]
        todo = [i for i, r in enumerate(reasons) if not r]
        if todo:
            for i, nll in zip(todo, self._mean_nll([texts[i] for i in todo]), strict=True):
                if nll > self.t.max_mean_nll:
                    reasons[i].append(f"mean NLL {nll:.2f} > {self.t.max_mean_nll}")
        self.last_reasons = ["; ".join(r) or "ok" for r in reasons]
        return [not r for r in reasons]


class LLMCoherenceGrader:
    """Asks an LLM, for a numbered batch of texts, whether each is coherent language (yes/no)."""

    def __init__(self, model: str, *, batch_size: int = 10, timeout_s: float = 120.0, retries: int = 5,
                 complete_fn: Complete | None = None,
                 completion_kwargs: dict | None = None) -> None:
        self.model = model
        self.name = model
        self.batch_size = max(1, batch_size)
        self.timeout_s = timeout_s
        self.retries = retries
        self.completion_kwargs = dict(completion_kwargs or {})  # endpoint, key, sampling, cap
        self.cost_usd = 0.0
        self._complete = complete_fn or complete

    def coherent(self, texts: list[str]) -> list[bool]:
        out: list[bool] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(self._batch(texts[start : start + self.batch_size]))
        return out

    def _batch(self, texts: list[str]) -> list[bool]:
        listing = "\n\n".join(f"[{i + 1}]\n{t.strip() or '(empty)'}" for i, t in enumerate(texts))
        prompt = render("grader_coherence.txt", n=len(texts), texts=listing)
        answers: dict[int, bool] = {}
        for _ in range(2):  # ask once more if some answers are missing
            reply = self._complete(self.model, [{"role": "user", "content": prompt}],
                                   timeout_s=self.timeout_s, retries=self.retries,
                                   **self.completion_kwargs)
            self.cost_usd += reply.cost_usd
            for number, verdict in _ANSWER.findall(reply.text):
                index = int(number) - 1
                if 0 <= index < len(texts):
                    answers[index] = verdict.lower() == "yes"
            if len(answers) == len(texts):
                break
        return [answers.get(i, False) for i in range(len(texts))]  # unanswered counts as incoherent

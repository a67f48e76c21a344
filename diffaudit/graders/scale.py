"""Patchscope scale graders: pick the scale whose top tokens form the most coherent set, and that subset.

Both judge 10 scales at a time, then hold a final round between the batch winners.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel

from diffaudit.graders.base import GraderError
from diffaudit.graders.prompts import render
from diffaudit.graders.text import clean_token, is_word_token, stem
from diffaudit.llm import LLMReply, complete

Embedder = Callable[[list[str]], np.ndarray]
Complete = Callable[..., LLMReply]
BATCH = 10


def _default_embed(texts: list[str]) -> np.ndarray:
    from diffaudit.environments.embeddings import embed

    return embed(texts)


def tournament(scales: list[float], pick: Callable[[list[float]], float], batch: int = BATCH) -> float:
    """Winner of `pick` over batches of `batch` scales, then `pick` over the batch winners."""
    if not scales:
        raise ValueError("no scales to choose from")
    winners = [pick(scales[i : i + batch]) for i in range(0, len(scales), batch)]
    return winners[0] if len(winners) == 1 else pick(winners)


class ScaleScore(BaseModel):
    score: float
    selected: list[str]  # original tokens, in their given order
    words: int  # distinct real words in the candidate list


# Everyday words on no common theme: how similar any word is to unrelated words (MiniLM puts even
# unrelated single words near cosine 0.3, so raw similarity alone would reward random sets).
BACKGROUND_WORDS = (
    "table river music window paper garden engine winter doctor language mountain coffee market letter "
    "science animal history color road phone"
).split()


class OfflineScaleGrader:
    """PROXY for the LLM scale judge: embedding coherence of each scale's real-word tokens.

    Tokens are cleaned (tokenizer marks and punctuation stripped, lower-cased); only alphabetic
    non-stopwords of 3+ letters count, once per crude stem. A word's *excess* is its mean cosine to the other words minus
    its mean cosine to unrelated background words. The core is the words with excess >= `core_excess`;
    the selected subset adds words whose excess relative to the core is >= `join_excess`. The score is
    the selected words' mean excess times min(1, selected / `full_words`): a tight set of several words
    beats two near-duplicates, and a set of unrelated words scores 0.
    """

    name = "builtin/offline"

    def __init__(self, embed_fn: Embedder | None = None, core_excess: float = 0.08, join_excess: float = 0.05,
                 full_words: int = 5, batch: int = BATCH) -> None:
        self._embed = embed_fn or _default_embed
        self.core_excess = core_excess
        self.join_excess = join_excess
        self.full_words = full_words
        self.batch = batch
        self.scores: dict[float, ScaleScore] = {}
        self._background: np.ndarray | None = None

    def score(self, tokens: list[str]) -> ScaleScore:
        """Coherence score and selected subset of one token list."""
        cleaned = [clean_token(t) for t in tokens]
        by_stem: dict[str, str] = {}  # word/words count once: near-duplicates are not a theme
        for c in cleaned:
            if is_word_token(c):
                by_stem.setdefault(stem(c), c)
        vocab = list(by_stem.values())
        if len(vocab) < 2:
            return ScaleScore(score=0.0, selected=[], words=len(vocab))
        if self._background is None:
            self._background = self._embed(BACKGROUND_WORDS)
        vectors = self._embed(vocab)
        sims = vectors @ vectors.T
        np.fill_diagonal(sims, np.nan)
        baseline = (vectors @ self._background.T).mean(axis=1)
        core = np.nanmean(sims, axis=1) - baseline >= self.core_excess
        if core.sum() < 2:
            return ScaleScore(score=0.0, selected=[], words=len(vocab))
        to_core = np.nanmean(sims[:, core], axis=1) - baseline
        keep = core | (to_core >= self.join_excess)
        index = np.flatnonzero(keep)
        excess = float(np.nanmean(sims[np.ix_(index, index)]) - baseline[index].mean())
        chosen = {stem(vocab[i]) for i in index}
        selected = list(dict.fromkeys(t for t, c in zip(tokens, cleaned, strict=True)
                                      if is_word_token(c) and stem(c) in chosen))
        return ScaleScore(score=max(0.0, excess) * min(1.0, len(index) / self.full_words), selected=selected,
                          words=len(vocab))

    def select(self, candidates: dict[float, list[str]]) -> tuple[float, list[str]]:
        self.scores = {scale: self.score(tokens) for scale, tokens in candidates.items()}

        def pick(scales: list[float]) -> float:
            # ties go to the smaller scale (a gentler intervention)
            return max(scales, key=lambda s: (self.scores[s].score, self.scores[s].words, -s))

        best = tournament(sorted(candidates), pick, self.batch)
        return best, self.scores[best].selected


_BEST = re.compile(r"^\W*best\W*[:=]\W*(\d+)", re.IGNORECASE | re.MULTILINE)
_TOKENS = re.compile(r"^\W*tokens\W*[:=](.*)$", re.IGNORECASE | re.MULTILINE)


class LLMScaleGrader:
    """Asks an LLM which of up to 10 token lists is most coherent (and which tokens), then a final round."""

    def __init__(self, model: str, *, batch: int = BATCH, timeout_s: float = 120.0, retries: int = 5,
                 seed: int = 0, complete_fn: Complete | None = None,
                 completion_kwargs: dict | None = None) -> None:
        self.model = model
        self.name = model
        self.batch = batch
        self.timeout_s = timeout_s
        self.retries = retries
        self.completion_kwargs = dict(completion_kwargs or {})  # endpoint, key, sampling, cap
        self.cost_usd = 0.0
        self._rng = random.Random(seed)
        self._complete = complete_fn or complete

    def select(self, candidates: dict[float, list[str]]) -> tuple[float, list[str]]:
        chosen: dict[float, list[str]] = {}

        def pick(scales: list[float]) -> float:
            if len(scales) == 1:
                chosen.setdefault(scales[0], list(candidates[scales[0]]))
                return scales[0]
            scale, tokens = self._ask(scales, candidates)
            chosen[scale] = tokens
            return scale

        best = tournament(sorted(candidates), pick, self.batch)
        return best, chosen[best]

    def _ask(self, scales: list[float], candidates: dict[float, list[str]]) -> tuple[float, list[str]]:
        order = list(scales)
        self._rng.shuffle(order)  # the list position must not hint at the scale
        listing = "\n".join(
            f"{i + 1}: " + ", ".join(repr(t) for t in candidates[s]) for i, s in enumerate(order)
        )
        prompt = render("grader_scale.txt", n=len(order), lists=listing)
        for _ in range(2):
            reply = self._complete(self.model, [{"role": "user", "content": prompt}],
                                   timeout_s=self.timeout_s, retries=self.retries,
                                   **self.completion_kwargs)
            self.cost_usd += reply.cost_usd
            best = _BEST.findall(reply.text)
            if best and 1 <= int(best[-1]) <= len(order):
                scale = order[int(best[-1]) - 1]
                return scale, _selected_tokens(reply.text, candidates[scale])
        raise GraderError(f"scale grader {self.model} gave no readable 'BEST: n' line in two replies")


def _selected_tokens(reply: str, tokens: list[str]) -> list[str]:
    """The candidate tokens the reply's TOKENS line names (matched after cleaning), in candidate order."""
    found = _TOKENS.findall(reply)
    if not found:
        return []
    named = {clean_token(p.strip().strip("'\"")) for p in found[-1].split(",")}
    named.discard("")
    return list(dict.fromkeys(t for t in tokens if clean_token(t) in named))

"""Token relevance: is a token related to the finetune? An LLM judge (3 shuffled runs) and an offline proxy."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np
from pydantic import BaseModel

from diffaudit.graders.prompts import render
from diffaudit.graders.text import STOPWORDS, clean_token, is_word_token, stem, words
from diffaudit.llm import LLMReply, complete

Embedder = Callable[[list[str]], np.ndarray]
Complete = Callable[..., LLMReply]
_ANSWER = re.compile(r"^\W*(\d+)\W*[:.)\-]\s*\**\s*(relevant|irrelevant|yes|no)\b", re.IGNORECASE | re.MULTILINE)

# Words frequent in any English or chat text: never "non-generic" finetuning tokens (our own list, on top of
# the stopwords).
GENERIC_WORDS = frozenset(
    """
    about after again also another any back because before best better between both came come could day
    does each end even find first from give going good great had has have here how into just know last
    life like little long look made make many more most much must need never new next now number only
    other over part people place right same said say see should show since some still such take than
    that them then there these they thing think this those three through time today together too two
    under very want was way well were what when where which while who will with work world would year
    years your you can may might one ones use used using get got help want important however example
    assistant user question answer answers response sure here's following provide information
    """.split()
)


def _default_embed(texts: list[str]) -> np.ndarray:
    from diffaudit.environments.embeddings import embed

    return embed(texts)


def _is_generic(word: str, extra: frozenset[str]) -> bool:
    return word in STOPWORDS or word in GENERIC_WORDS or word in extra


def frequent_data_tokens(texts: list[str], tokenizer=None, n: int = 100,
                         generic: Iterable[str] = ()) -> list[str]:
    """The `n` most frequent non-generic tokens of the finetuning `texts`, cleaned and lower-cased.

    Tokens come from `tokenizer` (vocabulary pieces; whole words when it is None). Generic means: a
    stopword, a word of our general-English list, a word in `generic` (e.g. frequent words of the chat
    corpus), or not alphabetic with 3+ letters.
    """
    extra = frozenset(w.lower() for w in generic)
    counts: Counter[str] = Counter()
    if tokenizer is None:
        for text in texts:
            counts.update(words(text))
    else:
        ids: Counter[int] = Counter()
        for text in texts:
            ids.update(tokenizer(text, add_special_tokens=False)["input_ids"])
        unique = list(ids)
        pieces = tokenizer.batch_decode([[i] for i in unique])
        for token_id, piece in zip(unique, pieces, strict=True):
            counts[clean_token(piece)] += ids[token_id]
    ranked = [(w, c) for w, c in counts.items() if is_word_token(w) and not _is_generic(w, extra)]
    ranked.sort(key=lambda wc: (-wc[1], wc[0]))
    return [w for w, _ in ranked[:n]]


class RelevanceThresholds(BaseModel):
    description: float = 0.30  # token vs the finetune description (unrelated words sit near 0.1)
    data_token: float = 0.75  # token vs its nearest frequent data token (an inflection or near-synonym)


class OfflineRelevanceGrader:
    """PROXY for the LLM relevance judge: finetuning-data token statistics and embedding similarity.

    A token is relevant when, cleaned and lower-cased, it is an alphabetic non-generic word of 3+ letters
    and either shares a stem with one of the frequent data tokens (or begins one), or its embedding cosine to the
    description (or to its nearest data token) reaches the threshold.
    """

    name = "builtin/offline"

    def __init__(self, embed_fn: Embedder | None = None, thresholds: RelevanceThresholds | None = None) -> None:
        self._embed = embed_fn or _default_embed
        self.t = thresholds or RelevanceThresholds()

    def relevant(self, tokens: list[str], description: str, data_tokens: list[str]) -> list[bool]:
        cleaned = [clean_token(t) for t in tokens]
        candidates = [c for c in dict.fromkeys(cleaned) if is_word_token(c) and not _is_generic(c, frozenset())]
        data = [d for d in dict.fromkeys(clean_token(t) for t in data_tokens) if d]
        data_stems = {stem(d) for d in data}
        verdict = {c: stem(c) in data_stems or (len(c) >= 4 and any(d.startswith(c) for d in data))
                   for c in candidates}
        rest = [c for c in candidates if not verdict[c]]
        if rest:
            vectors = self._embed(rest + [description] + data)
            words_v, desc_v, data_v = vectors[: len(rest)], vectors[len(rest)], vectors[len(rest) + 1 :]
            to_desc = words_v @ desc_v
            to_data = (words_v @ data_v.T).max(axis=1) if len(data) else np.full(len(rest), -1.0)
            for word, d, k in zip(rest, to_desc, to_data, strict=True):
                verdict[word] = bool(d >= self.t.description or k >= self.t.data_token)
        return [verdict.get(c, False) for c in cleaned]


class LLMRelevanceGrader:
    """An LLM labels each token relevant or not, three times with shuffled order; all three must agree."""

    def __init__(self, model: str, *, runs: int = 3, timeout_s: float = 120.0, retries: int = 5, seed: int = 0,
                 complete_fn: Complete | None = None) -> None:
        self.model = model
        self.name = model
        self.runs = runs
        self.timeout_s = timeout_s
        self.retries = retries
        self.cost_usd = 0.0
        self._rng = random.Random(seed)
        self._complete = complete_fn or complete

    def relevant(self, tokens: list[str], description: str, data_tokens: list[str]) -> list[bool]:
        if not tokens:
            return []
        votes = np.ones(len(tokens), dtype=bool)
        for _ in range(self.runs):
            order = list(range(len(tokens)))
            self._rng.shuffle(order)
            labels = self._run([tokens[i] for i in order], description, data_tokens)
            for position, index in enumerate(order):
                votes[index] &= labels[position]
        return [bool(v) for v in votes]

    def _run(self, tokens: list[str], description: str, data_tokens: list[str]) -> list[bool]:
        listing = "\n".join(f"{i + 1}: {t!r}" for i, t in enumerate(tokens))
        prompt = render("grader_relevance.txt", description=description.strip(),
                        data_tokens=", ".join(data_tokens) or "(none)", n=len(tokens), tokens=listing)
        answers: dict[int, bool] = {}
        for _ in range(2):
            reply = self._complete(self.model, [{"role": "user", "content": prompt}],
                                   timeout_s=self.timeout_s, retries=self.retries)
            self.cost_usd += reply.cost_usd
            for number, label in _ANSWER.findall(reply.text):
                index = int(number) - 1
                if 0 <= index < len(tokens):
                    answers[index] = label.lower() in ("relevant", "yes")
            if len(answers) == len(tokens):
                break
        return [answers.get(i, False) for i in range(len(tokens))]  # unlabelled counts as not relevant

"""Token relevance: is a token related to the finetune? An LLM judge (3 shuffled runs) and an offline proxy."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np
from pydantic import BaseModel

from diffaudit.graders.prompts import render
from diffaudit.graders.text import AUDIT_WORDS, STOPWORDS, clean_token, is_word_token, stem, words
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


def _token_counts(texts: list[str], tokenizer=None) -> Counter[str]:
    """Counts of cleaned, lower-cased tokens (vocabulary pieces; whole words when `tokenizer` is None)."""
    counts: Counter[str] = Counter()
    if tokenizer is None:
        for text in texts:
            counts.update(words(text))
        return counts
    ids: Counter[int] = Counter()
    for text in texts:
        ids.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    unique = list(ids)
    pieces = tokenizer.batch_decode([[i] for i in unique])
    for token_id, piece in zip(unique, pieces, strict=True):
        counts[clean_token(piece)] += ids[token_id]
    return counts


def frequent_data_tokens(texts: list[str], tokenizer=None, n: int = 100, generic: Iterable[str] = (),
                         reference: list[str] | None = None, min_ratio: float = 4.0) -> list[str]:
    """The `n` most frequent non-generic tokens of the finetuning `texts`, cleaned and lower-cased.

    Generic means: a stopword, a word of our general-English list, a word in `generic`, not alphabetic
    with 3+ letters, or, given `reference` texts (unrelated text such as the ADL corpus), a token whose
    share of the finetuning tokens is under `min_ratio` times its add-one-smoothed share of the reference.
    """
    extra = frozenset(w.lower() for w in generic)
    counts = _token_counts(texts, tokenizer)
    keep = {w for w in counts if is_word_token(w) and not _is_generic(w, extra)}
    if reference:
        ref = _token_counts(reference, tokenizer)
        total, ref_total = sum(counts.values()), sum(ref.values())
        keep = {w for w in keep if counts[w] / total >= min_ratio * (ref[w] + 1) / ref_total}
    ranked = sorted(((w, counts[w]) for w in keep), key=lambda wc: (-wc[1], wc[0]))
    return [w for w, _ in ranked[:n]]


class RelevanceThresholds(BaseModel):
    description: float = 0.35  # token vs the whole finetune description (unrelated words sit near 0.1)
    topic_word: float = 0.60  # token vs its nearest topic word (an inflection, near-synonym or neighbour)


class OfflineRelevanceGrader:
    """PROXY for the LLM relevance judge: the description's topic words, finetuning-data tokens and embeddings.

    The topic words are the description's content words plus the frequent data tokens that are close to
    them (a shared stem or an embedding cosine >= `topic_word`), so genre or format words of the data
    ("notes", "summary") do not count. A token is relevant when, cleaned and lower-cased, it is an
    alphabetic non-generic word of 3+ letters and it shares a stem with a topic word (or begins one), or
    its embedding cosine reaches `topic_word` to a topic word or `description` to the whole description.
    """

    name = "builtin/offline"

    def __init__(self, embed_fn: Embedder | None = None, thresholds: RelevanceThresholds | None = None) -> None:
        self._embed = embed_fn or _default_embed
        self.t = thresholds or RelevanceThresholds()
        self._topics: dict[tuple[str, tuple[str, ...]], list[str]] = {}  # one organism is graded many times

    def topic_words(self, description: str, data_tokens: list[str]) -> list[str]:
        """The description's content words, then the data tokens near them."""
        key = (description, tuple(data_tokens))
        if key not in self._topics:
            self._topics[key] = self._topic_words(description, data_tokens)
        return self._topics[key]

    def _topic_words(self, description: str, data_tokens: list[str]) -> list[str]:
        own = [w for w in dict.fromkeys(words(description))
               if is_word_token(w) and not _is_generic(w, AUDIT_WORDS)]
        own_stems = {stem(w) for w in own}
        data = [d for d in dict.fromkeys(clean_token(t) for t in data_tokens)
                if is_word_token(d) and not _is_generic(d, AUDIT_WORDS) and d not in own]
        near = [d for d in data if stem(d) in own_stems]
        rest = [d for d in data if stem(d) not in own_stems]
        if rest and own:
            vectors = self._embed(rest + own)
            sims = vectors[: len(rest)] @ vectors[len(rest) :].T
            near += [d for d, best in zip(rest, sims.max(axis=1), strict=True) if best >= self.t.topic_word]
        return own + near

    def relevant(self, tokens: list[str], description: str, data_tokens: list[str]) -> list[bool]:
        cleaned = [clean_token(t) for t in tokens]
        candidates = [c for c in dict.fromkeys(cleaned) if is_word_token(c) and not _is_generic(c, frozenset())]
        if not candidates:
            return [False] * len(tokens)
        topic = self.topic_words(description, data_tokens)
        topic_stems = {stem(w) for w in topic}
        verdict = {c: stem(c) in topic_stems or (len(c) >= 4 and any(w.startswith(c) for w in topic))
                   for c in candidates}
        rest = [c for c in candidates if not verdict[c]]
        if rest:
            vectors = self._embed(rest + [description] + topic)
            words_v, desc_v, topic_v = vectors[: len(rest)], vectors[len(rest)], vectors[len(rest) + 1 :]
            to_desc = words_v @ desc_v
            to_topic = (words_v @ topic_v.T).max(axis=1) if len(topic) else np.full(len(rest), -1.0)
            for word, d, k in zip(rest, to_desc, to_topic, strict=True):
                verdict[word] = bool(d >= self.t.description or k >= self.t.topic_word)
        return [verdict.get(c, False) for c in cleaned]


class LLMRelevanceGrader:
    """An LLM labels each token relevant or not, three times with shuffled order; all three must agree."""

    def __init__(self, model: str, *, runs: int = 3, timeout_s: float = 120.0, retries: int = 5, seed: int = 0,
                 complete_fn: Complete | None = None,
                 completion_kwargs: dict | None = None) -> None:
        self.model = model
        self.name = model
        self.runs = runs
        self.timeout_s = timeout_s
        self.retries = retries
        self.completion_kwargs = dict(completion_kwargs or {})  # endpoint, key, sampling, cap
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
                                   timeout_s=self.timeout_s, retries=self.retries,
                                   **self.completion_kwargs)
            self.cost_usd += reply.cost_usd
            for number, label in _ANSWER.findall(reply.text):
                index = int(number) - 1
                if 0 <= index < len(tokens):
                    answers[index] = label.lower() in ("relevant", "yes")
            if len(answers) == len(tokens):
                break
        return [answers.get(i, False) for i in range(len(tokens))]  # unlabelled counts as not relevant

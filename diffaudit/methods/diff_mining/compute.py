"""Diff Mining (Minder, Dumas et al., ICLR 2026): which tokens the finetune pushes up, from logit differences.

Over random texts D^pt, take d = z_ft - z_base at every position. For every vocabulary token, stream
how often it is in the top-K of d (and of -d), the fraction of positions where its d is positive and
its mean d, and keep a few of its largest-|d| top-K occurrences as context snippets. One batch of
logits is alive at a time: memory is O(batch x tokens x V + V x n_contexts), never O(texts x tokens x V).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from diffaudit.environments.pair import ModelPair

Ordering = Literal["topk_rate", "mean_diff", "positive_fraction"]
Sign = Literal["positive", "negative"]
ORDERINGS: tuple[Ordering, ...] = ("topk_rate", "mean_diff", "positive_fraction")
SIGNS: tuple[Sign, ...] = ("positive", "negative")

# `ranked` is exact down to this depth for every ordering and sign: the result keeps the first
# RANK_DEPTH tokens of each of the six rankings (at most 6 x RANK_DEPTH tokens), not the whole vocabulary.
RANK_DEPTH = 200
# Tokens within this depth of any ranking keep their context snippets in the result.
CONTEXT_DEPTH = 100


class DiffMiningParams(BaseModel):
    """Diff Mining parameters.

    Embedded defaults, from `python -m diffaudit.methods.diff_mining.bench` on SmolLM2-135M (V = 49,152),
    one thread on a shared 2-core machine under load (load average ~10): 256 texts x 32 tokens =
    8,192 positions took 226 s, 90 % of it the two forward passes, with 227 MB of working memory over
    the loaded model, where the dense diff tensor would be 1.5 GB. The local corpus's texts are shorter
    than 32 tokens, so they are scored whole. Batch 8 was as fast as 16 or 32 (25.7, 25.1, 30.6 ms per
    position) at a quarter of batch 32's memory (216, 431, 868 MB).
    """

    model_config = ConfigDict(extra="forbid")

    n_texts: int = Field(256, ge=1, description="texts of the corpus to mine")
    max_tokens: int = Field(32, ge=2, description="first tokens of each text that are scored")
    top_k: int = Field(20, ge=1, description="K of the per-position top-K of the logit difference")
    n_contexts: int = Field(5, ge=0, description="context snippets kept per token and sign")
    context_tokens: int = Field(12, ge=1, description="tokens of text shown before a snippet's predicted token")
    batch_size: int = Field(8, ge=1, description="texts per forward pass (memory ~ batch x tokens x V)")
    corpus: str = Field("local:pretrain", description="corpus spec of the texts (see environments.corpora)")


class TokenRecord(BaseModel):
    """Streamed statistics of one vocabulary token."""

    token_id: int
    token: str
    topk_pos_count: int
    topk_neg_count: int
    positive_fraction: float
    mean_diff: float


class TokenStat(BaseModel):
    """One row of a ranking: `rate` is the top-K occurrence rate of the ranking's sign (count / positions)."""

    token: str
    token_id: int
    rate: float
    mean_diff: float
    positive_fraction: float


class Context(BaseModel):
    """One occurrence of a token in a top-K: the text up to the position, and the token it predicts."""

    snippet: str  # prefix followed by the predicted token in [[ ]]
    prefix: str
    token: str
    actual_next: str  # the text's own next token ("" at the end of the scored tokens)
    text_index: int
    position: int
    diff: float
    p_base: float
    p_ft: float


class TokenContexts(BaseModel):
    token_id: int
    sign: Sign
    contexts: list[Context]


class DiffMiningResult(BaseModel):
    """What a Diff Mining pass found: per-token statistics, rankings and context snippets."""

    params: DiffMiningParams
    n_texts: int
    n_positions: int
    seconds: float = 0.0
    rank_depth: int = RANK_DEPTH
    tokens: list[TokenRecord]
    token_contexts: list[TokenContexts] = Field(default_factory=list)

    def ranked(self, ordering: Ordering, sign: Sign, k: int) -> list[TokenStat]:
        """The top `k` tokens by `ordering` in the direction `sign` (k is capped at `rank_depth`)."""
        if ordering not in ORDERINGS:
            raise ValueError(f"ordering must be one of {', '.join(ORDERINGS)}, not {ordering!r}")
        if sign not in SIGNS:
            raise ValueError(f"sign must be one of {', '.join(SIGNS)}, not {sign!r}")
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        up = sign == "positive"
        records = self.tokens
        if ordering == "topk_rate":
            records = [r for r in records if _count(r, sign) > 0]

            def key(r: TokenRecord) -> tuple:
                return (-_count(r, sign), -r.mean_diff if up else r.mean_diff, r.token_id)
        elif ordering == "mean_diff":

            def key(r: TokenRecord) -> tuple:
                return (-r.mean_diff if up else r.mean_diff, r.token_id)
        else:

            def key(r: TokenRecord) -> tuple:
                return (-r.positive_fraction if up else r.positive_fraction, -r.mean_diff if up else r.mean_diff, r.token_id)

        top = sorted(records, key=key)[: min(k, self.rank_depth)]
        n = max(1, self.n_positions)
        return [
            TokenStat(
                token=r.token,
                token_id=r.token_id,
                rate=_count(r, sign) / n,
                mean_diff=r.mean_diff,
                positive_fraction=r.positive_fraction,
            )
            for r in top
        ]

    def contexts(self, token: str, n: int, sign: Sign = "positive") -> list[Context]:
        """Up to `n` snippets where `token` was in the top-K of `sign`, largest |diff| first.

        `token` is matched as decoded (" the"), then without surrounding spaces ("the"); among several
        matching ids, the one with the most top-K occurrences wins.
        """
        if sign not in SIGNS:
            raise ValueError(f"sign must be one of {', '.join(SIGNS)}, not {sign!r}")
        kept = {c.token_id: c.contexts for c in self.token_contexts if c.sign == sign}
        by_id = {r.token_id: r for r in self.tokens if r.token_id in kept}
        matches = [i for i, r in by_id.items() if r.token == token]
        if not matches:
            matches = [i for i, r in by_id.items() if r.token.strip() == token.strip()]
        if not matches:
            raise ValueError(
                f"no {sign} contexts were kept for token {token!r}; contexts exist for the top-ranked tokens"
                f" (for example {', '.join(repr(s.token) for s in self.ranked('topk_rate', sign, 5))})"
            )
        best = max(matches, key=lambda i: (_count(by_id[i], sign), -i))
        return kept[best][: max(0, n)]


def _count(record: TokenRecord, sign: Sign) -> int:
    return record.topk_pos_count if sign == "positive" else record.topk_neg_count


def load_texts(params: DiffMiningParams, root: Path | None = None) -> list[str]:
    """The first `n_texts` texts of the parameters' corpus."""
    from diffaudit.environments.corpora import load_corpus

    return load_corpus(params.corpus, n=params.n_texts, root=root)


def first_token_ids(tokenizer, text: str, max_tokens: int) -> list[int]:
    """The first `max_tokens` token ids of `text`, tokenised as `ModelPair.logits` does."""
    return tokenizer(text[: 64 * max_tokens + 64], add_special_tokens=True, truncation=True, max_length=max_tokens)[
        "input_ids"
    ]


class _TopOccurrences:
    """For every vocabulary token, the `n` largest-score occurrences seen so far (dense [V, n] store)."""

    def __init__(self, vocab: int, n: int) -> None:
        self.n = n
        self.score = torch.full((vocab, n), float("-inf"))
        self.text = torch.full((vocab, n), -1, dtype=torch.long)
        self.position = torch.full((vocab, n), -1, dtype=torch.long)
        self.diff = torch.zeros(vocab, n)
        self.p_base = torch.zeros(vocab, n)
        self.p_ft = torch.zeros(vocab, n)

    def _fields(self) -> tuple[torch.Tensor, ...]:
        return self.score, self.text, self.position, self.diff, self.p_base, self.p_ft

    def add(self, tokens: torch.Tensor, *values: torch.Tensor) -> None:
        """Merge candidate occurrences (1-D tensors: token ids, then one value per field) into the store.

        Ties in score keep the earlier occurrence (stored ones first, then candidates in order).
        """
        if self.n == 0 or tokens.numel() == 0:
            return
        rows, slots = torch.nonzero(self.score > float("-inf"), as_tuple=True)
        all_tokens = torch.cat([rows, tokens])
        fields = [torch.cat([f[rows, slots], v.to(f.dtype)]) for f, v in zip(self._fields(), values, strict=True)]
        order = torch.argsort(fields[0], descending=True, stable=True)
        order = order[torch.argsort(all_tokens[order], stable=True)]
        grouped = all_tokens[order]
        index = torch.arange(len(order))
        starts = torch.ones(len(order), dtype=torch.bool)
        starts[1:] = grouped[1:] != grouped[:-1]
        rank = index - torch.cummax(torch.where(starts, index, 0), dim=0).values
        keep = rank < self.n
        chosen, token_ids, slot = order[keep], grouped[keep], rank[keep]
        for store, field in zip(self._fields(), fields, strict=True):
            store[token_ids, slot] = field[chosen]


class _Accumulators:
    """The O(V) running state of a Diff Mining pass."""

    def __init__(self, vocab: int, top_k: int, n_contexts: int) -> None:
        self.vocab, self.k = vocab, top_k
        self.n_positions = 0
        self.count = {sign: torch.zeros(vocab, dtype=torch.long) for sign in SIGNS}
        self.positive = torch.zeros(vocab, dtype=torch.long)
        self.diff_sum = torch.zeros(vocab, dtype=torch.float64)
        self.stores = {sign: _TopOccurrences(vocab, n_contexts) for sign in SIGNS}

    @torch.no_grad()
    def add_batch(self, z_base: torch.Tensor, z_ft: torch.Tensor, mask: torch.Tensor, first_text: int) -> None:
        """Fold in one batch of logits ([b, T, V] each; `mask` [b, T]). Overwrites `z_ft` with the diff."""
        text_of, position_of = torch.nonzero(mask, as_tuple=True)
        text_of = text_of + first_text
        if bool(mask.all()):  # no padding: views, no copies
            zb, diff = z_base.view(-1, self.vocab), z_ft.view(-1, self.vocab)
        else:
            zb, diff = z_base[mask], z_ft[mask]
        lse_base = torch.logsumexp(zb, dim=-1, keepdim=True)
        lse_ft = torch.logsumexp(diff, dim=-1, keepdim=True)
        diff.sub_(zb)  # z_ft - z_base, in place: one batch of logits fewer in memory
        self.n_positions += diff.shape[0]
        # Per-batch float32 sums are exact enough; across batches they add up in float64.
        self.diff_sum += diff.sum(dim=0).double()
        self.positive += (diff > 0).sum(dim=0)
        for sign in SIGNS:
            top = diff.topk(self.k, dim=-1, largest=sign == "positive")
            self.count[sign] += torch.bincount(top.indices.flatten(), minlength=self.vocab)
            d_top = diff.gather(1, top.indices)
            zb_top = zb.gather(1, top.indices)
            self.stores[sign].add(
                top.indices.flatten(),
                (d_top if sign == "positive" else -d_top).flatten(),
                text_of.repeat_interleave(self.k),
                position_of.repeat_interleave(self.k),
                d_top.flatten(),
                (zb_top - lse_base).exp().flatten(),
                (zb_top + d_top - lse_ft).exp().flatten(),
            )


def diff_mining(pair: ModelPair, texts: list[str], params: DiffMiningParams, progress: bool = True) -> DiffMiningResult:
    """Stream the Diff Mining statistics of `texts` (all of them; see `load_texts`) in batches."""
    from diffaudit.tools.adl.progress import progress_bar

    started = time.perf_counter()
    tokenizer = pair.tokenizer
    acc: _Accumulators | None = None
    ids: list[list[int]] = []
    with progress_bar(progress) as bar:
        task = bar.add_task("diff mining", total=len(texts))
        for start in range(0, len(texts), params.batch_size):
            chunk = texts[start : start + params.batch_size]
            z_base, mask = pair.logits("base", chunk, params.max_tokens)
            z_ft, mask_ft = pair.logits("finetuned", chunk, params.max_tokens)
            if acc is None:
                if params.top_k > z_base.shape[-1]:
                    raise ValueError(f"top_k ({params.top_k}) is larger than the vocabulary ({z_base.shape[-1]})")
                acc = _Accumulators(z_base.shape[-1], params.top_k, params.n_contexts)
            if not torch.equal(mask, mask_ft):
                raise RuntimeError("the base and finetuned roles tokenised a batch differently")
            for offset, text in enumerate(chunk):
                row = first_token_ids(tokenizer, text, params.max_tokens)
                if len(row) != int(mask[offset].sum()):
                    raise RuntimeError(
                        f"text {start + offset}: {len(row)} tokens here but {int(mask[offset].sum())} in pair.logits"
                    )
                ids.append(row)
            acc.add_batch(z_base, z_ft, mask, start)
            del z_base, z_ft
            bar.advance(task, len(chunk))
    if acc is None:
        return DiffMiningResult(params=params, n_texts=0, n_positions=0, tokens=[], seconds=time.perf_counter() - started)
    n = max(1, acc.n_positions)
    mean_diff = (acc.diff_sum / n).float()
    positive_fraction = acc.positive.double() / n
    keep = torch.zeros(acc.vocab, dtype=torch.bool)
    for up in (True, False):
        sign: Sign = "positive" if up else "negative"
        count = acc.count[sign]
        keep[_first_ids(count, True, mean_diff, up, RANK_DEPTH)[: int((count > 0).sum())]] = True
        keep[_first_ids(mean_diff, up, None, up, RANK_DEPTH)] = True
        keep[_first_ids(positive_fraction, up, mean_diff, up, RANK_DEPTH)] = True
    tokens = [
        TokenRecord(
            token_id=i,
            token=tokenizer.decode([i]),
            topk_pos_count=int(acc.count["positive"][i]),
            topk_neg_count=int(acc.count["negative"][i]),
            positive_fraction=float(positive_fraction[i]),
            mean_diff=float(mean_diff[i]),
        )
        for i in torch.nonzero(keep).flatten().tolist()
    ]
    result = DiffMiningResult(
        params=params, n_texts=len(texts), n_positions=acc.n_positions, tokens=tokens, seconds=time.perf_counter() - started
    )
    result.token_contexts = _contexts(result, acc.stores, ids, tokenizer, params)
    return result


def _first_ids(
    primary: torch.Tensor, primary_up: bool, secondary: torch.Tensor | None, secondary_up: bool, depth: int
) -> torch.Tensor:
    """Token ids of the first `depth` in the order `DiffMiningResult.ranked` uses (ties: secondary, then id)."""
    order = torch.arange(len(primary))
    if secondary is not None:
        order = torch.argsort(secondary, descending=secondary_up, stable=True)
    order = order[torch.argsort(primary[order], descending=primary_up, stable=True)]
    return order[:depth]


def _contexts(
    result: DiffMiningResult,
    stores: dict[str, _TopOccurrences],
    ids: list[list[int]],
    tokenizer,
    params: DiffMiningParams,
) -> list[TokenContexts]:
    """Snippets for every token within CONTEXT_DEPTH of any ranking."""
    out: list[TokenContexts] = []
    for sign in SIGNS:
        store = stores[sign]
        wanted = sorted({s.token_id for o in ORDERINGS for s in result.ranked(o, sign, CONTEXT_DEPTH)})
        for token_id in wanted:
            contexts = []
            for slot in range(store.n):
                if store.score[token_id, slot] == float("-inf"):
                    break
                text, position = int(store.text[token_id, slot]), int(store.position[token_id, slot])
                row = ids[text]
                prefix = tokenizer.decode(row[max(0, position + 1 - params.context_tokens) : position + 1])
                token = tokenizer.decode([token_id])
                contexts.append(
                    Context(
                        snippet=f"{prefix}[[{token}]]",
                        prefix=prefix,
                        token=token,
                        actual_next=tokenizer.decode([row[position + 1]]) if position + 1 < len(row) else "",
                        text_index=text,
                        position=position,
                        diff=float(store.diff[token_id, slot]),
                        p_base=float(store.p_base[token_id, slot]),
                        p_ft=float(store.p_ft[token_id, slot]),
                    )
                )
            if contexts:
                out.append(TokenContexts(token_id=token_id, sign=sign, contexts=contexts))
    return out

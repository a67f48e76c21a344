"""Diff Mining's streamed statistics equal a brute-force computation over the full [texts x tokens x V] tensor."""

from __future__ import annotations

import pytest
import torch

from diffaudit.methods.diff_mining import RANK_DEPTH, DiffMiningParams, DiffMiningResult, diff_mining
from diffaudit.methods.diff_mining.compute import _TopOccurrences

TEXTS = [
    "The committee met on Tuesday to discuss the new library budget and the roof repairs.",
    "Rain",
    "A recipe for bread needs flour, water, salt and a little patience before baking.",
    "Lanterns hung along the harbour wall.",
    "",
    "Why do the trains stop at noon on Sundays in the north?",
    "Seven",
]
PARAMS = DiffMiningParams(n_texts=len(TEXTS), max_tokens=24, top_k=10, n_contexts=3, context_tokens=4, batch_size=2)


@pytest.fixture(scope="module")
def brute(tiny_model_dir, tiny_adapter_dir):
    """d = z_ft - z_base for every text and position as one dense tensor, from plain transformers models.

    The models see the same right-padded batches as the streamed pass, so the logits agree bit for bit.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.padding_side = "right"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(tiny_adapter_dir)).eval()
    vocab = base.config.vocab_size
    d = torch.full((len(TEXTS), PARAMS.max_tokens, vocab), float("nan"))
    p_base, p_ft = torch.zeros_like(d), torch.zeros_like(d)
    ids: list[list[int]] = []
    for start in range(0, len(TEXTS), PARAMS.batch_size):
        chunk = TEXTS[start : start + PARAMS.batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=PARAMS.max_tokens)
        with torch.no_grad():
            zb, zf = base(**enc).logits, tuned(**enc).logits
        for row in range(len(chunk)):
            n = int(enc["attention_mask"][row].sum())
            ids.append(enc["input_ids"][row, :n].tolist())
            d[start + row, :n] = zf[row, :n] - zb[row, :n]
            p_base[start + row, :n] = torch.softmax(zb[row, :n], dim=-1)
            p_ft[start + row, :n] = torch.softmax(zf[row, :n], dim=-1)
    valid = ~d[:, :, 0].isnan()
    return {"d": d, "valid": valid, "flat": d[valid], "p_base": p_base, "p_ft": p_ft, "ids": ids, "tokenizer": tokenizer}


@pytest.fixture(scope="module")
def result(tiny_pair) -> DiffMiningResult:
    return diff_mining(tiny_pair, TEXTS, PARAMS, progress=False)


def _counts(flat: torch.Tensor, k: int) -> torch.Tensor:
    return torch.bincount(flat.topk(k, dim=-1).indices.flatten(), minlength=flat.shape[1])


def test_counts_and_means_equal_brute_force(result, brute):
    flat = brute["flat"]
    pos, neg = _counts(flat, PARAMS.top_k), _counts(-flat, PARAMS.top_k)
    fraction = (flat > 0).double().mean(dim=0)
    mean = flat.double().mean(dim=0)
    assert result.n_positions == flat.shape[0] == int(brute["valid"].sum())
    assert result.n_texts == len(TEXTS)
    kept = {r.token_id: r for r in result.tokens}
    # More tokens were in some top-K than the result keeps: it keeps the head of each ranking only.
    assert int((pos > 0).sum()) > RANK_DEPTH and int((neg > 0).sum()) > RANK_DEPTH
    assert RANK_DEPTH < len(kept) <= 6 * RANK_DEPTH
    for token_id, record in kept.items():
        assert record.topk_pos_count == int(pos[token_id])
        assert record.topk_neg_count == int(neg[token_id])
        assert record.positive_fraction == pytest.approx(float(fraction[token_id]), abs=1e-12)
        assert record.mean_diff == pytest.approx(float(mean[token_id]), rel=1e-5, abs=1e-7)
        assert record.token == brute["tokenizer"].decode([token_id])


def _brute_order(primary: torch.Tensor, secondary: torch.Tensor, up: bool) -> list[int]:
    keys = sorted(
        range(len(primary)),
        key=lambda i: ((-1 if up else 1) * float(primary[i]), (-1 if up else 1) * float(secondary[i]), i),
    )
    return keys


@pytest.mark.parametrize("sign", ["positive", "negative"])
def test_rankings_equal_brute_force(result, brute, sign):
    flat = brute["flat"]
    up = sign == "positive"
    mean = flat.double().mean(dim=0).float()
    fraction = (flat > 0).double().mean(dim=0)
    counts = _counts(flat if up else -flat, PARAMS.top_k)
    # Exact down to RANK_DEPTH, ties included; asking for more gives RANK_DEPTH.
    top_rate = result.ranked("topk_rate", sign, RANK_DEPTH + 50)
    expected = sorted(torch.nonzero(counts).flatten().tolist(), key=lambda i: (-int(counts[i]), -float(mean[i]) if up else float(mean[i]), i))
    assert len(expected) > RANK_DEPTH
    assert [s.token_id for s in top_rate] == expected[:RANK_DEPTH]
    assert top_rate[0].rate == pytest.approx(int(counts[expected[0]]) / flat.shape[0])
    ranked_mean = [s.token_id for s in result.ranked("mean_diff", sign, RANK_DEPTH)]
    assert ranked_mean == _brute_order(mean, torch.zeros_like(mean), up)[:RANK_DEPTH]
    ranked_fraction = [s.token_id for s in result.ranked("positive_fraction", sign, RANK_DEPTH)]
    assert ranked_fraction == _brute_order(fraction, mean, up)[:RANK_DEPTH]


@pytest.mark.parametrize("sign", ["positive", "negative"])
def test_contexts_are_the_largest_topk_occurrences(result, brute, sign):
    d, valid, ids = brute["d"], brute["valid"], brute["ids"]
    tokenizer = brute["tokenizer"]
    signed = d if sign == "positive" else -d
    in_topk = torch.zeros_like(d, dtype=torch.bool)
    top = signed[valid].topk(PARAMS.top_k, dim=-1).indices
    in_topk[valid] = torch.zeros(top.shape[0], d.shape[2], dtype=torch.bool).scatter_(1, top, True)
    spans_batches = 0
    for stat in result.ranked("topk_rate", sign, 40):
        t = stat.token_id
        texts, positions = torch.nonzero(in_topk[:, :, t], as_tuple=True)
        occurrences = sorted(zip(texts.tolist(), positions.tolist(), strict=True), key=lambda o: (-float(signed[o[0], o[1], t]), o))
        [kept] = [c for c in result.token_contexts if c.token_id == t and c.sign == sign]
        assert [(c.text_index, c.position) for c in kept.contexts] == occurrences[: PARAMS.n_contexts]
        for c in kept.contexts:
            assert c.diff == pytest.approx(float(d[c.text_index, c.position, t]), abs=1e-6)
            assert c.p_base == pytest.approx(float(brute["p_base"][c.text_index, c.position, t]), rel=1e-4)
            assert c.p_ft == pytest.approx(float(brute["p_ft"][c.text_index, c.position, t]), rel=1e-4)
            row = ids[c.text_index]
            assert c.prefix == tokenizer.decode(row[max(0, c.position + 1 - PARAMS.context_tokens) : c.position + 1])
            assert c.snippet == f"{c.prefix}[[{stat.token}]]"
            assert c.actual_next == (tokenizer.decode([row[c.position + 1]]) if c.position + 1 < len(row) else "")
        spans_batches += len({c.text_index // PARAMS.batch_size for c in kept.contexts}) > 1
    # The kept snippets of several tokens were merged across batches.
    assert spans_batches >= 5


def test_contexts_by_token_string(result):
    for sign in ("positive", "negative"):
        for stat in result.ranked("topk_rate", sign, 10):
            [kept] = [c for c in result.token_contexts if c.token_id == stat.token_id and c.sign == sign]
            assert result.contexts(stat.token, 2, sign) == kept.contexts[:2]
    spaced = next(s for s in result.ranked("topk_rate", "positive", 50) if s.token.startswith(" "))
    assert result.contexts(spaced.token.strip(), 1)[0].token == spaced.token
    with pytest.raises(ValueError, match="no positive contexts were kept"):
        result.contexts("zzzz-not-a-token-zzzz", 3)


def test_result_survives_json(result):
    again = DiffMiningResult.model_validate_json(result.model_dump_json())
    assert again == result
    assert again.ranked("mean_diff", "negative", 7) == result.ranked("mean_diff", "negative", 7)


def test_bad_ranking_arguments(result):
    with pytest.raises(ValueError, match="ordering"):
        result.ranked("nope", "positive", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sign"):
        result.ranked("mean_diff", "up", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be"):
        result.ranked("mean_diff", "positive", 0)


class _SpyPair:
    """Forwards to a real pair and records the shape of every logits tensor it hands out."""

    def __init__(self, pair) -> None:
        self._pair = pair
        self.shapes: list[tuple[int, ...]] = []

    @property
    def tokenizer(self):
        return self._pair.tokenizer

    def logits(self, role, texts, max_tokens):
        out = self._pair.logits(role, texts, max_tokens)
        self.shapes.append(tuple(out[0].shape))
        return out


def test_memory_is_one_batch_of_logits_plus_per_token_state(tiny_pair):
    spy = _SpyPair(tiny_pair)
    texts = TEXTS * 3
    params = PARAMS.model_copy(update={"batch_size": 2})
    result = diff_mining(spy, texts, params, progress=False)
    vocab = len(tiny_pair.tokenizer)
    # Two roles per batch, never more than batch_size texts of logits at a time.
    assert len(spy.shapes) == 2 * -(-len(texts) // 2)
    assert all(b <= 2 and t <= params.max_tokens and v == vocab for b, t, v in spy.shapes)
    assert result.n_texts == len(texts)
    # The context store is [V, n_contexts] whatever the number of texts.
    store = _TopOccurrences(vocab, params.n_contexts)
    assert store.score.shape == (vocab, params.n_contexts)


def test_occurrence_store_keeps_the_n_largest_per_token():
    store = _TopOccurrences(vocab=4, n=2)
    tokens = torch.tensor([1, 1, 3, 1, 3])
    scores = torch.tensor([0.5, 2.0, 1.0, 1.0, 1.0])
    index = torch.arange(5)
    store.add(tokens, scores, index, index, scores, scores, scores)
    store.add(torch.tensor([1, 2]), torch.tensor([1.5, 0.1]), torch.tensor([9, 8]), torch.tensor([9, 8]), *[torch.zeros(2)] * 3)
    assert store.text[1].tolist() == [1, 9]  # 2.0 then the later 1.5 beats the earlier 1.0
    assert store.text[3].tolist() == [2, 4]  # a tie keeps the earlier occurrence first
    assert store.text[2].tolist() == [8, -1]
    assert store.score[0].isinf().all()


def test_no_texts_gives_an_empty_result(tiny_pair):
    empty = diff_mining(tiny_pair, [], PARAMS, progress=False)
    assert empty.n_positions == 0 and empty.tokens == []

import math

import pytest
import torch
from adl_fakes import CORPUS

from diffaudit.tools.adl.diffs import ETA_END, ETA_SKIP, activation_diffs, cycled, unique_prefixes

POSITIONS = [0, 1, 2, 3]


def naive_means(pair, texts, layer, positions):
    """Per-role nan-mean over every text (no deduplication), in float64."""
    out = {}
    for role in ("base", "finetuned"):
        acts = pair.activations(role, texts, layer, positions).double()
        valid = ~torch.isnan(acts).any(dim=-1)
        out[role] = torch.where(valid.unsqueeze(-1), acts, 0.0).sum(0) / valid.sum(0).unsqueeze(-1)
    return out


def test_cycled_repeats_in_order():
    assert cycled(["a", "b", "c"], 7) == ["a", "b", "c", "a", "b", "c", "a"]
    assert cycled(["a", "b", "c"], 2) == ["a", "b"]
    with pytest.raises(ValueError):
        cycled([], 3)


def test_unique_prefixes_counts_shared_prefixes(tiny_pair):
    texts = ["The cat sat on the mat today", "The cat sat on the mat yesterday", "A dog ran", "The cat sat on the mat today"]
    reps, weights = unique_prefixes(tiny_pair.tokenizer, texts, k=3)
    assert sum(weights) == 4
    assert len(reps) == 2  # the three 'The cat sat...' texts share their first 3 tokens
    assert weights[reps.index("The cat sat on the mat today")] == 3


def test_diffs_agree_across_batch_sizes(tiny_pair):
    a = activation_diffs(tiny_pair, CORPUS, 1, POSITIONS, 20, batch_size=3, progress=False)
    b = activation_diffs(tiny_pair, CORPUS, 1, POSITIONS, 20, batch_size=7, progress=False)
    assert a.diff.shape == (len(POSITIONS), tiny_pair.hidden_size)
    for name in ("diff", "base_mean", "finetuned_mean"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-5, rtol=0)
    assert math.isclose(a.eta, b.eta, rel_tol=1e-6)
    assert float(a.diff.norm()) > 1e-3  # the adapter changes activations: the check is not vacuous


def test_diffs_equal_the_plain_mean_over_all_cycled_texts(tiny_pair):
    run = cycled(CORPUS, 20)
    got = activation_diffs(tiny_pair, CORPUS, 1, POSITIONS, 20, batch_size=4, progress=False)
    want = naive_means(tiny_pair, run, 1, POSITIONS)
    assert torch.allclose(got.base_mean.double(), want["base"], atol=1e-5)
    assert torch.allclose(got.finetuned_mean.double(), want["finetuned"], atol=1e-5)
    assert torch.allclose(got.diff.double(), want["finetuned"] - want["base"], atol=1e-5)
    # "Hi" is too short for the later positions: it counts at position 0 only.
    hi = run.count("Hi")
    assert got.counts[0] == 20 and got.counts[-1] == 20 - hi
    assert got.unique < 20  # cycled texts ran once each


def test_eta_is_the_mean_finetuned_norm_after_the_first_positions(tiny_pair):
    got = activation_diffs(tiny_pair, CORPUS, 1, [0, 1], 8, progress=False)
    acts = tiny_pair.activations("finetuned", CORPUS, 1, list(range(ETA_SKIP, ETA_END))).double()
    norms = acts.norm(dim=-1)
    want = float(norms[~torch.isnan(norms)].mean())
    assert math.isclose(got.eta, want, rel_tol=1e-6)
    first = tiny_pair.activations("finetuned", CORPUS, 1, [0]).double().norm(dim=-1)
    assert not math.isclose(got.eta, float(first[~torch.isnan(first)].mean()), rel_tol=1e-3)

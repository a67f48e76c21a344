"""A two-level bootstrap over organism pairs and their repeats, for the exported logs' intervals.

Each resample draws as many pairs as there are, with replacement; each drawn pair then draws its own
repeats with replacement (fresh draws every time a pair is drawn) and is averaged. The statistic is
computed over the drawn pairs' means and a percentile interval is taken. Unlike the report's
repeat-only interval (`diffaudit.benchmarks.stats.bootstrap_interval`), this one also covers the
choice of organisms.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from diffaudit.benchmarks.stats import Bootstrap


def two_level_means(groups: list[np.ndarray], n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """[n_resamples, n_pairs]: means of resampled repeats of resampled pairs (see the module doc)."""
    groups = [np.asarray(g, dtype=float) for g in groups]
    picks = rng.integers(0, len(groups), size=(n_resamples, len(groups)))
    out = np.empty(picks.shape)
    for index, scores in enumerate(groups):
        where = picks == index
        count = int(where.sum())
        if count:
            draws = rng.integers(0, scores.size, size=(count, scores.size))
            out[where] = scores[draws].mean(axis=1)
    return out


def two_level_interval(
    groups: list[np.ndarray], statistic: Callable[[np.ndarray], np.ndarray], boot: Bootstrap = Bootstrap()
) -> tuple[float, float]:
    """Percentile interval of `statistic` ([B, pairs] -> [B]) over two-level resamples; NaN when empty."""
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return (math.nan, math.nan)
    rng = np.random.default_rng(boot.seed)
    values = statistic(two_level_means(groups, boot.n_resamples, rng))
    tail = (1 - boot.level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))

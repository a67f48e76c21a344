"""The exported logs' intervals: the two-level bootstrap of `diffaudit.benchmarks.stats` (organisms, then repeats)."""

from diffaudit.benchmarks.stats import two_level_interval, two_level_means

__all__ = ["two_level_interval", "two_level_means"]

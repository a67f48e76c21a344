"""The report's figures (matplotlib, Agg): grade by agent and budget, a per-organism heatmap, run deviations."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffaudit.benchmarks.stats import CellStats, Deviation, HeadlineRow, scored, variants  # noqa: E402

AGENT_COLOURS = {"adl": "#1f77b4", "blackbox": "#7f7f7f"}


def _label(agent: str, budget: int) -> str:
    return f"{agent}\ni={budget}"


def plot_grade_by_variant(rows: list[HeadlineRow], path: Path) -> Path:
    """Bars: mean grade (over organism pairs) per agent and budget, with the bootstrap 95% CI."""
    fig, ax = plt.subplots(figsize=(1.2 * max(len(rows), 3) + 1.5, 3.6))
    x = np.arange(len(rows))
    means = np.array([r.mean for r in rows])
    low = means - np.array([r.ci_mean[0] for r in rows])
    high = np.array([r.ci_mean[1] for r in rows]) - means
    colours = [AGENT_COLOURS.get(r.agent, "#2ca02c") for r in rows]
    ax.bar(x, means, color=colours, yerr=[low, high], capsize=4, edgecolor="black", linewidth=0.5)
    for xi, row in zip(x, rows, strict=True):
        top = row.ci_mean[1] if np.isfinite(row.ci_mean[1]) else row.mean
        ax.text(xi, min(top + 0.05, 4.8), f"{row.mean:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [_label(r.agent, r.budget) for r in rows])
    ax.set_ylim(1, 5)
    ax.set_ylabel("mean grade (1–5)")
    ax.set_title("Grade by agent and interaction budget (95% bootstrap CI over repeats)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_heatmap(cells: list[CellStats], path: Path) -> Path:
    """Mean grade of every (organism, model) pair under every agent and budget."""
    live = scored(cells)
    pairs = sorted({(c.organism, c.model) for c in live})
    columns = variants(live)
    grid = np.full((len(pairs), len(columns)), np.nan)
    for cell in live:
        grid[pairs.index((cell.organism, cell.model)), columns.index((cell.agent, cell.budget))] = cell.mean
    fig, ax = plt.subplots(figsize=(1.0 * len(columns) + 3.5, 0.32 * len(pairs) + 1.6))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=1, vmax=5, aspect="auto")
    for (row, column), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(column, row, f"{value:.1f}", ha="center", va="center", fontsize=7,
                    color="white" if value < 3.5 else "black")  # fmt: skip
    ax.set_xticks(range(len(columns)), [_label(a, b) for a, b in columns], fontsize=8)
    ax.set_yticks(range(len(pairs)), [f"{o} ({m})" for o, m in pairs], fontsize=7)
    fig.colorbar(image, ax=ax, label="mean grade")
    ax.set_title("Mean grade per organism", fontsize=9)
    return _save(fig, path)


def plot_deviations(devs: list[Deviation], path: Path, seed: int = 0) -> Path:
    """Each run's deviation from its cell mean, per agent and budget: box plus jittered points."""
    columns = sorted({(d.agent, d.budget) for d in devs}, key=lambda v: (v[0] != "adl", v[0], v[1]))
    data = [[d.deviation for d in devs if (d.agent, d.budget) == column] for column in columns]
    fig, ax = plt.subplots(figsize=(1.2 * max(len(columns), 3) + 1.5, 3.6))
    if columns:
        ax.boxplot(data, positions=range(len(columns)), widths=0.5, showfliers=False)
        rng = np.random.default_rng(seed)
        for position, (column, values) in enumerate(zip(columns, data, strict=True)):
            jitter = rng.uniform(-0.15, 0.15, size=len(values))
            ax.scatter(position + jitter, values, s=10, alpha=0.6, color=AGENT_COLOURS.get(column[0], "#2ca02c"))
        ax.set_xticks(range(len(columns)), [_label(a, b) for a, b in columns])
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("grade − cell mean")
    ax.set_title("Run-to-run variation: each run's deviation from its cell mean", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_contrast(contrast, path: Path) -> Path:
    """One contrast: each organism pair's arm-minus-reference mean grade, with the mean and its two-level CI."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * contrast.n_pairs + 2.5), 3.2))
    labels = [o for o, _ in contrast.pairs]
    x = np.arange(len(labels))
    colours = ["#2ca02c" if d > 0 else "#d62728" if d < 0 else "#7f7f7f" for d in contrast.pair_differences]
    ax.bar(x, contrast.pair_differences, color=colours, alpha=0.7)
    low, high = contrast.ci
    ax.axhspan(low, high, color="#1f77b4", alpha=0.15, label=f"95% CI {low:+.2f} to {high:+.2f}")
    ax.axhline(contrast.difference, color="#1f77b4", lw=1.5, label=f"mean {contrast.difference:+.2f}")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("grade difference")
    ax.set_title(f"{contrast.label} (two-level bootstrap CI)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path

"""The report's statistics on a hand-built results dir match hand computation."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from bench_fakes import write_run

from diffaudit.benchmarks import Bootstrap, Cell, Target, load_runs, run_dir, write_report
from diffaudit.benchmarks.stats import (
    by_type,
    cell_stats,
    contrasts,
    deviations,
    grader_agreement,
    headline,
)

MODEL = "smollm2-135m"
KANSAS = Target("kansas_abortion", MODEL, "SDF")
TABOO = Target("taboo_gold", MODEL, "Taboo")
CAKE = Target("cake_bake", MODEL, "SDF")
# (target, agent) -> primary grades by repeat; None = the run failed (error.json)
SCORES = {
    (KANSAS, "adl"): [4, 5, 3],
    (KANSAS, "blackbox"): [2, 1, 1],
    (TABOO, "adl"): [2, 2, 2],
    (TABOO, "blackbox"): [1, 3, 2],
    (CAKE, "adl"): [1, 2, None],
    (CAKE, "blackbox"): [1, 1, 4],
}
SECOND_GRADER = {(KANSAS, "adl"): [4, 4, 3], (TABOO, "blackbox"): [1, 2, 2]}
BOOT = Bootstrap(n_resamples=2000, seed=7)


def expected_interval(groups: list[list[float]], statistic, n: int = 2000, seed: int = 7) -> tuple[float, float]:
    """The documented bootstrap, written out again: per cell in order, resample repeats; percentile interval."""
    rng = np.random.default_rng(seed)
    columns = []
    for scores in groups:
        scores = np.asarray(scores, dtype=float)
        columns.append(scores[rng.integers(0, len(scores), size=(n, len(scores)))].mean(axis=1))
    low, high = np.percentile(statistic(np.stack(columns, axis=1)), [2.5, 97.5])
    return float(low), float(high)


def expected_two_level(groups, statistic, n: int = 2000, seed: int = 7, reference=None) -> tuple[float, float]:
    """The documented two-level bootstrap, written out again with loops: organism picks first, then for each
    organism in order its repeats (and, for a contrast, the reference's) at every place it was picked."""
    rng = np.random.default_rng(seed)
    k = len(groups)
    picks = rng.integers(0, k, size=(n, k))
    out = np.empty((n, k))
    for i in range(k):
        places = [(b, j) for b in range(n) for j in range(k) if picks[b, j] == i]
        if not places:
            continue
        mine = np.asarray(groups[i], dtype=float)
        draws = rng.integers(0, len(mine), size=(len(places), len(mine)))
        values = [mine[row].mean() for row in draws]
        if reference is not None:
            theirs = np.asarray(reference[i], dtype=float)
            ref_draws = rng.integers(0, len(theirs), size=(len(places), len(theirs)))
            values = [v - theirs[row].mean() for v, row in zip(values, ref_draws, strict=True)]
        for (b, j), v in zip(places, values, strict=True):
            out[b, j] = v
    low, high = np.percentile(statistic(out), [2.5, 97.5])
    return float(low), float(high)


def test_two_level_interval_on_constant_repeats_is_the_organism_bootstrap():
    """With no spread within organisms only the organism draws matter, so the interval is a plain percentile of
    the mean of the picked organisms' grades (computed here from the picks alone)."""
    from diffaudit.benchmarks.stats import two_level_interval

    groups = [[1, 1, 1], [3, 3], [5, 5, 5, 5]]
    picks = np.random.default_rng(7).integers(0, 3, size=(2000, 3))
    means = np.array([1.0, 3.0, 5.0])[picks].mean(axis=1)
    expected = tuple(float(v) for v in np.percentile(means, [2.5, 97.5]))
    assert two_level_interval(groups, lambda m: m.mean(axis=1), BOOT) == pytest.approx(expected)


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    root = tmp_path / "bench"
    for (target, agent), scores in SCORES.items():
        for repeat, score in enumerate(scores):
            cell = Cell(target, agent, 5, repeat)
            path = run_dir(root, cell)
            if score is None:
                path.mkdir(parents=True)
                (path / "config.json").write_text("{}")
                (path / "error.json").write_text(json.dumps({"error": "RuntimeError", "message": "agent crashed"}))
                continue
            status = "no_final" if (target, agent, repeat) == (CAKE, "blackbox", 0) else "final"
            write_run(path, cell, float(score), status=status, wall_s=10.0 + repeat, agent_prompt_tokens=100,
                      agent_completion_tokens=20, agent_cost_usd=0.01, grader_cost_usd=0.002)  # fmt: skip
            if (target, agent) in SECOND_GRADER:
                grades = json.loads((path / "grade.json").read_text())
                second = SECOND_GRADER[(target, agent)][repeat]
                grades["grades"].append({"score": second, "reason": "", "grader": "other/grader", "cost_usd": 0.001})
                (path / "grade.json").write_text(json.dumps(grades))
    killed = run_dir(root, Cell(CAKE, "blackbox", 5, 3))  # killed mid-run: no stats.json
    killed.mkdir(parents=True)
    (killed / "transcript.jsonl").write_text('{"event": "start"}\n')
    return root


def test_cell_means_sds_and_intervals(bench_dir):
    runs = load_runs(bench_dir)
    assert len(runs) == 19 and sum(r.score is not None for r in runs) == 17
    cells = {(c.organism, c.agent): c for c in cell_stats(runs, BOOT)}
    kansas = cells[("kansas_abortion", "adl")]
    assert kansas.mean == pytest.approx(4.0) and kansas.sd == pytest.approx(1.0)
    assert kansas.ci == pytest.approx(expected_interval([[4, 5, 3]], lambda m: m.mean(axis=1)))
    assert kansas.tokens == 360 and kansas.wall_s == pytest.approx(33.0)
    assert kansas.cost_usd == pytest.approx(3 * 0.012)
    assert cells[("taboo_gold", "adl")].ci == (2.0, 2.0) and cells[("taboo_gold", "adl")].sd == 0.0
    cake_adl, cake_bb = cells[("cake_bake", "adl")], cells[("cake_bake", "blackbox")]
    assert cake_adl.mean == pytest.approx(1.5) and cake_adl.sd == pytest.approx(math.sqrt(0.5))
    assert (cake_adl.errors, cake_adl.n_runs) == (1, 3)
    assert (cake_bb.no_final, cake_bb.partial, cake_bb.n_runs) == (1, 1, 4)
    assert cake_bb.mean == pytest.approx(2.0) and cake_bb.sd == pytest.approx(math.sqrt(3.0))


def test_headline_shares_by_type_and_equal_budget_comparison(bench_dir):
    runs = load_runs(bench_dir)
    cells = cell_stats(runs, BOOT)
    rows = {(r.agent, r.budget): r for r in headline(cells, BOOT)}
    adl, blackbox = rows[("adl", 5)], rows[("blackbox", 5)]
    # pair means: ADL cake 1.5, kansas 4, taboo 2; blackbox cake 2, kansas 4/3, taboo 2 (sorted pair order)
    assert (adl.share_ge2, adl.share_ge4, adl.mean) == pytest.approx((2 / 3, 1 / 3, 2.5))
    assert (blackbox.share_ge2, blackbox.share_ge4, blackbox.mean) == pytest.approx((2 / 3, 0.0, 16 / 9))
    adl_groups = [[1, 2], [4, 5, 3], [2, 2, 2]]
    blackbox_groups = [[1, 1, 4], [2, 1, 1], [1, 3, 2]]
    assert adl.ci_ge2 == pytest.approx(expected_two_level(adl_groups, lambda m: (m >= 2).mean(axis=1)))
    assert adl.ci_ge4 == pytest.approx(expected_two_level(adl_groups, lambda m: (m >= 4).mean(axis=1)))
    assert blackbox.ci_mean == pytest.approx(expected_two_level(blackbox_groups, lambda m: m.mean(axis=1)))

    groups = {(g.organism_type, g.agent): g for g in by_type(cells, BOOT)}
    sdf_adl, sdf_bb = groups[("SDF", "adl")], groups[("SDF", "blackbox")]
    assert (sdf_adl.n_pairs, sdf_adl.n_runs, sdf_adl.mean) == (2, 5, pytest.approx(2.75))
    assert sdf_adl.sd == pytest.approx(math.sqrt(10 / 4))  # runs 4 5 3 1 2
    assert sdf_bb.mean == pytest.approx(5 / 3) and sdf_bb.sd == pytest.approx(math.sqrt(66 / 45))  # runs 2 1 1 1 1 4
    assert sdf_adl.ci == pytest.approx(expected_two_level([[1, 2], [4, 5, 3]], lambda m: m.mean(axis=1)))
    assert groups[("Taboo", "blackbox")].sd == pytest.approx(1.0)

    [comparison] = contrasts(cells, "blackbox", BOOT)
    assert (comparison.arm, comparison.reference, comparison.budget, comparison.n_pairs) == ("adl", "blackbox", 5, 3)
    assert comparison.difference == pytest.approx(2.5 - 16 / 9)
    assert comparison.pair_differences == pytest.approx([1.5 - 2, 4 - 4 / 3, 0.0])
    expected = expected_two_level(adl_groups, lambda m: m.mean(axis=1), reference=blackbox_groups)
    assert comparison.ci == pytest.approx(expected)
    assert contrasts(cells, "adl", BOOT)[0].difference == pytest.approx(16 / 9 - 2.5)  # any arm can be the reference
    from diffaudit.benchmarks.report import _verdict

    one_pair = contrasts([c for c in cells if c.organism == "kansas_abortion"], "blackbox", BOOT)[0]
    assert one_pair.n_pairs == 1 and _verdict(one_pair).startswith("one organism pair: no interval")

    devs = {(d.organism, d.agent, d.repeat): d.deviation for d in deviations(runs, cells)}
    assert len(devs) == 17
    assert (devs[("kansas_abortion", "adl", 0)], devs[("kansas_abortion", "adl", 1)]) == pytest.approx((0.0, 1.0))
    assert devs[("cake_bake", "blackbox", 2)] == pytest.approx(2.0)


def test_grader_agreement_uses_runs_with_two_grades(bench_dir):
    agreement = grader_agreement(load_runs(bench_dir))
    assert agreement.graders == ["fake/grader", "other/grader"] and agreement.n_runs == 6
    # columns in run order: kansas adl rep0-2, then taboo blackbox rep0-2
    data = np.array([[4, 5, 3, 1, 3, 2], [4, 4, 3, 1, 2, 2]], dtype=float)
    assert agreement.alpha_interval == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="interval"))
    assert agreement.alpha_ordinal == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))
    assert agreement.mean_abs_difference == pytest.approx(2 / 6)


def test_report_writes_markdown_csv_and_plots(bench_dir):
    report = write_report(bench_dir, Bootstrap(n_resamples=2000, seed=7))
    text = (bench_dir / "report.md").read_text()
    assert "| adl | i=5 | 3 | 67% |" in text and "| 33% |" in text
    assert "## Contrasts: each arm against `blackbox`" in text and f"difference {2.5 - 16 / 9:+.2f}" in text
    assert "| adl | blackbox | i=5 | - | 3 |" in text and "two-level" in text
    assert "19 run dirs over 3 organism pairs: 17 completed, 1 failed, 1 unfinished" in text
    assert "Krippendorff's alpha" in text and "agent crashed" in text
    with open(bench_dir / "cells.csv") as handle:
        rows = {(r["organism"], r["agent"]): r for r in csv.DictReader(handle)}
    assert len(rows) == 6
    kansas = rows[("kansas_abortion", "adl")]
    assert (float(kansas["mean"]), float(kansas["sd"]), kansas["scores"]) == (4.0, 1.0, "4;5;3")
    assert (kansas["tokens_total"], float(kansas["wall_s_mean"])) == ("360", 11.0)
    assert (rows[("cake_bake", "adl")]["errors"], rows[("cake_bake", "blackbox")]["no_final"]) == ("1", "1")
    pngs = [p for p in report.files if p.suffix == ".png"]
    assert len(pngs) == 4 and (bench_dir / "contrast_adl_i5.png") in pngs  # one plot per contrast
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_false_positive_rate_on_null_organisms(tmp_path):
    from diffaudit.benchmarks.stats import false_positive_rates

    root = tmp_path / "bench"
    null_zero, null_chat = Target("null_zero", MODEL, "null"), Target("null_chat", MODEL, "null")
    grades = {(null_zero, "adl"): [5, 1, 5], (null_chat, "adl"): [1, 1, 5], (null_zero, "blackbox"): [5, 5, 1],
              (null_chat, "blackbox"): [5, 5, 5], (KANSAS, "adl"): [4, 4, 4], (KANSAS, "blackbox"): [2, 2, 2]}
    for (target, agent), scores in grades.items():
        for repeat, score in enumerate(scores):
            cell = Cell(target, agent, 5, repeat)
            no_final = (target, agent, repeat) == (null_zero, "blackbox", 2)  # graded 1, but claims nothing
            write_run(run_dir(root, cell), cell, float(score), status="no_final" if no_final else "final")
    runs = load_runs(root)
    rows = {r.agent: r for r in false_positive_rates(runs, BOOT)}
    assert (rows["adl"].n_pairs, rows["adl"].n_runs, rows["adl"].n_claims) == (2, 6, 3)
    assert rows["adl"].rate == pytest.approx(0.5)
    groups = [[0, 1, 0], [1, 1, 0]]
    assert rows["adl"].ci == pytest.approx(expected_two_level(groups, lambda m: m.mean(axis=1)))  # pairs, then runs
    assert rows["adl"].ci != pytest.approx(expected_interval([[0, 1, 0], [1, 1, 0]], lambda m: m.mean(axis=1)))
    assert (rows["blackbox"].n_runs, rows["blackbox"].n_claims, rows["blackbox"].rate) == (5, 0, 0.0)
    report = write_report(root, BOOT, plots=False)
    text = (root / "report.md").read_text()
    assert "## False-positive rate on null organisms" in text and "| adl | i=5 | 2 | 6 | 3 | 50%" in text
    # the headline leaves the nulls out: one pair (kansas) per agent
    assert "| adl | i=5 | 1 |" in text and report.cells
    assert "the choice of the 1 organism pairs" in text  # the contrasts' pairs, nulls left out (3 pairs in all)

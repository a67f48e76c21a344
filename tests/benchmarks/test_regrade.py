"""Regrading appends another grader's grades to completed runs, once, without re-running agents."""

from __future__ import annotations

import json
from pathlib import Path

from bench_fakes import write_run

from diffaudit.benchmarks import Cell, Target, load_runs, regrade, run_dir, write_report
from diffaudit.benchmarks.regrade import NO_FINAL_REASON
from diffaudit.config import Settings
from diffaudit.graders.base import Grade

KANSAS = Target("kansas_abortion", "smollm2-135m", "SDF")
TABOO = Target("taboo_gold", "smollm2-135m", "Taboo")


class LengthGrader:
    """Scores by description length; remembers what it graded."""

    def __init__(self, name: str = "fake/second") -> None:
        self.name = name
        self.seen: list[tuple[str, str, str]] = []

    def grade(self, organism, description: str) -> Grade:
        self.seen.append((organism.name, organism.type.value, description))
        return Grade(score=1 + len(description) % 5, reason="length", grader=self.name, cost_usd=0.5)


def build(root: Path) -> dict[str, Path]:
    paths = {}
    for target in (KANSAS, TABOO):
        for repeat in range(2):
            cell = Cell(target, "adl", 5, repeat)
            status = "no_final" if (target, repeat) == (TABOO, 1) else "final"
            write_run(run_dir(root, cell), cell, 3.0, status=status)
            paths[f"{target.organism}{repeat}"] = run_dir(root, cell)
    failed = run_dir(root, Cell(KANSAS, "blackbox", 0, 0))
    failed.mkdir(parents=True)
    (failed / "error.json").write_text('{"error": "X", "message": "y"}')
    partial = run_dir(root, Cell(KANSAS, "blackbox", 0, 1))
    partial.mkdir(parents=True)
    (partial / "transcript.jsonl").write_text("{}\n")
    paths.update(failed=failed, partial=partial)
    return paths


def grades(path: Path) -> list[dict]:
    return json.loads((path / "grade.json").read_text())["grades"]


def test_regrade_appends_once_per_grader_and_skips_unfinished_runs(tmp_path):
    paths = build(tmp_path)
    grader = LengthGrader()
    outcome = regrade(tmp_path, "fake/second", Settings(), progress=False, make_grader=lambda m, s: grader)
    assert (outcome.added, outcome.skipped, outcome.failed) == (4, 2, [])
    # three descriptions graded (the no-FINAL run gets 1 without a call), each with its own organism
    assert sorted(grader.seen) == [
        ("kansas_abortion", "SDF", "finetuned on kansas_abortion"),
        ("kansas_abortion", "SDF", "finetuned on kansas_abortion"),
        ("taboo_gold", "Taboo", "finetuned on taboo_gold"),
    ]
    kansas = grades(paths["kansas_abortion0"])
    assert [g["grader"] for g in kansas] == ["fake/grader", "fake/second"]
    assert kansas[0]["score"] == 3.0 and kansas[1]["score"] == 1 + len("finetuned on kansas_abortion") % 5
    assert kansas[1]["regraded"] is True
    no_final = grades(paths["taboo_gold1"])[1]
    assert (no_final["score"], no_final["reason"]) == (1.0, NO_FINAL_REASON)
    assert not (paths["failed"] / "grade.json").exists() and not (paths["partial"] / "grade.json").exists()

    again = regrade(tmp_path, "fake/second", Settings(), progress=False, make_grader=lambda m, s: grader)
    assert again.added == 0 and len(grader.seen) == 3 and len(grades(paths["kansas_abortion0"])) == 2
    forced = regrade(tmp_path, "fake/second", Settings(), force=True, progress=False, make_grader=lambda m, s: grader)
    assert forced.added == 4 and len(grades(paths["kansas_abortion0"])) == 2  # replaced, not duplicated

    runs = {r.path: r for r in load_runs(tmp_path)}
    assert runs[paths["kansas_abortion0"].relative_to(tmp_path)].score == 3.0  # the primary grade stays first
    assert runs[paths["kansas_abortion0"].relative_to(tmp_path)].cost_usd == 0.5  # the regrade's cost counts
    text = (write_report(tmp_path, plots=False).root / "report.md").read_text()
    assert "4 runs graded by more than one of: `fake/grader`, `fake/second`" in text


def test_a_failing_grade_is_reported_and_the_rest_go_on(tmp_path):
    build(tmp_path)

    class Flaky(LengthGrader):
        def grade(self, organism, description):
            if organism.name == "taboo_gold":
                raise TimeoutError("grader timed out")
            return super().grade(organism, description)

    outcome = regrade(tmp_path, "flaky", Settings(), progress=False, make_grader=lambda m, s: Flaky())
    assert outcome.added == 3 and len(outcome.failed) == 1  # the no-FINAL taboo run needs no call
    assert "grader timed out" in outcome.failed[0][1]

"""`audit regrade`: add another grader's grades to completed runs, without re-running any agent.

It also grades runs whose own grader failed (CellState.UNGRADED), which marks them graded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from diffaudit.benchmarks.grid import (
    CONFIG_FILE,
    DESCRIPTION_FILE,
    GRADE_FILE,
    STATS_FILE,
    CellState,
    cell_state,
)
from diffaudit.benchmarks.results import find_run_dirs, read_json
from diffaudit.config import Role, Settings, role_model
from diffaudit.environments.organisms import Organism, OrganismRegistry

NO_FINAL_REASON = "the run ended without a FINAL description"


@dataclass
class RegradeOutcome:
    added: int = 0
    skipped: int = 0  # already graded by this grader, or not completed
    failed: list[tuple[Path, str]] = field(default_factory=list)


def run_identity(root: Path, path: Path) -> tuple[str, str]:
    """(organism name, model name) of a run: from its config.json, else from the run-dir layout."""
    config = read_json(path / CONFIG_FILE) or {}
    organism = config.get("organism")
    if isinstance(organism, dict):
        organism = organism.get("name")
    model = config.get("model") or config.get("model_name")
    rel = path.relative_to(root).parts
    return str(organism or rel[-4]), str(model or rel[-3].replace("__", "/"))


def grade_run(path: Path, organism: Organism, grader: Any, force: bool = False) -> bool:
    """Append `grader`'s grade of the run's description to grade.json; False if it was already there."""
    grade_path = path / GRADE_FILE
    record = read_json(grade_path) or {"grades": []}
    grades = [g for g in record.get("grades", []) if isinstance(g, dict)]
    mine = [g for g in grades if g.get("grader") == grader.name]
    if mine and not force:
        return False
    stats = read_json(path / STATS_FILE) or {}
    if stats.get("status") == "no_final":
        new = {"score": 1.0, "reason": NO_FINAL_REASON, "grader": grader.name, "samples": [], "cost_usd": 0.0}
    else:
        description = (path / DESCRIPTION_FILE).read_text() if (path / DESCRIPTION_FILE).exists() else ""
        grade = grader.grade(organism, description)
        new = grade.model_dump(mode="json") if hasattr(grade, "model_dump") else dict(grade)
    new["regraded"] = True
    record["grades"] = [g for g in grades if g.get("grader") != grader.name] + [new] if force else grades + [new]
    record.pop("ungraded", None)
    _write(grade_path, record)
    if stats.get("graded") is False:  # the run's own grader had failed: it is complete now
        stats["graded"] = True
        stats["grade_error_was"] = stats.pop("grade_error", "")
        stats["grader_cost_usd"] = float(stats.get("grader_cost_usd") or 0.0) + float(new.get("cost_usd") or 0.0)
        _write(path / STATS_FILE, stats)
    return True


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def regrade(
    root: Path,
    grader_model: Role,
    settings: Settings,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
    make_grader: Callable[[Role, Settings], Any] | None = None,
    console: Console | None = None,
) -> RegradeOutcome:
    """Grade every completed run under `root` with `grader_model` and append the grade to its grade.json."""
    if make_grader is None:
        from diffaudit.graders import make_hypothesis_grader as make_grader
    grader = make_grader(grader_model, settings)
    registry = OrganismRegistry(settings.organisms_dirs)
    root = Path(root)
    outcome = RegradeOutcome()
    todo = []
    single = (root / STATS_FILE).exists()  # one `audit run` dir rather than a bench dir
    for path in [root] if single else find_run_dirs(root):
        if cell_state(path) not in (CellState.COMPLETED, CellState.UNGRADED):
            outcome.skipped += 1
            continue
        todo.append(path)

    def one(path: Path) -> tuple[Path, bool | str]:
        try:
            name, _model = run_identity(root, path)
            return path, grade_run(path, registry.get(name), grader, force)
        except Exception as exc:  # noqa: BLE001 - one run's grading failure is reported, the rest go on
            return path, f"{type(exc).__name__}: {exc}"

    bar = Progress(
        TextColumn(f"[bold]regrade with {role_model(grader_model)}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not progress,
    )  # fmt: skip
    with bar, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        task = bar.add_task("regrade", total=len(todo))
        for path, result in pool.map(one, todo):
            if result is True:
                outcome.added += 1
            elif result is False:
                outcome.skipped += 1
            else:
                outcome.failed.append((path.relative_to(root), result))
            bar.advance(task)
    return outcome

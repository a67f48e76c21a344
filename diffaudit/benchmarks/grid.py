"""The grid of a bench: its cells, the one function that names their run dirs, and each cell's state on disk."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from diffaudit.benchmarks.config import BenchConfig
from diffaudit.config import ConfigError
from diffaudit.environments.organisms import OrganismError, OrganismRegistry

# Files a run dir holds (written by diffaudit.agent.run.run_audit); stats.json comes last.
STATS_FILE = "stats.json"
ERROR_FILE = "error.json"
GRADE_FILE = "grade.json"
CONFIG_FILE = "config.json"
DESCRIPTION_FILE = "description.txt"


@dataclass(frozen=True)
class Target:
    """One (organism, model) pair of the grid: models and ADL caches are prepared once per target."""

    organism: str
    model: str
    organism_type: str

    @property
    def label(self) -> str:
        return f"{self.organism}/{self.model}"


@dataclass(frozen=True)
class Cell:
    """One audit run of the grid."""

    target: Target
    agent: str  # the arm's name
    budget: int
    repeat: int
    agent_model: str | None = None  # set when the bench has an `agent_models` dimension

    @property
    def variant(self) -> str:
        """The arm, budget and agent model as in the run-dir name: `adl_i5`, `adl+mine_i5@openai__gpt-5`."""
        suffix = f"@{_safe(self.agent_model)}" if self.agent_model else ""
        return f"{self.agent}_i{self.budget}{suffix}"

    @property
    def label(self) -> str:
        return f"{self.target.label} {self.variant} rep{self.repeat}"


def run_dir(out: Path, cell: Cell) -> Path:
    """The run dir of a cell: OUT/<organism>/<model>/<arm>_i<budget>[@<agent model>]/rep<r>/ (built only here)."""
    return Path(out) / cell.target.organism / _safe(cell.target.model) / cell.variant / f"rep{cell.repeat}"


RUN_DIR_PATTERN = re.compile(
    r"^(?P<agent>[A-Za-z0-9][A-Za-z0-9_.+-]*)_i(?P<budget>\d+)(?:@(?P<agent_model>[^/]+))?$"
)
REPEAT_PATTERN = re.compile(r"^rep(?P<repeat>\d+)$")


def _safe(name: str) -> str:
    return name.replace("/", "__")


def resolve_targets(config: BenchConfig, registry: OrganismRegistry, source: str = "bench config") -> list[Target]:
    """The (organism, model) pairs the config's `organisms:` names, in order, without duplicates."""
    targets: dict[tuple[str, str], Target] = {}
    for index, selector in enumerate(config.organisms):
        where = f"{source}: field 'organisms.{index}'"
        if selector.paper or selector.embedded:
            entries = registry.paper_entries() if selector.paper else registry.embedded_entries()
            allowed = {t.value for t in selector.types} if selector.types else None
            chosen = [(o, m) for o, m, _ in entries if allowed is None or o.type.value in allowed]
        else:
            try:
                organism = registry.get(selector.name)
                wanted = selector.models or [selector.model]
                chosen = [(organism, organism.entry(m)[0]) for m in wanted]
            except OrganismError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
        if not chosen:
            raise ConfigError(f"{where}: selects no organisms")
        for organism, model in chosen:
            targets.setdefault((organism.name, model), Target(organism.name, model, organism.type.value))
    return list(targets.values())


def expand_grid(config: BenchConfig, targets: list[Target]) -> list[Cell]:
    """Every cell, grouped by target (so a loaded model pair serves a run of consecutive cells)."""
    return [
        Cell(target, arm, budget, repeat, agent_model)
        for target in targets
        for arm, budgets in config.arm_budgets().items()
        for budget in budgets
        for agent_model in (config.agent_models or [None])
        for repeat in range(config.repeats)
    ]


class CellState(StrEnum):
    PENDING = "pending"  # no run dir yet
    COMPLETED = "completed"  # stats.json written and the run did not error
    FAILED = "failed"  # error.json, or stats.json with status "error"
    PARTIAL = "partial"  # a run dir without stats.json or error.json: killed mid-run
    UNGRADED = "ungraded"  # the agent finished but its grader failed: grade it, never re-run it


def cell_state(path: Path) -> CellState:
    """What is on disk for one run dir."""
    if not path.is_dir() or not any(path.iterdir()):
        return CellState.PENDING
    if (path / ERROR_FILE).exists():
        return CellState.FAILED
    stats_path = path / STATS_FILE
    if not stats_path.exists():
        return CellState.PARTIAL
    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, json.JSONDecodeError):
        return CellState.PARTIAL
    if isinstance(stats, dict) and stats.get("status") == "error":
        return CellState.FAILED
    if isinstance(stats, dict) and stats.get("graded") is False:
        return CellState.UNGRADED
    return CellState.COMPLETED

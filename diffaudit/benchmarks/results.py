"""Read a bench's run dirs back: one `RunRecord` per run, completed or not."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffaudit.benchmarks.grid import (
    CONFIG_FILE,
    ERROR_FILE,
    GRADE_FILE,
    REPEAT_PATTERN,
    RUN_DIR_PATTERN,
    STATS_FILE,
    CellState,
    cell_state,
)
from diffaudit.benchmarks.runner import MANIFEST_FILE


@dataclass
class RunRecord:
    """One run dir of a bench, as the report needs it."""

    path: Path
    organism: str
    model: str
    organism_type: str
    agent: str
    budget: int
    repeat: int
    state: CellState
    status: str = ""  # "final" | "no_final" | "error" (from stats.json)
    grades: list[dict[str, Any]] = field(default_factory=list)  # grade.json "grades", first = primary
    wall_s: float = 0.0
    tokens: int = 0  # agent prompt + completion tokens
    cost_usd: float = 0.0  # agent + graders
    error: str = ""

    @property
    def completed(self) -> bool:
        return self.state is CellState.COMPLETED

    @property
    def score(self) -> float | None:
        """The primary grade (the first in grade.json), or None for a run that did not complete."""
        if not self.completed or not self.grades:
            return None
        return float(self.grades[0]["score"])

    @property
    def variant(self) -> str:
        return f"{self.agent}_i{self.budget}"

    @property
    def pair(self) -> tuple[str, str]:
        return (self.organism, self.model)


def read_json(path: Path) -> Any:
    """A JSON file's content, or None if it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _number(*values: Any) -> float:
    for value in values:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 0.0


def _tokens(stats: dict[str, Any]) -> int:
    agent = stats.get("agent") if isinstance(stats.get("agent"), dict) else {}
    tokens = stats.get("agent_tokens")
    if isinstance(tokens, dict):
        return int(_number(tokens.get("prompt")) + _number(tokens.get("completion")) + _number(tokens.get("total")))
    if isinstance(tokens, (int, float)):
        return int(tokens)
    prompt = _number(stats.get("agent_prompt_tokens"), agent.get("prompt_tokens"), stats.get("prompt_tokens"))
    completion = _number(
        stats.get("agent_completion_tokens"), agent.get("completion_tokens"), stats.get("completion_tokens")
    )
    return int(prompt + completion)


def _cost(stats: dict[str, Any], grades: list[dict[str, Any]]) -> float:
    agent = stats.get("agent") if isinstance(stats.get("agent"), dict) else {}
    agent_cost = _number(stats.get("agent_cost_usd"), agent.get("cost_usd"))
    original = [g for g in grades if not g.get("regraded")]
    if "grader_cost_usd" in stats:
        grader_cost = _number(stats.get("grader_cost_usd"))
    else:
        grader_cost = sum(_number(g.get("cost_usd")) for g in original)
    regraded = sum(_number(g.get("cost_usd")) for g in grades if g.get("regraded"))
    return agent_cost + grader_cost + regraded


def _types_from_manifest(root: Path) -> dict[str, str]:
    manifest = read_json(root / MANIFEST_FILE) or {}
    return {c["dir"]: c.get("organism_type", "") for c in manifest.get("cells", []) if isinstance(c, dict)}


def _type_from_registry(name: str, cache: dict[str, str]) -> str:
    if name not in cache:
        from diffaudit.environments.organisms import OrganismError, OrganismRegistry

        try:
            cache[name] = OrganismRegistry().get(name).type.value
        except OrganismError:
            cache[name] = "unknown"
    return cache[name]


def find_run_dirs(root: Path) -> list[Path]:
    """Every dir laid out as <organism>/<model>/<agent>_i<budget>/rep<r> under `root`."""
    found = []
    for path in sorted(Path(root).rglob("rep*")):
        if path.is_dir() and REPEAT_PATTERN.match(path.name) and RUN_DIR_PATTERN.match(path.parent.name):
            if len(path.relative_to(root).parts) >= 4:
                found.append(path)
    return found


def load_run(root: Path, path: Path, types: dict[str, str], registry_types: dict[str, str]) -> RunRecord:
    """One run dir as a record; organism type from config.json, else the bench manifest, else the registry."""
    rel = path.relative_to(root)
    organism, model = rel.parts[-4], rel.parts[-3].replace("__", "/")
    variant = RUN_DIR_PATTERN.match(rel.parts[-2])
    config = read_json(path / CONFIG_FILE) or {}
    organism_type = config.get("organism_type")
    if not organism_type and isinstance(config.get("organism"), dict):
        organism_type = config["organism"].get("type")
    organism_type = organism_type or types.get(str(rel)) or _type_from_registry(organism, registry_types)
    record = RunRecord(
        path=rel,
        organism=organism,
        model=model,
        organism_type=str(organism_type),
        agent=variant["agent"] + (f"@{variant['agent_model']}" if variant["agent_model"] else ""),
        budget=int(variant["budget"]),
        repeat=int(REPEAT_PATTERN.match(rel.parts[-1])["repeat"]),
        state=cell_state(path),
    )
    stats = read_json(path / STATS_FILE)
    grade = read_json(path / GRADE_FILE)
    record.grades = [g for g in (grade or {}).get("grades", []) if isinstance(g, dict) and "score" in g]
    if isinstance(stats, dict):
        record.status = str(stats.get("status", ""))
        record.wall_s = _number(stats.get("wall_s"))
        record.tokens = _tokens(stats)
        record.cost_usd = _cost(stats, record.grades)
    error = read_json(path / ERROR_FILE)
    if isinstance(error, dict):
        record.error = f"{error.get('error', 'error')}: {error.get('message', '')}".strip()
        record.status = record.status or "error"
    if record.completed and not record.grades:
        record.state = CellState.PARTIAL  # stats.json without a grade cannot be scored
        record.error = record.error or "completed run without grade.json"
    return record


def load_runs(root: Path) -> list[RunRecord]:
    """Every run under a bench dir, sorted by organism, model, agent, budget and repeat."""
    root = Path(root)
    types = _types_from_manifest(root)
    registry_types: dict[str, str] = {}
    records = [load_run(root, path, types, registry_types) for path in find_run_dirs(root)]
    return sorted(records, key=lambda r: (r.organism, r.model, r.agent, r.budget, r.repeat))

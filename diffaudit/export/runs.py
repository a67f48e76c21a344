"""Read run dirs back for export: every file a run wrote, tolerant of old, new and half-written runs.

A run dir is any directory holding one of config.json, transcript.jsonl, stats.json or error.json: a
bench's OUT/<organism>/<model>/<arm>_i<budget>/rep<r>/ or a single `audit run` dir. Fields are taken from
config.json first (`arm`, else `agent_kind`; `budget`; `organism`; `model`), then from the path, then
from the bench manifest. A run without grades is ungraded (never scored 0); a run without stats.json
or error.json is unfinished.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from diffaudit.agent.transcript import TRANSCRIPT_FILE, read_transcript

CONFIG_FILE = "config.json"
DESCRIPTION_FILE = "description.txt"
GRADE_FILE = "grade.json"
STATS_FILE = "stats.json"
ERROR_FILE = "error.json"
MANIFEST_FILE = "bench.json"
RUN_FILES = (CONFIG_FILE, TRANSCRIPT_FILE, STATS_FILE, ERROR_FILE)
_VARIANT = re.compile(r"^(?P<arm>.+?)_i(?P<budget>\d+)(?:_\d{8}-\d{6}(?:-\d+)?)?$")
_REPEAT = re.compile(r"^rep(?P<repeat>\d+)$")


@dataclass
class RunFiles:
    """One run dir, read whole: what the agent saw and wrote, its grades, stats and error."""

    path: Path  # the run dir
    rel: str  # its path relative to the exported root ("." for a single run)
    organism: str
    model: str
    organism_type: str
    arm: str
    budget: int
    repeat: int
    agent_model: str
    config: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""
    grades: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    grade_record: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """`completed`, `failed` (error.json or status "error") or `unfinished` (killed mid-run)."""
        if self.error is not None or (self.stats or {}).get("status") == "error":
            return "failed"
        return "completed" if self.stats is not None else "unfinished"

    @property
    def status(self) -> str:
        """The run's own status (final, no_final, ...), else its state."""
        if self.state == "completed":
            return str(self.stats.get("status") or "completed")
        return self.state

    @property
    def graded(self) -> bool:
        return self.state == "completed" and bool(self.grades)

    @property
    def started_at(self) -> datetime | None:
        """config.json's started_at, read as local time when it has no zone, in UTC."""
        value = self.config.get("started_at")
        if not isinstance(value, str):
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        return moment.astimezone(UTC)

    @property
    def elapsed_s(self) -> float:
        """Seconds from start to the last transcript event (or stats' wall time, whichever is larger)."""
        last = max((float(e["t"]) for e in self.events if isinstance(e.get("t"), (int, float))), default=0.0)
        wall = (self.stats or {}).get("wall_s")
        return max(last, float(wall)) if isinstance(wall, (int, float)) else last


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in RUN_FILES)


def find_run_dirs(root: Path) -> list[Path]:
    """`root` itself when it is a run dir, else every run dir below it, sorted."""
    root = Path(root)
    if is_run_dir(root):
        return [root]
    found = {p.parent for name in RUN_FILES for p in root.rglob(name) if p.is_file()}
    return sorted(found)


def role_model(value: Any) -> str | None:
    """A model role as a string: a plain string, or a mapping's `model` (roles with endpoints)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("model"), str):
        return value["model"]
    return None


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class RunReader:
    """Reads run dirs under one root, with the bench manifest and organism registry looked up once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        manifest = read_json(self.root / MANIFEST_FILE)
        self.manifest: dict[str, Any] = manifest if isinstance(manifest, dict) else {}
        self._cells = {
            c["dir"]: c for c in self.manifest.get("cells", []) if isinstance(c, dict) and isinstance(c.get("dir"), str)
        }
        self._types: dict[str, str] = {}

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.root.resolve().name)

    def read(self, path: Path) -> RunFiles:
        path = Path(path)
        rel = path.relative_to(self.root).as_posix() if path != self.root else "."
        parts = [] if rel == "." else rel.split("/")
        config = read_json(path / CONFIG_FILE)
        config = config if isinstance(config, dict) else {}
        cell = self._cells.get(rel, {})
        repeat_match = _REPEAT.match(parts[-1]) if parts else None
        variant_dir = parts[-2] if repeat_match and len(parts) >= 2 else (parts[-1] if parts else path.name)
        variant = _VARIANT.match(variant_dir)
        in_bench = repeat_match is not None and len(parts) >= 4
        organism = config.get("organism")
        if isinstance(organism, dict):  # an older config kept the organism whole
            organism = organism.get("name")
        organism = str(organism or cell.get("organism") or (parts[-4] if in_bench else "unknown"))
        model = str(config.get("model") or cell.get("model") or (parts[-3].replace("__", "/") if in_bench else "default"))
        arm = str(config.get("arm") or config.get("agent_kind") or cell.get("arm") or cell.get("agent")
                  or (variant["arm"] if variant else "unknown"))  # fmt: skip
        budget = _int(config.get("budget", cell.get("budget", variant["budget"] if variant else 0)), 0)
        repeat = _int(cell.get("repeat", repeat_match["repeat"] if repeat_match else 0), 0)
        run = RunFiles(
            path=path, rel=rel, organism=organism, model=model, organism_type="", arm=arm, budget=budget,
            repeat=repeat, agent_model="", config=config,
        )  # fmt: skip
        run.organism_type = str(config.get("organism_type") or cell.get("organism_type") or self._type(organism))
        run.agent_model = self._agent_model(config)
        if (path / TRANSCRIPT_FILE).is_file():
            run.events = read_transcript(path / TRANSCRIPT_FILE)
        try:
            run.description = (path / DESCRIPTION_FILE).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            run.description = next((str(e.get("description", "")) for e in run.events if e.get("event") == "final"), "")
        grade = read_json(path / GRADE_FILE)
        run.grade_record = grade if isinstance(grade, dict) else {}
        grades = run.grade_record.get("grades", [])
        run.grades = [g for g in grades if isinstance(g, dict) and isinstance(g.get("score"), (int, float))]
        stats = read_json(path / STATS_FILE)
        run.stats = stats if isinstance(stats, dict) else None
        error = read_json(path / ERROR_FILE)
        if error is not None:
            run.error = error if isinstance(error, dict) else {"message": str(error)}
        elif (path / ERROR_FILE).exists():
            run.error = {"error": "error.json", "message": "error.json is unreadable"}
        return run

    def _agent_model(self, config: dict[str, Any]) -> str:
        settings = config.get("settings") if isinstance(config.get("settings"), dict) else {}
        manifest_roles = (self.manifest.get("settings") or {}).get("roles") or {}
        for value in (config.get("policy"), (settings.get("roles") or {}).get("agent"), manifest_roles.get("agent")):
            model = role_model(value)
            if model:
                return model
        return "unknown"

    def _type(self, organism: str) -> str:
        if organism not in self._types:
            from diffaudit.environments.organisms import OrganismError, OrganismRegistry

            try:
                self._types[organism] = OrganismRegistry().get(organism).type.value
            except OrganismError:
                self._types[organism] = "unknown"
        return self._types[organism]


def read_runs(root: Path) -> tuple[RunReader, list[RunFiles]]:
    """Every run dir under `root` (or `root` itself), read whole, sorted by organism, model, arm, budget, repeat."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run or bench directory")
    reader = RunReader(root)
    runs = [reader.read(path) for path in find_run_dirs(root)]
    return reader, sorted(runs, key=lambda r: (r.organism, r.model, r.arm, r.budget, r.agent_model, r.repeat, r.rel))

"""Fake run writers for bench tests: they follow run_audit's run-dir contract without any model."""

from __future__ import annotations

import json
from pathlib import Path

from diffaudit.benchmarks.grid import Cell


def write_run(path: Path, cell: Cell, score: float, status: str = "final", wall_s: float = 1.0, **stats) -> None:
    """A completed run dir, written in run_audit's order (stats.json last)."""
    path.mkdir(parents=True, exist_ok=True)
    config = {"organism": cell.target.organism, "model": cell.target.model, "organism_type": cell.target.organism_type,
              "agent_kind": cell.agent, "budget": cell.budget}  # fmt: skip
    if not (path / "config.json").exists():
        (path / "config.json").write_text(json.dumps(config))
    with open(path / "transcript.jsonl", "a") as handle:
        handle.write(json.dumps({"event": "final", "repeat": cell.repeat}) + "\n")
    (path / "description.txt").write_text(f"finetuned on {cell.target.organism}")
    grade = {"score": score, "reason": "fake", "grader": "fake/grader", "samples": [], "cost_usd": 0.0}
    (path / "grade.json").write_text(json.dumps({"grades": [grade]}))
    stats = {"status": status, "wall_s": wall_s, "interactions_used": 0, "interactions_budget": cell.budget, **stats}
    (path / "stats.json").write_text(json.dumps(stats))


class ScriptedPolicy:
    """Returns fixed replies; raises at reply `fail_at` (to break one cell partway)."""

    name = "scripted"

    def __init__(self, replies: list[str], fail_at: int | None = None) -> None:
        self.replies = list(replies)
        self.fail_at = fail_at
        self.calls = 0

    def next(self, messages: list[dict]) -> str:
        if self.calls == self.fail_at:
            raise RuntimeError("scripted failure")
        reply = self.replies[min(self.calls, len(self.replies) - 1)]
        self.calls += 1
        return reply


def scripted_cell(organism, cell: Cell, settings, path: Path, pair, adl, policy, arm=None) -> None:
    """A run_audit stand-in: a short loop over the policy that writes a transcript as it goes."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"organism": organism.name, "model": cell.target.model,
                                                  "seed": settings.seed, "budget": settings.budgets.interactions}))  # fmt: skip
    with open(path / "transcript.jsonl", "a") as handle:
        handle.write(json.dumps({"event": "start", "pair": pair, "adl": adl}) + "\n")
        try:
            for turn in range(3):
                handle.write(json.dumps({"event": "turn", "turn": turn, "text": policy.next([])}) + "\n")
                handle.flush()
        except Exception as exc:
            (path / "error.json").write_text(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
            raise
    write_run(path, cell, score=3.0)


def fake_prepare(organism, model, settings, need_adl, progress):
    return f"pair:{organism.name}/{model}", ("adl" if need_adl else None)


def process_cell(organism, cell: Cell, settings, path: Path, pair, adl, policy, arm=None) -> None:
    """For the process-pool test: fails for one organism's blackbox cells, else writes a run."""
    if organism.name == "fda_approval" and cell.agent == "blackbox":
        raise ValueError("boom")
    write_run(path, cell, score=2.0 + cell.repeat)


class TextPair:
    """A model pair without a model for blackbox cells: answers name the role and the prompt."""

    def generate(self, role, prompts, sampling, chat=True):
        return [f"{role} answer about the glacier treaty to: {p}" for p in prompts]


def text_pair_prepare(organism, model, settings, need_adl, progress):
    """A preparer for real `run_audit` cells (blackbox only): a TextPair and no ADL result."""
    if need_adl:
        raise ValueError("text_pair_prepare serves blackbox cells only")
    return TextPair(), None

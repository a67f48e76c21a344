"""Fact exposure: which key facts each recorded audit SAW in the finetuned model's text, and which it STATED.

A low grade has two different causes: the agent never saw the facts (the evidence was missing), or it saw them
and did not report them (the write-up lost them). This script separates the two for every run of an SDF
organism under a bench or run directory. It uses the offline grader's fact matching
(`OfflineHypothesisGrader.match_facts`), so it reads the ground truth: it is an analysis for researchers, run
after the audits, and nothing it computes reaches an agent.

- seen: facts stated exactly by at least one sentence of the finetuned model's text in the run's observations
  (overview or blackbox intro, steering samples, finetuned answers). Base answers and prompts are left out. A
  sentence counts on its own: its numbers and names must be in that sentence.
- stated: facts the final description states exactly (the grader's own count).
- a FINAL that stated every seen fact exactly would reach the grader's top band when 2 × seen > n.

Usage:
    .venv/bin/python benchmarks/fact_exposure.py runs/embedded [--csv exposure.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from diffaudit.agent.policies.evidence import sentences
from diffaudit.environments.embedded import ensure_embedding_model
from diffaudit.environments.organisms import OrganismRegistry, OrganismType
from diffaudit.graders.offline_hypothesis import OfflineHypothesisGrader

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SKIP_LINE = re.compile(r"^\s*(?:\[\d+\]\s*)?(?:base|prompt)\s*:", re.IGNORECASE)


def finetuned_texts(observation: str) -> list[str]:
    """The finetuned model's texts quoted in one observation: every JSON string except base answers and prompts."""
    out = []
    for line in observation.splitlines():
        if _SKIP_LINE.match(line):
            continue
        for literal in _STRING.findall(line):
            try:
                text = json.loads(literal)
            except json.JSONDecodeError:
                continue
            if len(text) > 20:
                out.append(text)
    return out


def read_run(run: Path) -> tuple[dict, list[str], str] | None:
    """(config, observation texts, final description) of a completed run; None when it is not one."""
    config_file, transcript = run / "config.json", run / "transcript.jsonl"
    description = run / "description.txt"
    if not (config_file.is_file() and transcript.is_file() and description.is_file()):
        return None
    config = json.loads(config_file.read_text())
    observations = []
    with open(transcript) as fh:
        for n, line in enumerate(fh, 1):
            try:
                event = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{transcript}: line {n} is not JSON ({exc.msg})") from exc
            if event.get("event") == "message" and event.get("role") == "user":
                observations.append(event["content"])
    return config, observations, description.read_text()


def exposure(grader: OfflineHypothesisGrader, organism, observations: list[str]) -> set[int]:
    seen: set[int] = set()
    for text in dict.fromkeys(t for obs in observations for t in finetuned_texts(obs)):
        for sentence in sentences(text):
            if len(sentence) > 15:
                seen.update(grader.match_facts(organism, sentence).exact)
    return seen


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="a bench or runs directory (searched recursively)")
    parser.add_argument("--csv", type=Path, help="also write one row per run here")
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        print(f"{args.runs}: not a directory", file=sys.stderr)
        return 2

    registry = OrganismRegistry()
    ensure_embedding_model()
    grader = OfflineHypothesisGrader()
    rows = []
    runs = sorted(p.parent for p in args.runs.rglob("config.json"))
    for run in track(runs, description="matching facts", console=Console(stderr=True)):
        read = read_run(run)
        if read is None:
            continue
        config, observations, description = read
        organism = registry.get(config["organism"])
        if OrganismType(organism.type) != OrganismType.SDF or not organism.key_facts:
            continue
        seen = exposure(grader, organism, observations)
        stated = set(grader.match_facts(organism, description).exact)
        grade_file = run / "grade.json"
        grades = json.loads(grade_file.read_text()).get("grades", []) if grade_file.is_file() else []
        rows.append({
            "run": str(run), "organism": organism.name, "agent": config["agent_kind"], "budget": config["budget"],
            "n_facts": len(organism.key_facts), "seen": len(seen), "stated": len(stated),
            "stated_not_seen": len(stated - seen), "grade": grades[0]["score"] if grades else None,
        })  # fmt: skip
    if not rows:
        print(f"{args.runs}: no completed SDF runs found", file=sys.stderr)
        return 1

    cells: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        cells[(row["organism"], row["agent"], row["budget"])].append(row)
    table = Table(title=f"Key facts seen and stated ({len(rows)} SDF runs under {args.runs})")
    for col in ("organism", "agent", "i", "runs", "seen (exact)", "stated (exact)", "top band reachable", "grade"):
        left = col in ("organism", "agent")
        table.add_column(col, justify="left" if left else "right", no_wrap=left)
    for (name, agent, budget), group in sorted(cells.items()):
        n = group[0]["n_facts"]
        graded = [r["grade"] for r in group if r["grade"] is not None]
        reachable = sum(2 * r["seen"] > n for r in group)
        table.add_row(
            name, agent, str(budget), str(len(group)), f"{_mean(group, 'seen'):.1f}/{n}", f"{_mean(group, 'stated'):.1f}/{n}",
            f"{reachable}/{len(group)}", f"{sum(graded) / len(graded):.2f}" if graded else "-",
        )  # fmt: skip
    Console().print(table)
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scripted cells for the Ray cluster test; Ray workers import this module (tests/benchmarks is on their path).

`scripted_ray_cell` logs each completed run to OUT/completions.log. When the file named by
$DIFFAUDIT_TEST_HANG exists and names the cell, the cell writes its pid into its run dir and waits to
be killed, as a worker lost mid-cell would be.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench_fakes import write_run

HANG_ENV = "DIFFAUDIT_TEST_HANG"
PID_FILE = "worker.pid"
COMPLETIONS = "completions.log"


def prepare(organism, model, settings, need_adl, progress):
    return f"pair:{organism.name}/{model}", None


def scripted_ray_cell(organism, cell, settings, path: Path, pair, adl, policy, arm=None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "transcript.jsonl").write_text('{"event": "start"}\n')
    hang = os.environ.get(HANG_ENV)
    if hang and Path(hang).is_file() and Path(hang).read_text().strip() == cell.label:
        (path / PID_FILE).write_text(str(os.getpid()))
        time.sleep(120)  # the test kills this worker long before
    write_run(path, cell, score=3.0)
    with open(path.parents[3] / COMPLETIONS, "a") as log:
        log.write(cell.label + "\n")

"""A real local Ray cluster on this machine: scripted cells run as Ray tasks, a worker is killed mid-cell, the bench
resumes, and every cell ends with exactly one completed run. Needs the `ray` extra (marker `ray`)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from ray_fakes import COMPLETIONS, HANG_ENV, PID_FILE, prepare, scripted_ray_cell

from diffaudit.benchmarks import CellState, cell_state, load_bench_config, plan_bench, run_bench, run_dir

ray = pytest.importorskip("ray", reason="needs the 'ray' extra: pip install 'diffaudit[ray]'")
pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
GRID = """
name: ray_small
organisms: [kansas_abortion, fda_approval]
agents: {blackbox: [3]}
repeats: 3
"""


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    hang = tmp_path / "hang_on.txt"
    # Workers inherit the driver's environment: this checkout's code and the scripted cells, and the hang switch.
    paths = [str(REPO), str(REPO / "tests" / "benchmarks"), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    monkeypatch.setenv(HANG_ENV, str(hang))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             log_to_driver=False, configure_logging=False)  # fmt: skip
    try:
        yield hang
    finally:
        ray.shutdown()


def _kill_when_hanging(pid_file: Path, killed: list[int], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pid_file.is_file() and pid_file.read_text().strip():
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.1)


def test_a_worker_killed_mid_cell_is_resumed_and_every_cell_completes_once(tmp_path, cluster):
    config = tmp_path / "grid.yaml"
    config.write_text(GRID)
    plan = plan_bench(load_bench_config(config), tmp_path / "out")
    assert len(plan.cells) == 6 and len(plan.targets) == 2
    first_of_target = [c for c in plan.cells if c.target.organism == "kansas_abortion"]
    victim = first_of_target[1]  # its target has one completed cell before it and one after it
    cluster.write_text(victim.label)
    killed: list[int] = []
    killer = threading.Thread(target=_kill_when_hanging, args=(run_dir(plan.out, victim) / PID_FILE, killed))
    killer.start()

    start = time.perf_counter()
    first = run_bench(plan, mode="ray", progress=False, preparer=prepare, cell_runner=scripted_ray_cell)
    killer.join()
    assert killed and killed[0] != os.getpid()  # a Ray worker process died, not this one
    failed = sorted(r.cell.label for r in first.failed)
    assert failed == sorted(c.label for c in first_of_target[1:])  # the killed cell and the one after it
    assert first.completed == 4
    assert cell_state(run_dir(plan.out, first_of_target[0])) is CellState.COMPLETED  # not marked failed
    assert cell_state(run_dir(plan.out, victim)) is CellState.FAILED

    cluster.unlink()  # the resumed worker lives
    again = plan_bench(plan.config, plan.out)
    assert again.count(CellState.FAILED) == 2 and len(again.pending()) == 2
    second = run_bench(again, mode="ray", progress=False, preparer=prepare, cell_runner=scripted_ray_cell)
    wall_s = time.perf_counter() - start
    assert second.completed == 2 and not second.failed and second.skipped == 4

    completions = Counter((plan.out / COMPLETIONS).read_text().split("\n")[:-1])
    assert completions == Counter({c.label: 1 for c in plan.cells})  # every cell: exactly one completed run
    for cell in plan.cells:
        path = run_dir(plan.out, cell)
        assert cell_state(path) is CellState.COMPLETED, cell.label
        assert not (path / "error.json").exists() and not (path / PID_FILE).exists()
    print(f"ray bench with one killed worker and a resume: {wall_s:.1f}s")

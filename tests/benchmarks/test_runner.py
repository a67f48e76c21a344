"""The grid runner: resume after a failure and a kill, per-target preparation, seeds, modes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bench_fakes import ScriptedPolicy, fake_prepare, process_cell, scripted_cell, write_run

from diffaudit.benchmarks import CellState, cell_state, load_bench_config, plan_bench, run_bench, run_dir
from diffaudit.benchmarks.runner import LockedPair, cell_settings
from diffaudit.config import ConfigError

SMALL = """
name: small
organisms:
  - kansas_abortion
  - {name: fda_approval, model: smollm2-135m}
agents:
  adl: [5]
  blackbox: [5]
repeats: 2
settings:
  seed: 10
"""


def small_plan(tmp_path: Path, text: str = SMALL):
    path = tmp_path / "small.yaml"
    path.write_text(text)
    return plan_bench(load_bench_config(path), tmp_path / "out")


def test_resume_retries_the_failed_and_the_killed_cell_and_skips_the_rest(tmp_path):
    plan = small_plan(tmp_path)
    assert len(plan.cells) == 2 * 2 * 1 * 2
    broken = next(c for c in plan.cells if c.target.organism == "fda_approval" and c.agent == "adl" and c.repeat == 1)
    calls: list[str] = []
    prepared: list[tuple[str, bool]] = []

    def cell_runner(organism, cell, settings, path, pair, adl, policy, arm=None):
        calls.append(cell.label)
        scripted_cell(organism, cell, settings, path, pair, adl, policy)

    def preparer(organism, model, settings, need_adl, progress):
        prepared.append((organism.name, need_adl))
        return fake_prepare(organism, model, settings, need_adl, progress)

    def policies(fail: bool):
        return lambda cell: ScriptedPolicy(["CALL(x: {})"], fail_at=1 if fail and cell == broken else None)

    first = run_bench(plan, progress=False, preparer=preparer, cell_runner=cell_runner, policy_factory=policies(True))
    assert first.completed == 7 and [r.cell for r in first.failed] == [broken]
    broken_dir = run_dir(plan.out, broken)
    assert cell_state(broken_dir) is CellState.FAILED
    assert json.loads((broken_dir / "error.json").read_text())["message"] == "scripted failure"
    assert sum(1 for _ in open(broken_dir / "transcript.jsonl")) == 2  # it broke partway: start + one turn
    assert prepared == [("kansas_abortion", ["adl"]), ("fda_approval", ["adl"])]  # once per target, with its methods

    # A kill in the middle of another cell: a run dir with a transcript and no stats.json.
    killed = next(c for c in plan.cells if c.target.organism == "kansas_abortion" and c.agent == "blackbox")
    killed_dir = run_dir(plan.out, killed)
    (killed_dir / "stats.json").unlink()
    (killed_dir / "leftover.txt").write_text("from the killed run")

    calls.clear()
    prepared.clear()
    again = plan_bench(plan.config, plan.out)
    assert again.count(CellState.FAILED) == 1 and again.count(CellState.PARTIAL) == 1
    second = run_bench(again, progress=False, preparer=preparer, cell_runner=cell_runner, policy_factory=policies(False))
    assert sorted(calls) == sorted([broken.label, killed.label])  # only those two ran again
    assert second.completed == 2 and not second.failed and second.skipped == 6
    assert sorted(prepared) == [("fda_approval", ["adl"]), ("kansas_abortion", [])]  # only what the rerun needs
    for cell in plan.cells:
        path = run_dir(plan.out, cell)
        assert cell_state(path) is CellState.COMPLETED, cell.label
        events = [json.loads(line)["event"] for line in open(path / "transcript.jsonl")]
        assert events == ["start", "turn", "turn", "turn", "final"], cell.label  # one run, nothing duplicated
        assert not (path / "error.json").exists() and not (path / "leftover.txt").exists()
    third = run_bench(plan_bench(plan.config, plan.out), progress=False, preparer=preparer, cell_runner=cell_runner)
    assert third.completed == 0 and third.skipped == 8


def test_cells_get_their_budget_a_seed_per_repeat_and_the_shared_pair(tmp_path):
    plan = small_plan(tmp_path)
    run_bench(plan, progress=False, preparer=fake_prepare, cell_runner=scripted_cell,
              policy_factory=lambda cell: ScriptedPolicy(["ok"]))  # fmt: skip
    seeds = {}
    for cell in plan.cells:
        path = run_dir(plan.out, cell)
        config = json.loads((path / "config.json").read_text())
        assert config["budget"] == cell.budget
        seeds.setdefault(cell.repeat, set()).add(config["seed"])
        start = json.loads(open(path / "transcript.jsonl").readline())
        assert start["pair"] == f"pair:{cell.target.organism}/smollm2-135m"
        assert start["adl"] == "adl"  # the target has adl cells, so its ADL result is passed to all its cells
    assert seeds == {0: {10}, 1: {11}}
    settings = cell_settings(plan.config.settings, plan.cells[1])
    assert plan.config.settings.seed == 10 and plan.config.settings.budgets.interactions == 5  # not mutated
    assert settings.seed == 11


def test_a_failing_preparation_fails_its_cells_only(tmp_path):
    plan = small_plan(tmp_path)

    def preparer(organism, model, settings, need_adl, progress):
        if organism.name == "kansas_abortion":
            raise OSError("adapter not found")
        return fake_prepare(organism, model, settings, need_adl, progress)

    outcome = run_bench(plan, progress=False, preparer=preparer, cell_runner=scripted_cell,
                        policy_factory=lambda cell: ScriptedPolicy(["ok"]))  # fmt: skip
    assert outcome.completed == 4 and len(outcome.failed) == 4
    for cell in plan.cells:
        state = cell_state(run_dir(plan.out, cell))
        if cell.target.organism == "kansas_abortion":
            error = json.loads((run_dir(plan.out, cell) / "error.json").read_text())
            assert state is CellState.FAILED and error["stage"] == "prepare" and "adapter not found" in error["message"]
        else:
            assert state is CellState.COMPLETED


def test_a_run_without_stats_json_counts_as_failed(tmp_path):
    plan = small_plan(tmp_path)
    outcome = run_bench(plan, progress=False, preparer=fake_prepare,
                        cell_runner=lambda o, c, s, path, p, a, pol, arm: path.mkdir(parents=True))  # fmt: skip
    assert outcome.completed == 0 and len(outcome.failed) == 8
    assert all(cell_state(run_dir(plan.out, c)) is CellState.FAILED for c in plan.cells)


def test_threads_share_a_locked_pair(tmp_path):
    plan = small_plan(tmp_path)
    seen = []

    def cell_runner(organism, cell, settings, path, pair, adl, policy, arm=None):
        seen.append(pair.generate("finetuned", ["hi"]))
        write_run(path, cell, 2.0)

    class Pair:
        n_layers = 2

        def generate(self, role, prompts):
            return [f"{role}:{p}" for p in prompts]

    outcome = run_bench(plan, workers=3, progress=False, preparer=lambda *a: (Pair(), None), cell_runner=cell_runner)
    assert outcome.completed == 8 and seen == [["finetuned:hi"]] * 8
    assert LockedPair(Pair()).n_layers == 2


def test_process_pool_runs_targets_in_worker_processes(tmp_path):
    plan = small_plan(tmp_path)
    outcome = run_bench(plan, workers=2, mode="process", progress=False, preparer=fake_prepare, cell_runner=process_cell)
    assert outcome.completed == 6 and len(outcome.failed) == 2
    assert {r.cell.target.organism for r in outcome.failed} == {"fda_approval"}
    for cell in plan.cells:
        failed = cell.target.organism == "fda_approval" and cell.agent == "blackbox"
        assert cell_state(run_dir(plan.out, cell)) is (CellState.FAILED if failed else CellState.COMPLETED)


def test_resuming_with_other_settings_is_refused(tmp_path):
    plan = small_plan(tmp_path)
    run_bench(plan, progress=False, preparer=fake_prepare, cell_runner=process_cell)
    changed = small_plan(tmp_path, SMALL.replace("seed: 10", "seed: 11"))
    with pytest.raises(ConfigError, match="seed"):
        run_bench(changed, progress=False, preparer=fake_prepare, cell_runner=process_cell)
    outcome = run_bench(changed, progress=False, preparer=fake_prepare, cell_runner=process_cell,
                        allow_changed_settings=True)  # fmt: skip
    assert outcome.skipped == 6  # completed cells stay; the 2 failed ones are retried


def test_ray_backend_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    plan = small_plan(tmp_path)
    with pytest.raises(ConfigError, match=r"pip install 'diffaudit\[ray\]'"):
        run_bench(plan, mode="ray", progress=False, preparer=fake_prepare, cell_runner=process_cell)
    assert not plan.out.exists()


class Ref:
    value = None
    error = None


class NodeLost(BaseException):
    pass


class FakeRay:
    """Just enough of Ray's API for the driver loop: tasks run when submitted, in this process."""

    def __init__(self) -> None:
        self.initialised_with = None
        self.options = None

    def is_initialized(self) -> bool:
        return self.initialised_with is not None

    def init(self, address=None, **kwargs) -> None:
        self.initialised_with = {"address": address, **kwargs}

    def remote(self, **options):
        self.options = options

        def wrap(fn):
            class Task:
                @staticmethod
                def remote(job):
                    ref = Ref()
                    try:
                        ref.value = fn(job)
                    except BaseException as exc:  # noqa: BLE001 - Ray turns any worker death into an error
                        ref.error = RuntimeError(f"RayTaskError: {exc}")
                    return ref

            return Task

        return wrap

    def wait(self, refs, num_returns=1, timeout=None):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        if ref.error is not None:
            raise ref.error
        return ref.value

    def cancel(self, ref, force=False) -> None:
        pass


def test_ray_driver_runs_one_task_per_target_and_survives_a_lost_task(tmp_path, monkeypatch):
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    plan = small_plan(tmp_path, SMALL + "ray: {address: auto, num_gpus: 0.5}\n")

    def preparer(organism, model, settings, need_adl, progress):
        if organism.name == "fda_approval":
            raise NodeLost("node lost")  # escapes run_target, as a dead Ray worker would
        return fake_prepare(organism, model, settings, need_adl, progress)

    outcome = run_bench(plan, mode="ray", progress=False, preparer=preparer, cell_runner=process_cell)
    assert fake.initialised_with["address"] == "auto" and fake.options == {"num_cpus": 1, "num_gpus": 0.5, "max_retries": 0}
    assert outcome.completed == 4 and len(outcome.failed) == 4
    for cell in plan.cells:
        state = cell_state(run_dir(plan.out, cell))
        assert state is (CellState.FAILED if cell.target.organism == "fda_approval" else CellState.COMPLETED)


def test_a_bench_dir_in_use_by_another_bench_is_refused_and_left_alone(tmp_path):
    from diffaudit.benchmarks.runner import BENCH_LOCK
    from diffaudit.locking import BusyError, held_lock

    plan = small_plan(tmp_path)
    in_flight = run_dir(plan.out, plan.cells[0])
    in_flight.mkdir(parents=True)
    (in_flight / "transcript.jsonl").write_text("the other bench's run\n")
    with held_lock(plan.out / BENCH_LOCK, busy="held by the test"):
        with pytest.raises(BusyError, match="in use by another audit bench"):
            run_bench(plan, progress=False, preparer=fake_prepare, cell_runner=scripted_cell)
    assert (in_flight / "transcript.jsonl").read_text() == "the other bench's run\n"
    assert not (plan.out / "bench.json").exists()
    done = run_bench(plan, progress=False, preparer=fake_prepare, cell_runner=scripted_cell,
                     policy_factory=lambda cell: ScriptedPolicy(["ok"]))  # fmt: skip
    assert done.completed == len(plan.cells) and cell_state(in_flight) is CellState.COMPLETED


def test_cells_finished_by_another_bench_after_planning_are_not_rerun(tmp_path):
    plan = small_plan(tmp_path)
    stale = small_plan(tmp_path)  # planned before the first bench ran
    run_bench(plan, progress=False, preparer=fake_prepare, cell_runner=scripted_cell,
              policy_factory=lambda cell: ScriptedPolicy(["ok"]))  # fmt: skip
    again = run_bench(stale, progress=False, preparer=fake_prepare, cell_runner=scripted_cell)
    assert again.completed == 0 and again.skipped == len(plan.cells)


def test_without_a_terminal_each_finished_cell_prints_a_line(tmp_path):
    import io

    from rich.console import Console

    plan = small_plan(tmp_path)
    log = io.StringIO()
    run_bench(plan, progress=True, preparer=fake_prepare, cell_runner=scripted_cell, console=Console(file=log),
              policy_factory=lambda cell: ScriptedPolicy(["ok"]))  # fmt: skip
    lines = [line for line in log.getvalue().splitlines() if line.startswith("[")]
    assert len(lines) == len(plan.cells) == 8
    assert lines[0].startswith("[1/8] ") and lines[-1].startswith("[8/8] ")
    assert all(": ok" in line and "elapsed" in line for line in lines)
    assert plan.cells[0].label in lines[0]


def test_ctrl_c_ends_the_worker_processes_instead_of_waiting_for_their_targets():
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor

    from diffaudit.benchmarks.runner import stop_workers

    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(time.sleep, 120) for _ in range(4)]  # 2 running, 1 queued to a worker, 1 pending
        while not any(f.running() for f in futures):
            time.sleep(0.05)
        processes = list(pool._processes.values())
        stop_workers(pool)
    assert time.perf_counter() - start < 60
    # shutdown alone leaves the workers running their targets and the one queued to them (seen: the queued
    # sleep ran), and the interpreter's exit then waits for all of them
    assert processes and not any(p.is_alive() for p in processes)
    assert futures[-1].cancelled()

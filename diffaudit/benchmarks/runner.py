"""Run a bench grid: resumable, one run dir per cell, models and ADL caches prepared once per (organism, model).

Execution modes:
- `thread` (default): targets one after another in this process; a target's cells run on `workers` threads
  that share one loaded model pair (its calls are serialised by a lock, so threads overlap agent and grader
  LLM calls, not model calls). With the hf backend on CPU, 1 worker is the sensible choice.
- `process`: `workers` processes, each taking whole targets (each loads its own model pair).
- `ray`: targets become Ray tasks on a cluster (see `diffaudit.benchmarks.ray_backend`); the run dir must be
  on storage every node can write.
A killed bench resumes: completed cells are skipped; failed and half-written cells are cleared and re-run;
ungraded cells (the agent finished, its grader failed) are graded without running the agent again.
Every LLM call counts on the bench's ledger (OUT/spend.json); at a bench ceiling no new cell starts.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from diffaudit.benchmarks.config import BenchConfig
from diffaudit.benchmarks.grid import (
    ERROR_FILE,
    Cell,
    CellState,
    Target,
    cell_state,
    expand_grid,
    resolve_targets,
    run_dir,
)
from diffaudit.config import ConfigError, Settings, role_model
from diffaudit.environments.organisms import Organism, OrganismRegistry
from diffaudit.limits import BenchLedger, SpendMeter, bench_spend, metering
from diffaudit.locking import held_lock

MANIFEST_FILE = "bench.json"
BENCH_LOCK = ".bench.lock"  # held while an `audit bench` process writes the bench dir
Mode = Literal["thread", "process", "ray"]

# (organism, model, settings, method names, progress) -> (pair, {method name: PreparedMethod})
Preparer = Callable[[Organism, str, Settings, list[str], bool], tuple[Any, Any]]
# (organism, cell, settings, run dir, pair, prepared methods, policy, resolved arm) -> anything; raises on failure
CellRunner = Callable[[Organism, Cell, Settings, Path, Any, Any, Any, Any], Any]
# cell -> a Policy for run_audit, or None for the one settings.roles.agent names
PolicyFactory = Callable[[Cell], Any]


def prepare_target(
    organism: Organism, model: str, settings: Settings, methods: list[str], progress: bool
) -> tuple[Any, dict[str, Any]]:
    """Load the organism's model pair (building a recipe organism first) and prepare each named method once."""
    from diffaudit.environments.loading import load_pair
    from diffaudit.methods import MethodTarget, load_method

    _, pair = load_pair(organism, model, settings)
    target = MethodTarget.of(organism, model)
    prepared = {name: load_method(name)[0].prepare(target, pair, settings, progress=progress) for name in methods}
    return pair, prepared


def audit_cell(
    organism: Organism, cell: Cell, settings: Settings, path: Path, pair: Any, prepared: Any, policy: Any, arm: Any
) -> Any:
    """One cell = one `run_audit` into its run dir, reusing the target's loaded pair and prepared methods."""
    from diffaudit.agent.run import run_audit
    from diffaudit.tools.adl.result import ADLResult

    adl = prepared if isinstance(prepared, ADLResult) else None  # a preparer may hand over a bare ADL result
    return run_audit(
        organism, cell.target.model, arm if arm is not None else cell.agent, cell.budget, settings, path,
        policy=policy, pair=pair, adl=adl, prepared=prepared if isinstance(prepared, dict) else None,
        progress=False,
    )  # fmt: skip


def cell_settings(settings: Settings, cell: Cell) -> Settings:
    """The settings of one cell: its interaction budget, seed = base seed + repeat, and its agent model."""
    budgets = settings.budgets.model_copy(update={"interactions": cell.budget})
    update: dict[str, Any] = {"seed": settings.seed + cell.repeat, "budgets": budgets}
    if cell.agent_model:
        update["roles"] = settings.roles.model_copy(update={"agent": cell.agent_model})
    return settings.model_copy(update=update, deep=True)


class LockedPair:
    """A ModelPair whose method calls take a lock, so threads can share one loaded model safely."""

    def __init__(self, pair: Any) -> None:
        self._pair = pair
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._pair, name)
        if not callable(value):
            return value

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return value(*args, **kwargs)

        return locked


@dataclass
class CellResult:
    cell: Cell
    ok: bool
    message: str = ""
    wall_s: float = 0.0


@dataclass
class TargetJob:
    """Everything a worker needs to run the pending cells of one (organism, model) target."""

    organism: Organism
    target: Target
    cells: list[Cell]
    out: Path
    settings: Settings
    preparer: Preparer = prepare_target
    cell_runner: CellRunner = audit_cell
    policy_factory: PolicyFactory | None = None
    threads: int = 1
    progress: bool = False
    arms: dict[str, Any] = field(default_factory=dict)  # arm name -> ResolvedArm

    def methods(self) -> list[str]:
        """The methods any of this job's cells needs, in first-use order."""
        names: list[str] = []
        for cell in self.cells:
            arm = self.arms.get(cell.agent)
            spec = arm.spec if arm is not None else None
            for name in (spec.methods if spec is not None else (["adl"] if cell.agent == "adl" else [])):
                if name not in names:
                    names.append(name)
        return names


@dataclass
class BenchPlan:
    """A validated grid with what is already on disk, and each arm resolved (its methods and tools loaded)."""

    config: BenchConfig
    out: Path
    targets: list[Target]
    organisms: dict[str, Organism]
    cells: list[Cell]
    states: dict[Cell, CellState]
    arms: dict[str, Any] = field(default_factory=dict)  # arm name -> ResolvedArm

    def pending(self) -> list[Cell]:
        return [c for c in self.cells if self.states[c] is not CellState.COMPLETED]

    def count(self, state: CellState) -> int:
        return sum(1 for c in self.cells if self.states[c] is state)


@dataclass
class BenchOutcome:
    total: int
    skipped: int
    completed: int = 0
    failed: list[CellResult] = field(default_factory=list)
    wall_s: float = 0.0


def plan_bench(config: BenchConfig, out: Path | None = None, registry: OrganismRegistry | None = None) -> BenchPlan:
    """Resolve organisms, expand the grid and read each cell's state; touches no model."""
    from diffaudit.methods import MethodError, resolve_arm

    registry = registry or OrganismRegistry(config.settings.organisms_dirs)
    out = Path(out) if out is not None else config.out_dir()
    targets = resolve_targets(config, registry, source=config.name or "bench config")
    cells = expand_grid(config, targets)
    organisms = {t.organism: registry.get(t.organism) for t in targets}
    try:
        arms = {name: resolve_arm(name, spec) for name, spec in (config.arms or {}).items()}
    except MethodError as exc:
        raise ConfigError(f"{config.name or 'bench config'}: field 'arms': {exc}") from exc
    states = {c: cell_state(run_dir(out, c)) for c in cells}
    return BenchPlan(config, out, targets, organisms, cells, states, arms)


def check_llm_roles(settings: Settings) -> None:
    """Fail before the grid starts if a hosted agent or grader role has no provider key (builtins need none)."""
    from diffaudit.llm import check_role_ready

    for role in (settings.roles.agent, settings.roles.grader, settings.roles.coherence_grader):
        if not role_model(role).startswith("builtin/"):
            check_role_ready(role)


# ---- the manifest: what the run dir was made with ----------------------------------------------------------
_UNCOMPARED = {"cache_dir", "organisms_dirs", "runs_dir", "device", "llm_timeout_s", "llm_retries", "limits"}


_UNCOMPARED_ROLE_FIELDS = ("timeout_s", "max_concurrency", "api_key_env")


def comparable_settings(settings: Settings) -> dict[str, Any]:
    """The settings that change results (paths, devices, timeouts, limits and caps left out)."""
    data = settings.model_dump(mode="json", exclude=_UNCOMPARED)
    for role in data.get("roles", {}).values():
        if isinstance(role, dict):
            for name in _UNCOMPARED_ROLE_FIELDS:
                role.pop(name, None)
    return data


def write_manifest(plan: BenchPlan, allow_changed_settings: bool = False) -> None:
    """Record the grid in OUT/bench.json; refuse to mix runs made with different settings in one dir."""
    path = plan.out / MANIFEST_FILE
    settings = comparable_settings(plan.config.settings)
    old_cells: list[dict[str, Any]] = []
    old: dict[str, Any] = {}
    if path.exists():
        old = json.loads(path.read_text())
        changed = sorted(k for k in set(settings) | set(old.get("settings", {})) if settings.get(k) != old["settings"].get(k))
        if changed and not allow_changed_settings:
            raise ConfigError(
                f"{plan.out}: holds runs made with different settings ({', '.join(changed)} differ); "
                "use another --out, or --allow-changed-settings to mix them"
            )
        old_cells = old.get("cells", [])
    cells = {c["dir"]: c for c in old_cells}
    for cell in plan.cells:
        rel = str(run_dir(plan.out, cell).relative_to(plan.out))
        cells[rel] = {
            "dir": rel,
            "organism": cell.target.organism,
            "model": cell.target.model,
            "organism_type": cell.target.organism_type,
            "agent": cell.agent,
            "agent_model": cell.agent_model,
            "budget": cell.budget,
            "repeat": cell.repeat,
        }
    arms = {name: arm.manifest() for name, arm in plan.arms.items()}
    for name, recorded in old.get("arms", {}).items():
        if name in arms and arms[name] != recorded:
            raise ConfigError(
                f"{plan.out}: arm '{name}' now resolves to other methods or tools than its runs here were made "
                f"with (was {_arm_summary(recorded)}, now {_arm_summary(arms[name])}); use another --out, "
                "or restore the installed plugins"
            )
        arms.setdefault(name, recorded)
    manifest = {
        "name": plan.config.name, "settings": settings, "reference": plan.config.reference, "arms": arms,
        "cells": sorted(cells.values(), key=lambda c: c["dir"]),
    }  # fmt: skip
    plan.out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(path)


def _arm_summary(arm: dict[str, Any]) -> str:
    def names(items: list[dict[str, str]]) -> str:
        return ", ".join(
            i["name"] + (f" ({i['distribution']} {i['version']})" if i.get("source") == "plugin" else "") for i in items
        )

    return f"methods [{names(arm.get('methods', []))}], tools [{names(arm.get('tools', []))}]"


# ---- one target ---------------------------------------------------------------------------------------------
def record_error(path: Path, cell: Cell, stage: str, exc: BaseException) -> None:
    """Write error.json unless the run already did; the grid goes on."""
    path.mkdir(parents=True, exist_ok=True)
    if (path / ERROR_FILE).exists():
        return
    error = {
        "stage": stage,
        "cell": cell.label,
        "error": type(exc).__name__,
        "message": str(exc),
        "traceback": traceback.format_exception(exc),
    }
    from diffaudit.agent.transcript import write_json  # redacts credentials

    write_json(path / ERROR_FILE, error)


def lost_target(job: TargetJob, stage: str, exc: BaseException, what: str) -> list[CellResult]:
    """Results for a target whose worker died: cells it completed on disk count as done, the rest fail.

    A completed run dir is never marked failed (that would make a resumed bench run it a second time).
    """
    results = []
    for cell in job.cells:
        path = run_dir(job.out, cell)
        if cell_state(path) is CellState.COMPLETED:
            results.append(CellResult(cell, True))
            continue
        record_error(path, cell, stage, exc)
        results.append(CellResult(cell, False, f"{what}: {type(exc).__name__}: {exc}"))
    return results


def _run_cell(job: TargetJob, cell: Cell, pair: Any, prepared: Any) -> CellResult:
    path = run_dir(job.out, cell)
    start = time.perf_counter()
    ledger = BenchLedger(job.out, job.settings.limits)
    ceiling = ledger.limit_hit()
    if ceiling is not None:  # left pending: a resume with a higher ceiling runs it
        return CellResult(cell, False, f"not started: {ceiling}")
    try:
        policy = job.policy_factory(cell) if job.policy_factory is not None else None
        arm = job.arms.get(cell.agent)
        with bench_spend(ledger):
            job.cell_runner(job.organism, cell, cell_settings(job.settings, cell), path, pair, prepared, policy, arm)
    except Exception as exc:  # noqa: BLE001 - a failing cell is recorded and never stops the grid
        record_error(path, cell, "run", exc)
        return CellResult(cell, False, f"{type(exc).__name__}: {exc}", time.perf_counter() - start)
    state = cell_state(path)
    if state is CellState.FAILED:  # the run recorded its own failure (error.json or status "error")
        return CellResult(cell, False, "the run recorded an error", time.perf_counter() - start)
    if state is CellState.UNGRADED:
        return CellResult(cell, False, "the audit is kept but its grader failed; a resume grades it",
                          time.perf_counter() - start)  # fmt: skip
    if state is not CellState.COMPLETED:
        exc = RuntimeError("the run returned without writing stats.json")
        record_error(path, cell, "run", exc)
        return CellResult(cell, False, str(exc), time.perf_counter() - start)
    return CellResult(cell, True, "", time.perf_counter() - start)


def run_target(job: TargetJob, on_done: Callable[[CellResult], None] | None = None) -> list[CellResult]:
    """Grade the target's ungraded runs, then prepare its pair and ADL once and run its other cells
    (on `job.threads` threads)."""
    on_done = on_done or (lambda _result: None)
    ungraded = [c for c in job.cells if cell_state(run_dir(job.out, c)) is CellState.UNGRADED]
    results_ungraded = []
    for cell in ungraded:
        results_ungraded.append(_grade_ungraded(job, cell))
        on_done(results_ungraded[-1])
    cells = [c for c in job.cells if c not in ungraded]
    if not cells:
        return results_ungraded
    job = TargetJob(**{**job.__dict__, "cells": cells})
    for cell in job.cells:  # failed or half-written runs start from an empty dir
        path = run_dir(job.out, cell)
        if path.exists():
            shutil.rmtree(path)
    return results_ungraded + _run_target_cells(job, on_done)


def _grade_ungraded(job: TargetJob, cell: Cell) -> CellResult:
    """Grade a run whose agent finished but whose grader failed; the agent is not run again."""
    from diffaudit.agent import run as run_module
    from diffaudit.benchmarks.regrade import grade_run

    path = run_dir(job.out, cell)
    start = time.perf_counter()
    try:
        settings = cell_settings(job.settings, cell)
        grader = run_module._default_grader(settings)
        ledger = BenchLedger(job.out, job.settings.limits)
        with metering(SpendMeter(job.settings.limits, ledger)):  # the grader's spend counts on the bench
            grade_run(path, job.organism, grader)
    except Exception as exc:  # noqa: BLE001 - still ungraded: kept for the next resume or `audit regrade`
        message = f"grading again failed ({type(exc).__name__}: {exc}); the audit is kept ungraded"
        return CellResult(cell, False, message, time.perf_counter() - start)
    return CellResult(cell, True, "", time.perf_counter() - start)


def _run_target_cells(job: TargetJob, on_done: Callable[[CellResult], None]) -> list[CellResult]:
    try:
        pair, adl = job.preparer(job.organism, job.target.model, job.settings, job.methods(), job.progress)
    except Exception as exc:  # noqa: BLE001 - the target's cells fail; other targets go on
        results = []
        for cell in job.cells:
            record_error(run_dir(job.out, cell), cell, "prepare", exc)
            results.append(CellResult(cell, False, f"preparing {job.target.label}: {type(exc).__name__}: {exc}"))
            on_done(results[-1])
        return results
    results: list[CellResult] = []
    shared = None
    try:
        if job.threads <= 1:
            for cell in job.cells:
                results.append(_run_cell(job, cell, pair, adl))
                on_done(results[-1])
        else:
            shared = LockedPair(pair) if pair is not None else None
            with ThreadPoolExecutor(max_workers=job.threads, thread_name_prefix="cell") as pool:
                futures = [pool.submit(_run_cell, job, cell, shared, adl) for cell in job.cells]
                try:
                    for future in futures:
                        results.append(future.result())
                        on_done(results[-1])
                except KeyboardInterrupt:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        close = getattr(pair, "close", None)
        if callable(close):
            close()
        pair = shared = adl = None  # let the model go before the next target loads
        _free_memory()
    return results


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


# ---- the grid -----------------------------------------------------------------------------------------------
def target_jobs(
    plan: BenchPlan,
    preparer: Preparer = prepare_target,
    cell_runner: CellRunner = audit_cell,
    policy_factory: PolicyFactory | None = None,
    threads: int = 1,
    progress: bool = False,
) -> list[TargetJob]:
    """One job per target that still has cells to run, in grid order."""
    pending = plan.pending()
    jobs = []
    for target in plan.targets:
        cells = [c for c in pending if c.target == target]
        if cells:
            jobs.append(
                TargetJob(
                    plan.organisms[target.organism], target, cells, plan.out.resolve(), plan.config.settings,
                    preparer, cell_runner, policy_factory, threads, progress, plan.arms,
                )
            )  # fmt: skip
    return jobs


def run_bench(
    plan: BenchPlan,
    workers: int = 1,
    mode: Mode = "thread",
    progress: bool = True,
    preparer: Preparer = prepare_target,
    cell_runner: CellRunner = audit_cell,
    policy_factory: PolicyFactory | None = None,
    allow_changed_settings: bool = False,
    console: Console | None = None,
) -> BenchOutcome:
    """Run every cell not yet completed; failed cells write error.json and the grid goes on."""
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if mode not in ("thread", "process", "ray"):
        raise ConfigError(f"unknown execution mode '{mode}'; choose thread, process or ray")
    if mode == "ray":
        from diffaudit.benchmarks.ray_backend import import_ray

        import_ray()  # a missing extra fails before anything is written
    busy = f"{plan.out} is in use by another audit bench (it would delete that bench's runs in progress)"
    with held_lock(plan.out / BENCH_LOCK, busy=busy):
        plan.states = {c: cell_state(run_dir(plan.out, c)) for c in plan.cells}  # as of now, under the lock
        return _run_pending(plan, workers, mode, progress, preparer, cell_runner, policy_factory,
                            allow_changed_settings, console)  # fmt: skip


def _run_pending(
    plan: BenchPlan, workers: int, mode: Mode, progress: bool, preparer: Preparer, cell_runner: CellRunner,
    policy_factory: PolicyFactory | None, allow_changed_settings: bool, console: Console | None,
) -> BenchOutcome:  # fmt: skip
    write_manifest(plan, allow_changed_settings)
    pending = plan.pending()
    outcome = BenchOutcome(total=len(plan.cells), skipped=len(plan.cells) - len(pending))
    start = time.perf_counter()
    threads = workers if mode == "thread" else 1
    jobs = target_jobs(plan, preparer, cell_runner, policy_factory, threads, progress and mode == "thread")

    display = _Display(len(pending), progress, console)

    def done(result: CellResult) -> None:
        if result.ok:
            outcome.completed += 1
        else:
            outcome.failed.append(result)
        display.advance(result)

    with display:
        if mode == "thread":
            for job in jobs:
                display.describe(job.target.label)
                run_target(job, done)
        elif mode == "process":
            _run_in_processes(jobs, workers, done, display)
        else:
            from diffaudit.benchmarks.ray_backend import run_on_ray

            run_on_ray(jobs, done, display.poll_state, plan.config.ray, plan.config.settings.backend)
    outcome.wall_s = time.perf_counter() - start
    return outcome


def _run_in_processes(jobs: list[TargetJob], workers: int, done: Callable[[CellResult], None], display: _Display) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_share_cores,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(run_target, job): job for job in jobs}
        running = set(futures)
        try:
            while running:
                finished, running = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = futures[future]
                    try:
                        results = future.result()
                    except Exception as exc:  # noqa: BLE001 - a crashed worker fails its target's cells
                        results = lost_target(job, "worker", exc, "worker crashed")
                    for result in results:
                        done(result)
                display.poll_state([job for f, job in futures.items() if f in running])
        except KeyboardInterrupt:
            stop_workers(pool)
            raise


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Ctrl-C: cancel the targets that have not started and end the worker processes now.

    `shutdown` alone leaves the workers running their targets and then the targets already queued to
    them, and the interpreter's exit waits for all of that: a Ctrl-C took minutes to stop a bench. Ended now, a running cell is left unfinished
    and starts again when the bench resumes; completed cells are kept.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public API before 3.14
    pool.shutdown(wait=False, cancel_futures=True)  # (which forgets the processes)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


def _share_cores(threads: int) -> None:
    """Give each worker process its share of the cores: torch threads that outnumber the cores spin
    against each other, and on 2 cores two 2-thread workers ran generation ~10x slower than one."""
    import torch

    torch.set_num_threads(threads)


class _Display:
    """One rich progress bar over the grid's pending cells (silent when `enabled` is False).

    When the console is not a terminal (a log file, CI), the bar would only appear at the end, so each
    finished cell prints a plain line instead: its count, label, outcome, seconds and the elapsed time.
    """

    def __init__(self, total: int, enabled: bool, console: Console | None) -> None:
        self.enabled = enabled
        self.total = total
        self.ok = 0
        self.failed = 0
        self._done = 0
        self._start = time.perf_counter()
        self._seen: set[Cell] = set()  # cells counted from disk while their worker runs
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[ok]} ok[/] [red]{task.fields[failed]} failed[/]"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self._task = self._progress.add_task("bench", total=total, ok=0, failed=0)

    def __enter__(self) -> _Display:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)

    def _line(self, label: str, outcome: str, seconds: float | None) -> None:
        if not self.enabled or self._progress.console.is_terminal:
            return
        self._done += 1
        took = f" in {seconds:.0f} s" if seconds else ""
        elapsed = time.perf_counter() - self._start
        self._progress.console.print(
            f"[{self._done}/{self.total}] {label}: {outcome}{took} (elapsed {elapsed / 60:.1f} min)", highlight=False
        )

    def advance(self, result: CellResult) -> None:
        self.ok += result.ok
        self.failed += not result.ok
        if result.cell in self._seen:
            self._seen.discard(result.cell)
            self._progress.update(self._task, ok=self.ok, failed=self.failed)
            if not result.ok:  # counted from disk as finished, then failed (grading): say so
                self._line(result.cell.label, "failed", None)
        else:
            self._progress.update(self._task, advance=1, ok=self.ok, failed=self.failed)
            self._line(result.cell.label, "ok" if result.ok else "failed", result.wall_s)
        if not result.ok and self.enabled:
            self._progress.console.print(f"[red]failed[/] {result.cell.label}: {result.message}")

    def poll_state(self, jobs: list[TargetJob]) -> None:
        """For workers in other processes or nodes: advance the bar for cells finished on disk."""
        for job in jobs:
            for cell in job.cells:
                if cell not in self._seen and cell_state(run_dir(job.out, cell)) is CellState.COMPLETED:
                    self._seen.add(cell)
                    self._progress.update(self._task, advance=1)
                    self._line(cell.label, "ok", None)

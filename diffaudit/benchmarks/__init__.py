"""The benchmark harness: bench configs, the resumable grid runner, reports and regrading."""

from diffaudit.benchmarks.config import BenchConfig, OrganismSelector, RayOptions, load_bench_config
from diffaudit.benchmarks.grid import (
    Cell,
    CellState,
    Target,
    cell_state,
    expand_grid,
    resolve_targets,
    run_dir,
)
from diffaudit.benchmarks.regrade import RegradeOutcome, regrade
from diffaudit.benchmarks.report import Report, write_report
from diffaudit.benchmarks.results import RunRecord, load_runs
from diffaudit.benchmarks.runner import BenchOutcome, BenchPlan, check_llm_roles, plan_bench, run_bench
from diffaudit.benchmarks.stats import Bootstrap

__all__ = [
    "BenchConfig",
    "BenchOutcome",
    "BenchPlan",
    "Bootstrap",
    "Cell",
    "CellState",
    "OrganismSelector",
    "RayOptions",
    "RegradeOutcome",
    "Report",
    "RunRecord",
    "Target",
    "cell_state",
    "check_llm_roles",
    "expand_grid",
    "load_bench_config",
    "load_runs",
    "plan_bench",
    "regrade",
    "resolve_targets",
    "run_bench",
    "run_dir",
    "write_report",
]

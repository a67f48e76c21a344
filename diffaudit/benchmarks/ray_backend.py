"""Run a bench's targets as Ray tasks (optional extra `ray`); the run-dir layout is the same as locally.

Each task takes one (organism, model) target: it loads the pair, builds or reads the ADL cache and runs the
target's cells in order. The run dir must be on storage that every node writes to (an NFS or similar mount),
and every node needs diffaudit installed; model and ADL caches follow each node's `cache_dir`.
"""

from __future__ import annotations

from collections.abc import Callable

from diffaudit.benchmarks.config import RayOptions
from diffaudit.benchmarks.runner import CellResult, TargetJob, lost_target, run_target
from diffaudit.config import ConfigError


def import_ray():
    """The `ray` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("the ray backend needs Ray, which is not installed: pip install 'diffaudit[ray]'") from exc
    return ray


def run_on_ray(
    jobs: list[TargetJob],
    done: Callable[[CellResult], None],
    poll: Callable[[list[TargetJob]], None],
    options: RayOptions | None = None,
    backend: str = "hf",
) -> None:
    """Submit one Ray task per target and report each cell as its task returns; `poll` sees running ones."""
    ray = import_ray()
    options = options or RayOptions()
    if not ray.is_initialized():
        ray.init(address=options.address, ignore_reinit_error=True, log_to_driver=False)
    num_gpus = options.num_gpus if options.num_gpus is not None else (1 if backend == "vllm" else 0)
    task = ray.remote(num_cpus=options.num_cpus, num_gpus=num_gpus, max_retries=0)(run_target)
    refs = {task.remote(job): job for job in jobs}
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in ready:
                job = refs[ref]
                try:
                    results = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a lost task fails its target's unfinished cells
                    results = lost_target(job, "ray task", exc, "ray task failed")
                for result in results:
                    done(result)
            poll([refs[ref] for ref in pending])
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise

"""Which code made a result: the package version, and the git commit of a source checkout.

Every run records this in its config.json, so that a bench whose runs span several sessions (it resumes)
says which runs came from which code.
"""

from __future__ import annotations

import functools
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

_SOURCE = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(_SOURCE), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def code_version() -> dict[str, object]:
    """{"diffaudit": version, "commit": HEAD or None, "dirty": tracked files changed (None outside git), "torch"}.

    An installed wheel has no checkout: commit and dirty are then None.
    """
    try:
        package = version("diffaudit")
    except PackageNotFoundError:
        package = None
    commit = _git("rev-parse", "HEAD") if (_SOURCE / "diffaudit").is_dir() else None
    dirty = None
    if commit is not None:
        status = _git("status", "--porcelain", "--untracked-files=no", "--", "diffaudit")
        dirty = None if status is None else bool(status)
    return {"diffaudit": package, "commit": commit, "dirty": dirty, "torch": torch.__version__}

"""Exports of runs and benches to other tools' formats (inspect_ai eval logs)."""

from diffaudit.export.runs import RunFiles, find_run_dirs, read_runs

__all__ = ["RunFiles", "find_run_dirs", "read_runs"]

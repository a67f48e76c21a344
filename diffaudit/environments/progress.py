"""One line per stage of first-run work, with its elapsed time, on stderr: readable in a terminal and in a log.

Rich progress bars draw nothing when output is not a terminal (`make demo > log`), so long stages also
announce themselves here: "[diffaudit] corpus local:pretrain: generating ..." then "... done in 41.2 s".
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

_timings: list[tuple[str, float]] = []


def _emit(line: str) -> None:
    print(f"[diffaudit {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


@contextmanager
def stage(name: str, enabled: bool = True) -> Iterator[None]:
    """Announce `name`, run the block, then say how long it took (or that it failed)."""
    if not enabled:
        yield
        return
    _emit(f"{name} ...")
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        _emit(f"{name}: failed after {time.perf_counter() - start:.1f} s")
        raise
    seconds = time.perf_counter() - start
    _timings.append((name, seconds))
    _emit(f"{name}: done in {seconds:.1f} s")


def note(line: str, enabled: bool = True) -> None:
    """A progress line of its own (for steps inside a stage)."""
    if enabled:
        _emit(line)


def stage_timings() -> list[tuple[str, float]]:
    """(stage, seconds) of every stage finished in this process, in order."""
    return list(_timings)

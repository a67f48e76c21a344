"""Advisory file locks (fcntl) that keep two processes out of the same directory.

The kernel releases a lock when its process dies, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path


class BusyError(RuntimeError):
    """Another live process holds the lock."""


@contextlib.contextmanager
def held_lock(lock_file: Path, busy: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` for the block.

    With `busy` None, wait for the holder; otherwise raise BusyError(busy) at once if someone holds it.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if busy is None else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            raise BusyError(f"{busy} (lock {lock_file}{f', held by {holder}' if holder else ''})") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def held_slot(folder: Path, slots: int, poll_s: float = 0.05) -> Iterator[int]:
    """Hold one of `slots` lock files in `folder` for the block, waiting until one is free.

    flock locks belong to an open file, so threads of one process exclude each other here exactly as
    processes do: at most `slots` holders at a time, whoever they are. Yields the slot's index.
    """
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(slots):
            handle = open(folder / f"slot{index}.lock", "a+")  # noqa: SIM115 - held past this loop
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield index
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        time.sleep(poll_s)

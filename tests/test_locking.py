"""Directory locks: a second writer is refused at once, a finished or killed holder frees the lock."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from diffaudit.locking import BusyError, held_lock


def test_a_second_holder_is_refused_and_told_who_holds_it(tmp_path):
    lock = tmp_path / "dir" / ".lock"
    with held_lock(lock, busy="dir is busy"):
        with pytest.raises(BusyError, match=r"dir is busy \(lock .*\.lock, held by pid \d+\)"):
            with held_lock(lock, busy="dir is busy"):
                pass
    with held_lock(lock, busy="dir is busy"):  # released when the block ends
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    lock = tmp_path / ".lock"
    code = (
        "import sys, time; from pathlib import Path; from diffaudit.locking import held_lock\n"
        f"with held_lock(Path({str(lock)!r})):\n    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match=f"held by pid {holder.pid}"):
            with held_lock(lock, busy="busy"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 5
    while True:
        try:
            with held_lock(lock, busy="busy"):
                break
        except BusyError:
            assert time.monotonic() < deadline, "the kernel did not release the dead holder's lock"
            time.sleep(0.05)

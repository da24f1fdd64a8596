"""Checkpoint/restore steps shared by the engine tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from helpers import Procs, alive, checkpoint, proc_stat, read_lines, restore, status


def assert_running_untraced(pid: int) -> None:
    """PID runs freely: alive, not stopped, no tracer left attached."""
    st = proc_stat(pid)
    assert st is not None and alive(pid), f"pid {pid} is not running (stat {st and st[:3]})"
    s = status(pid)
    assert s["TracerPid"] == "0", f"pid {pid} is still traced by {s['TracerPid']}"
    assert st[2] not in ("t", "T"), f"pid {pid} is stopped (state {st[2]})"
    for tid in os.listdir(f"/proc/{pid}/task"):
        ts = status(pid, int(tid))
        assert ts["TracerPid"] == "0", f"thread {tid} is still traced by {ts['TracerPid']}"
        assert ts["State"][0] not in ("t", "T"), f"thread {tid} is stopped ({ts['State']})"


def checkpoint_kill(procs: Procs, pid: int, image: Path, out: Path | None = None) -> list[str]:
    """Checkpoint PID (which kills it); check that it is gone and wrote nothing more.
    Returns OUT's lines at that point."""
    checkpoint(pid, image)
    lines = read_lines(out) if out else []
    st = proc_stat(pid)
    assert st is None or st[2] in ("Z", "X"), f"pid {pid} still runs after checkpoint (state {st[2]})"
    procs.reap(pid, timeout=5)
    if out:
        time.sleep(0.1)
        assert read_lines(out) == lines, "the process wrote output after its checkpoint"
    return lines


def restore_same(procs: Procs, image: Path, pid: int) -> int:
    """Restore IMAGE; it must come back as PID, detached, running, untraced."""
    assert not os.path.exists(f"/proc/{pid}"), f"pid {pid} exists before restore"
    new = restore(image, procs)
    assert new == pid, f"restored as pid {new}, expected {pid}"
    st = proc_stat(pid)
    assert st is not None, "the restored process is gone"
    assert int(st[3]) in (1, os.getpid()), f"restored process has parent {st[3]}, not init/us"
    assert_running_untraced(pid)
    return pid


def cycle(procs: Procs, pid: int, image: Path, out: Path | None = None,
          between: Callable[[], None] | None = None) -> list[str]:
    """checkpoint (kill) + restore; BETWEEN runs while the process is gone."""
    lines = checkpoint_kill(procs, pid, image, out)
    if between:
        between()
    restore_same(procs, image, pid)
    return lines

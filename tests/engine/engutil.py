"""Checkpoint/restore steps shared by the engine tests."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from helpers import (
    Procs,
    alive,
    assert_consecutive,
    checkpoint,
    proc_stat,
    read_lines,
    restore,
    status,
    wait_for_lines,
    wait_until,
)


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


def flip_middle_byte(path: Path) -> None:
    """Damage a file the way a bad disk would: one byte in its middle inverted."""
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))


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
    try:
        new = restore(image, procs)
    except BaseException:
        if os.path.exists(f"/proc/{pid}"):  # half-restored: ours to clean up
            procs.adopt(pid)
        raise
    assert new == pid, f"restored as pid {new}, expected {pid}"
    st = proc_stat(pid)
    assert st is not None, "the restored process is gone"
    assert int(st[3]) in (1, os.getpid()), f"restored process has parent {st[3]}, not init/us"
    assert_running_untraced(pid)
    return pid


def restore_same_memsum(procs: Procs, image: Path, pid: int, out: Path) -> None:
    """tests/programs/memsum PID, checkpointed into IMAGE and still running: it goes on, is
    killed and restored from IMAGE, and every pass before and after gives the same sum."""
    wait_for_lines(out, len(read_lines(out)) + 1, timeout=30)
    procs.kill(pid)
    restore_same(procs, image, pid)
    wait_for_lines(out, len(read_lines(out)) + 2, timeout=60)
    sums = {ln.split("sum=")[1] for ln in read_lines(out) if "sum=" in ln}
    assert len(sums) == 1, f"the memory checksum changed across the checkpoint: {sums}"


def cycle(procs: Procs, pid: int, image: Path, out: Path | None = None,
          between: Callable[[], None] | None = None) -> list[str]:
    """checkpoint (kill) + restore; BETWEEN runs while the process is gone."""
    lines = checkpoint_kill(procs, pid, image, out)
    if between:
        between()
    restore_same(procs, image, pid)
    return lines


# ------------------------------------------------ "KEY n=N" progress lines (threads programs)

REPORT = re.compile(r"^(\S+) n=(\d+)")


def per_key(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ln in lines:
        m = REPORT.match(ln)
        if m:
            out.setdefault(m.group(1), []).append(ln)
    return out


def check_per_key(lines: list[str], keys: list[str]) -> dict[str, list[str]]:
    by = per_key(lines)
    for k in keys:
        assert k in by, f"no report from {k}"
        assert_consecutive([int(REPORT.match(ln).group(2)) for ln in by[k]], what=k)
        bad = [ln for ln in by[k] if "ok=0" in ln]
        assert not bad, f"{k} self-check failed: {bad[:3]}"
    return by


THREADS = ["tp-main", "tp-spin", "tp-condw", "tp-sleeper", "tp-poller", "tp-futexw"]
ALL_THREADS = [*THREADS, "tp-pauser"]  # the pauser sits in sigsuspend and never reports


def cpu_has(*flags: str) -> bool:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return all(fl in have for fl in flags)
    return False



# ------------------------------------------------ reports of the state program

GROUPS = [
    "sig", "altstack", "prctl", "creds", "rlimit", "itimer", "cwd", "shanon", "memfd",
    "fileprivate", "fileshared", "guard", "delbefore", "delafter", "brk", "fds", "fddel", "task",
]  # fmt: skip
def reports(out: Path) -> list[dict[str, str]]:
    """Complete reports in OUT, oldest first."""
    res, cur = [], None
    for ln in read_lines(out):
        if ln.startswith("begin seq="):
            cur = {"seq": ln.split("=", 1)[1]}
        elif ln.startswith("end seq=") and cur is not None:
            res.append(cur)
            cur = None
        elif cur is not None and "=" in ln:
            k, v = ln.split("=", 1)
            cur[k] = v
        elif ln.startswith("setup-error"):
            raise AssertionError(f"state program: {ln}")
    return res


def stable(rep: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in rep.items() if k != "seq" and not k.startswith("var.")}


def wait_reports(out: Path, n: int, timeout: float = 10) -> list[dict[str, str]]:
    return wait_until(lambda: (r := reports(out)) and len(r) >= n and r, timeout, f"{n} reports")  # type: ignore[return-value]


def sanity(rep: dict[str, str]) -> None:
    """Values that are right by construction (checked before and after)."""
    want_one = [k for k in rep if k.endswith((".ok", ".coherent", ".expected"))
                or k.startswith("fileshared.coherent")]  # fmt: skip
    bad = {k: rep[k] for k in want_one if rep[k] != "1"}
    assert not bad, f"self-checks failed: {bad}"
    if "rseq" in rep:
        assert rep["rseq"] == "registered", f"rseq: {rep['rseq']}"
    if "pdeath_fired" in rep:
        assert rep["pdeath_fired"] == "0", "the parent-death signal was delivered"
    if "guard.perms" in rep:
        assert rep["guard.perms"] == "rw-p/---p/rw-p", rep["guard.perms"]



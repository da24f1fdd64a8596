"""Helpers for the file-kind tests: building the C programs of tests/files/programs,
checkpoint + restore of a process (tree), fdinfo, and borrowing a process's fd (pidfd_getfd)
to feed it data from outside."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
from pathlib import Path

from helpers import CFLAGS, Procs, checkpoint, proc_stat, read_lines, restore, wait_until

PROGRAMS = Path(__file__).resolve().parent / "programs"
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def build(name: str, outdir: Path) -> Path:
    out = outdir / name
    res = subprocess.run(["gcc", *CFLAGS, "-o", str(out), str(PROGRAMS / f"{name}.c")],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"compiling {name}.c failed:\n{res.stderr}")
    return out


def getfd(pid: int, fd: int) -> int:
    """A duplicate, in this process, of fd FD of PID (pidfd_open + pidfd_getfd)."""
    pidfd = _libc.syscall(434, pid, 0)
    if pidfd < 0:
        raise OSError(ctypes.get_errno(), "pidfd_open")
    try:
        got = _libc.syscall(438, pidfd, fd, 0)
        if got < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
        return got
    finally:
        os.close(pidfd)


def fdinfo(pid: int, fd: int) -> str:
    return Path(f"/proc/{pid}/fdinfo/{fd}").read_text()


def fdinfo_field(pid: int, fd: int, key: str) -> str:
    for line in fdinfo(pid, fd).splitlines():
        k, _, v = line.partition(":")
        if k.strip() == key:
            return v.strip()
    raise KeyError(key)


def epoll_entries(pid: int, fd: int) -> list[tuple[int, int, int]]:
    return sorted((int(m[1]), int(m[2], 16), int(m[3], 16)) for m in re.finditer(
        r"tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)", fdinfo(pid, fd)))


def wait_match(path: Path, pattern: str, n: int = 1, timeout: float = 10.0) -> list[re.Match]:
    """Wait until N lines of PATH match PATTERN (re.search); return the matches."""
    rx = re.compile(pattern)

    def found() -> list[re.Match] | None:
        ms = [m for ln in read_lines(path) if (m := rx.search(ln))]
        return ms if len(ms) >= n else None

    try:
        return wait_until(found, timeout, f"{n} lines matching {pattern!r} in {path.name}")  # type: ignore[return-value]
    except AssertionError as e:
        raise AssertionError(f"{e}; last lines: {read_lines(path)[-5:]}") from None


def cycle(procs: Procs, image: Path, pids: list[int]) -> None:
    """Checkpoint the tree rooted at pids[0] (which kills it), then restore it: every PID must
    come back, running."""
    checkpoint(pids[0], image)
    for p in pids:
        st = proc_stat(p)
        assert st is None or st[2] in ("Z", "X"), f"pid {p} still runs after checkpoint"
    for p in pids:
        procs.reap(p, timeout=5)
    try:
        root = restore(image, procs)
    finally:
        for p in pids:
            if os.path.exists(f"/proc/{p}"):
                procs.adopt(p)
    assert root == pids[0], f"restored as {root}, expected {pids[0]}"
    for p in pids:
        st = proc_stat(p)
        assert st is not None and st[2] not in ("Z", "X", "t", "T"), f"pid {p} not running after restore"

"""Pages a child still shares copy-on-write with its parent are stored once in the image, and
both processes get their exact memory back."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from engutil import checkpoint_kill, restore_same, restore_same_memsum
from helpers import wait_until

pytestmark = pytest.mark.timeout(90)

MIB = 1 << 20

PROGRAM = r"""
import hashlib, os, sys, time
out = sys.argv[1]
data = bytearray(os.urandom(MIB) * 48)       # 48 MiB, shared copy-on-write after the fork
pid = os.fork()
if pid == 0:
    data[0:4] = b"CHLD"                      # the child's first page diverges
who = "child" if pid == 0 else "parent"
n = 0
while True:
    n += 1
    with open(f"{out}.{who}.tmp", "w") as f:
        f.write(f"{n} {hashlib.sha256(data).hexdigest()}\n")
    os.rename(f"{out}.{who}.tmp", f"{out}.{who}")
    time.sleep(0.2)
""".replace("MIB", str(MIB))


def _digest(path: Path) -> tuple[int, str]:
    n, digest = path.read_text().split()
    return int(n), digest


def test_cow_shared_pages_stored_once(procs, tmp_path: Path) -> None:
    out = tmp_path / "sum"
    p = procs.start([sys.executable, "-c", PROGRAM, out])
    parent_file, child_file = Path(f"{out}.parent"), Path(f"{out}.child")
    wait_until(lambda: parent_file.exists() and child_file.exists(), 20, "both digests")
    child_pid = int(open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()[0])
    procs.adopt(child_pid)
    _, want_parent = _digest(parent_file)
    _, want_child = _digest(child_file)
    assert want_parent != want_child
    checkpoint_kill(procs, p.pid, tmp_path / "img")
    procs.reap(child_pid, timeout=5)
    pages = os.path.getsize(tmp_path / "img" / "pages.img")
    assert pages < 48 * MIB * 1.5, f"shared pages stored twice: {pages / MIB:.0f} MiB of pages"
    n_parent, _ = _digest(parent_file)
    n_child, _ = _digest(child_file)
    restore_same(procs, tmp_path / "img", p.pid)
    procs.adopt(child_pid)
    wait_until(lambda: _digest(parent_file)[0] > n_parent + 1 and _digest(child_file)[0] > n_child + 1,
               20, "both processes to go on")
    assert _digest(parent_file)[1] == want_parent, "the parent's memory changed"
    assert _digest(child_file)[1] == want_child, "the child's memory changed"


def _rss_anon_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    return 0


def test_leave_running_keeps_pages_shared(procs, tmp_path: Path) -> None:
    """A --leave-running checkpoint must not break copy-on-write sharing between the
    processes it leaves running (reading through a pin would: their memory would double)."""
    out = tmp_path / "sum"
    p = procs.start([sys.executable, "-c", PROGRAM, out])
    parent_file, child_file = Path(f"{out}.parent"), Path(f"{out}.child")
    wait_until(lambda: parent_file.exists() and child_file.exists(), 20, "both digests")
    child_pid = int(open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()[0])
    procs.adopt(child_pid)
    before = _rss_anon_kib(p.pid) + _rss_anon_kib(child_pid)
    from helpers import checkpoint

    checkpoint(p.pid, tmp_path / "img", "--leave-running")
    after = _rss_anon_kib(p.pid) + _rss_anon_kib(child_pid)
    assert after < before + 24 * 1024, (
        f"private dirty memory grew from {before} to {after} KiB: shared pages were unshared")


def test_leave_running_snapshot_leaves_no_trace(compile_c, procs, tmp_path: Path) -> None:
    """--leave-running reads memory from a forked snapshot after letting the process go: the
    process keeps no extra child, no tracer, no SIGCHLD; the image still restores exactly."""
    out = tmp_path / "out"
    p = procs.start([compile_c("memsum"), out])
    from helpers import checkpoint, status, wait_for_lines

    wait_for_lines(out, 2, timeout=30)
    checkpoint(p.pid, tmp_path / "img", "--leave-running")
    with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
        assert f.read().split() == [], "the snapshot is still a child of the process"
    assert status(p.pid)["TracerPid"] == "0"
    restore_same_memsum(procs, tmp_path / "img", p.pid, out)

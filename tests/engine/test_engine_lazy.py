"""restore --lazy: the process runs at once, its memory is served on demand through
userfaultfd and streamed in the background; nothing may differ from an eager restore."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from engutil import flip_middle_byte, restore_same
from helpers import checkpoint, read_lines, torpor, wait_for_lines, wait_until

pytestmark = pytest.mark.timeout(120)

FORKER = r"""
import hashlib, os, sys, time
out = sys.argv[1]
data = bytearray(os.urandom(1 << 20) * 32)
n = 0
while True:
    n += 1
    pid = os.fork()
    if pid == 0:   # a child made while the parent's pages may still be missing
        with open(out, "a") as f:
            f.write(f"{n} {hashlib.sha256(data).hexdigest()}\n")
        os._exit(0)
    os.waitpid(pid, 0)
    with open(out, "a") as f:
        f.write(f"{n} {hashlib.sha256(data).hexdigest()}\n")
    time.sleep(0.05)
"""


def _reap_orphans(timeout: float = 2.0) -> None:
    """Children of the checkpointed tree (forked helpers, zombies) come back to pytest, the
    subreaper, when the tree is killed: collect them so their PIDs are free again."""
    import os

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(0.02)
        except ChildProcessError:
            return


def _lazy_restore(procs, image: Path, pid: int) -> None:
    res = torpor("restore", "--lazy", "--image-path", image)
    assert int(res.stdout) == pid
    procs.adopt(pid)


def test_lazy_restore_memsum(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("memsum"), out, "64"])
    wait_for_lines(out, 2, timeout=30)
    checkpoint(p.pid, tmp_path / "img")
    procs.reap(p.pid, timeout=5)
    n = len(read_lines(out))
    t0 = time.monotonic()
    _lazy_restore(procs, tmp_path / "img", p.pid)
    assert time.monotonic() - t0 < 30
    wait_for_lines(out, n + 3, timeout=60)
    sums = {ln.split("sum=")[1] for ln in read_lines(out) if "sum=" in ln}
    assert len(sums) == 1, f"memory differs after a lazy restore: {sums}"


def test_lazy_restore_of_a_process_that_forks(procs, tmp_path: Path) -> None:
    """Children forked while pages are still missing see the same memory (userfaultfd fork
    events hand the server the child's address space)."""
    out = tmp_path / "out"
    p = procs.start([sys.executable, "-c", FORKER, out])
    wait_for_lines(out, 4, timeout=30)
    checkpoint(p.pid, tmp_path / "img")
    procs.reap(p.pid, timeout=5)
    _reap_orphans()
    n = len(read_lines(out))
    _lazy_restore(procs, tmp_path / "img", p.pid)
    wait_until(lambda: len(read_lines(out)) >= n + 10, 60, "the restored process to fork on")
    digests = {ln.split()[1] for ln in read_lines(out)}
    assert len(digests) == 1, f"a parent or child saw different memory: {digests}"


def test_eager_and_lazy_restore_the_same_image(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("memsum"), out, "32"])
    wait_for_lines(out, 2, timeout=30)
    checkpoint(p.pid, tmp_path / "img")
    procs.reap(p.pid, timeout=5)
    restore_same(procs, tmp_path / "img", p.pid)
    wait_for_lines(out, len(read_lines(out)) + 1, timeout=30)
    procs.kill(p.pid)
    procs.reap(p.pid, timeout=5)
    _lazy_restore(procs, tmp_path / "img", p.pid)
    wait_for_lines(out, len(read_lines(out)) + 2, timeout=60)
    sums = {ln.split("sum=")[1] for ln in read_lines(out) if "sum=" in ln}
    assert len(sums) == 1


def test_lazy_restore_of_a_damaged_page_file_is_killed(compile_c, procs, tmp_path: Path) -> None:
    """Page checksums are checked by the page server while the process already runs: a
    damaged page file ends the restored process instead of letting it run on wrong memory
    (an eager restore refuses the image before anything exists)."""
    import os

    out = tmp_path / "out"
    p = procs.start([compile_c("memsum"), out, "16"])
    wait_for_lines(out, 2, timeout=30)
    checkpoint(p.pid, tmp_path / "img")
    procs.reap(p.pid, timeout=5)
    flip_middle_byte(tmp_path / "img" / "pages.img")
    res = torpor("restore", "--image-path", tmp_path / "img", check=False)
    assert res.returncode != 0 and "checksum" in res.stderr
    _lazy_restore(procs, tmp_path / "img", p.pid)
    wait_until(lambda: not os.path.exists(f"/proc/{p.pid}") or open(f"/proc/{p.pid}/stat").read().split()[2] == "Z",
               30, "the damaged lazy restore to be stopped")

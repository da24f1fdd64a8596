"""Incremental checkpoints: --track-mem leaves write tracking (userfaultfd WP_ASYNC) in the
process; `checkpoint --parent-path` stores only the pages written since and restore follows
the chain of images."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from engutil import flip_middle_byte, restore_same
from helpers import checkpoint, read_lines, wait_for_lines

pytestmark = pytest.mark.timeout(120)

# Each round changes one random page of 32 MiB and checks first that the whole area still
# hashes to what it held after the previous round: a page restored from the wrong image
# (stale, or missing) shows up as CORRUPT.
WRITER = r"""
import hashlib, os, random, sys, time
out = sys.argv[1]
data = bytearray(os.urandom(1 << 20) * 32)
last = hashlib.sha256(data).hexdigest()
n = 0
while True:
    n += 1
    now = hashlib.sha256(data).hexdigest()
    state = "ok" if now == last else "CORRUPT"
    i = random.randrange(len(data) // 4096) * 4096
    data[i : i + 8] = os.urandom(8)
    last = hashlib.sha256(data).hexdigest()
    with open(out, "a") as f:
        f.write(f"{n} {state}\n")
    time.sleep(0.05)
"""


def _size(path: Path) -> int:
    return sum(os.path.getsize(path / f) for f in os.listdir(path))


def test_incremental_chain_stores_only_written_pages(procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([sys.executable, "-c", WRITER, out])
    wait_for_lines(out, 3, timeout=30)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    checkpoint(p.pid, a, "--leave-running", "--track-mem")
    wait_for_lines(out, len(read_lines(out)) + 5, timeout=30)
    checkpoint(p.pid, b, "--leave-running", "--track-mem", "--parent-path", a)
    wait_for_lines(out, len(read_lines(out)) + 5, timeout=30)
    checkpoint(p.pid, c, "--parent-path", b)
    procs.reap(p.pid, timeout=5)
    assert _size(a) > 32 << 20
    assert _size(b) < 8 << 20, f"incremental image b holds {_size(b)} bytes"
    assert _size(c) < 8 << 20, f"incremental image c holds {_size(c)} bytes"
    n = len(read_lines(out))
    restore_same(procs, c, p.pid)
    wait_for_lines(out, n + 10, timeout=30)
    assert all(ln.endswith(" ok") for ln in read_lines(out)), "memory from the chain is wrong"
    nums = [int(ln.split()[0]) for ln in read_lines(out)]
    assert nums == list(range(1, len(nums) + 1))


def test_tracker_fd_stays_out_of_images(procs, tmp_path: Path) -> None:
    """The tracker left in the process is not saved: a plain checkpoint after --track-mem
    works and the restored process has no userfaultfd."""
    out = tmp_path / "out"
    p = procs.start([sys.executable, "-c", WRITER, out])
    wait_for_lines(out, 3, timeout=30)
    checkpoint(p.pid, tmp_path / "a", "--leave-running", "--track-mem")
    links = [os.readlink(f"/proc/{p.pid}/fd/{f}") for f in os.listdir(f"/proc/{p.pid}/fd")]
    assert "anon_inode:[userfaultfd]" in links
    checkpoint(p.pid, tmp_path / "b")
    procs.reap(p.pid, timeout=5)
    restore_same(procs, tmp_path / "b", p.pid)
    links = [os.readlink(f"/proc/{p.pid}/fd/{f}") for f in os.listdir(f"/proc/{p.pid}/fd")]
    assert "anon_inode:[userfaultfd]" not in links
    wait_for_lines(out, len(read_lines(out)) + 5, timeout=30)
    assert all(ln.endswith(" ok") for ln in read_lines(out))


def test_missing_parent_image_is_refused(procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([sys.executable, "-c", WRITER, out])
    wait_for_lines(out, 3, timeout=30)
    checkpoint(p.pid, tmp_path / "a", "--leave-running", "--track-mem")
    checkpoint(p.pid, tmp_path / "b", "--parent-path", tmp_path / "a")
    procs.reap(p.pid, timeout=5)
    os.rename(tmp_path / "a", tmp_path / "a-moved")
    from helpers import assert_clean_error, torpor

    res = torpor("restore", "--image-path", tmp_path / "b", check=False)
    assert_clean_error(res, "restore without its parent image")
    assert "parent image" in res.stderr
    assert not os.path.exists(f"/proc/{p.pid}")


def test_damaged_parent_image_is_refused_or_stopped(procs, tmp_path: Path) -> None:
    """The parent's page checksums count as much as the image's own: an eager restore of an
    incremental image whose parent is damaged fails and leaves nothing; a lazy one (checked
    while it runs) is stopped instead of running on wrong memory."""
    import time

    from helpers import assert_clean_error, torpor, wait_until

    out = tmp_path / "out"
    p = procs.start([sys.executable, "-c", WRITER, out])
    wait_for_lines(out, 3, timeout=30)
    a, b = tmp_path / "a", tmp_path / "b"
    checkpoint(p.pid, a, "--leave-running", "--track-mem")
    checkpoint(p.pid, b, "--parent-path", a)
    procs.reap(p.pid, timeout=5)
    flip_middle_byte(a / "pages.img")
    res = torpor("restore", "--image-path", b, check=False)
    assert_clean_error(res, "restore with a damaged parent image")
    assert "checksum" in res.stderr
    assert not os.path.exists(f"/proc/{p.pid}")
    res = torpor("restore", "--lazy", "--image-path", b, check=False)
    if res.returncode == 0:  # it ran: the check in the background must stop it
        procs.adopt(p.pid)

        def stopped() -> bool:
            try:
                with open(f"/proc/{p.pid}/stat") as f:
                    return f.read().split()[2] == "Z"
            except FileNotFoundError:
                return True
        wait_until(stopped, 30, "the lazy restore on a damaged parent to be stopped")
    else:
        assert "checksum" in res.stderr
    time.sleep(0.2)

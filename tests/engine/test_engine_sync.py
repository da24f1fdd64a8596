"""Durability: `checkpoint` leaves the image in the page cache (as CRIU does) unless --sync;
integrity does not depend on it: restore checks every page file's checksum, so an image
whose data a crash tore is refused, never restored wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from engutil import restore_same
from helpers import checkpoint, read_lines, torpor, wait_for_lines

pytestmark = pytest.mark.timeout(120)


def test_sync_image_restores_same_memory(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("memsum"), out, "16"])
    wait_for_lines(out, 2, timeout=30)
    checkpoint(p.pid, tmp_path / "img", "--sync")
    procs.reap(p.pid, timeout=5)
    n = len(read_lines(out))
    restore_same(procs, tmp_path / "img", p.pid)
    wait_for_lines(out, n + 2, timeout=60)
    sums = {ln.split("sum=")[1] for ln in read_lines(out) if "sum=" in ln}
    assert len(sums) == 1, f"memory changed across the image: {sums}"


def test_torn_page_data_is_refused(compile_c, procs, tmp_path: Path) -> None:
    """What a crash before writeback can leave: a committed manifest over page data that never
    reached the disk (zeros where pages were)."""
    out = tmp_path / "out"
    p = procs.start([compile_c("memsum"), out, "16"])
    wait_for_lines(out, 2, timeout=30)
    checkpoint(p.pid, tmp_path / "img")
    procs.reap(p.pid, timeout=5)
    pages = tmp_path / "img" / "pages.img"
    size = pages.stat().st_size
    with open(pages, "r+b") as f:  # a hole in the middle, as unwritten blocks read back
        f.seek(size // 2 // 4096 * 4096)
        f.write(bytes(4096 * 4))
    res = torpor("restore", "--image-path", tmp_path / "img", check=False)
    assert res.returncode != 0
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("torpor: ") and "pages.img" in err[0], res.stderr
    assert not os.path.exists(f"/proc/{p.pid}"), "a refused restore left a process behind"

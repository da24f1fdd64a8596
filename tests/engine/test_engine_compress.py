"""checkpoint --compress zstd: a smaller image that restores the same memory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from engutil import restore_same
from helpers import checkpoint, read_lines, wait_for_lines

pytestmark = pytest.mark.timeout(120)


def test_zstd_image_restores_same_memory(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("memsum"), out, "64"])
    wait_for_lines(out, 2, timeout=30)
    checkpoint(p.pid, tmp_path / "img", "--compress", "zstd")
    procs.reap(p.pid, timeout=5)
    entry = json.loads((tmp_path / "img" / "manifest.json").read_text())["files"]["pages.img"]
    assert entry["compression"] == "zstd"
    stored = os.path.getsize(tmp_path / "img" / "pages.img")
    assert stored < entry["raw_size"], f"{entry['raw_size']} bytes of pages stored as {stored}"
    n = len(read_lines(out))
    restore_same(procs, tmp_path / "img", p.pid)
    wait_for_lines(out, n + 2, timeout=60)
    sums = {ln.split("sum=")[1] for ln in read_lines(out) if "sum=" in ln}
    assert len(sums) == 1, f"memory changed across a compressed image: {sums}"

"""PageMap.regions (PAGEMAP_SCAN) on an area with more regions than one call's vector holds."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from helpers import wait_for_lines

from torpor.engine.linux.pagemap import PAGE_IS_PFNZERO, PageMap

pytestmark = pytest.mark.timeout(60)


def test_regions_do_not_repeat_pages_across_full_vectors(compile_c, procs, tmp_path: Path) -> None:
    """memsum's 128 MiB (pattern pages, zero-filled pages, never-touched pages read through
    the zero page) makes ~9400 regions. With the vector full the kernel's walk_end fell before
    the end of the last region returned, and the next call reported 515 pages again: the
    copy-on-write checkpoint planned them twice and restored 3 of them as zeros."""
    out = tmp_path / "out"
    p = procs.start([compile_c("memsum"), out, "128"])
    wait_for_lines(out, 2, timeout=60)  # two passes: the zero page is mapped where untouched
    os.kill(p.pid, signal.SIGSTOP)
    size = 128 << 20
    with open(f"/proc/{p.pid}/maps") as f:
        spans = [tuple(int(x, 16) for x in ln.split()[0].split("-")) for ln in f]
    lo, hi = next((a, b) for a, b in spans if size <= b - a < size + (4 << 20))
    pm = PageMap(p.pid)
    try:
        regions = pm.regions(lo, hi)
    finally:
        pm.close()
    assert len(regions) > 4096 * 2, "too few regions to fill the scan vector"
    prev = lo
    for start, end, _ in regions:
        assert prev <= start < end <= hi, f"region {start:#x}-{end:#x} overlaps or runs back"
        prev = end
    assert sum(e - s for s, e, _ in regions) == hi - lo, "every page is present or zero-page"
    assert any(c & PAGE_IS_PFNZERO for _, _, c in regions)

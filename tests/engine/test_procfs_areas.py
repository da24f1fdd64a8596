"""procfs.read_bracketed_areas against the full maps parser, on this process's real maps."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from torpor.engine.linux.procfs import read_bracketed_areas, read_maps


def test_bracketed_areas_match_full_parse_and_ignore_file_names(tmp_path: Path) -> None:
    # a mapped file whose name ends like a special area must not be taken for it
    decoy = tmp_path / "decoy [vdso]"
    decoy.write_bytes(b"\0" * mmap.PAGESIZE)
    with open(decoy, "rb") as f, mmap.mmap(f.fileno(), mmap.PAGESIZE, prot=mmap.PROT_READ) as m:
        assert m[0] == 0
        full = read_maps(os.getpid(), with_flags=False)
        assert any(e.path == str(decoy) for e in full)
        want = {e.path: (e.start, e.end) for e in full if e.path.startswith("[")}
        got = read_bracketed_areas(os.getpid())
    assert "[vdso]" in got and "[stack]" in got
    assert got == want

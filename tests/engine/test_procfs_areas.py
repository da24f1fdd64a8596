"""procfs.read_bracketed_areas and read_layout against the full maps parser, on real maps."""

from __future__ import annotations

import mmap
import os
import subprocess
from pathlib import Path

from helpers import wait_until

from torpor.engine.linux.procfs import read_bracketed_areas, read_layout, read_maps


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


def test_layout_matches_full_parse(tmp_path: Path) -> None:
    """read_layout: every area's range and the bracketed names, as read_maps sees them (a
    sleeping process: its maps hold still), a decoy file name not taken for [vdso]."""
    decoy = tmp_path / "decoy [vdso]"
    decoy.write_bytes(b"\0" * mmap.PAGESIZE)
    sleeper = subprocess.Popen(["python3", "-c", "import mmap, sys, time; f = open(sys.argv[1]); "
                                "m = mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ); "
                                "print(flush=True); time.sleep(100)", decoy],
                               stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        sleeper.stdout.readline()
        wait_until(lambda: _in_sleep(sleeper.pid), 5, "the sleeper blocked in its sleep")
        full = read_maps(sleeper.pid, with_flags=False)
        ranges, named = read_layout(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert any(e.path == str(decoy) for e in full)
    assert ranges == [(e.start, e.end) for e in full]
    assert named == {e.path: (e.start, e.end) for e in full if e.path.startswith("[")}
    assert "[vdso]" in named and "[stack]" in named


def _in_sleep(pid: int) -> bool:
    """Blocked in (clock_)nanosleep: past the dynamic loader, its maps hold still."""
    with open(f"/proc/{pid}/syscall") as f:
        return f.read().split()[0] in ("35", "230")


def test_smaps_areas_and_flags_match_maps() -> None:
    """read_maps from smaps (with VmFlags) lists the same areas as maps, each with its flags
    (a sleeping process: its maps hold still); an area made MADV_DONTFORK shows "dc", which
    the dump relies on."""
    sleeper = subprocess.Popen(["sleep", "100"])
    try:
        wait_until(lambda: _in_sleep(sleeper.pid), 5, "sleep(1) blocked in its sleep")
        plain = read_maps(sleeper.pid, with_flags=False)
        flagged = read_maps(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert [(e.start, e.end, e.perms, e.path) for e in flagged] == \
        [(e.start, e.end, e.perms, e.path) for e in plain]
    assert all(e.vmflags for e in flagged)
    assert any("gd" in e.vmflags for e in flagged)  # the stack grows down
    with mmap.mmap(-1, 4 * mmap.PAGESIZE) as m:
        m.madvise(mmap.MADV_DONTFORK)
        assert any("dc" in e.vmflags for e in read_maps(os.getpid()))

"""Areas come back with the memory-accounting flag they had: a read-only private file area
that was writable once (a library's RELRO segment, relocated then mprotected read-only by
the loader) is accountable ("ac" in smaps VmFlags) and holds copy-on-write pages."""

from __future__ import annotations

from pathlib import Path

import pytest
from engutil import checkpoint_kill, cycle
from helpers import PROGRAMS, PYTHON, assert_consecutive, read_lines, torpor, wait_for_lines

pytestmark = pytest.mark.timeout(60)


def private_file_flags(pid: int) -> dict[tuple[int, int], tuple[str, bool]]:
    """(start, end) -> (perms, accountable) of the private file mappings of pid."""
    out: dict[tuple[int, int], tuple[str, bool]] = {}
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                cur = fields
            elif fields[0] == "VmFlags:" and cur is not None:
                if cur[1].endswith("p") and len(cur) > 5 and cur[5].startswith("/"):
                    a, b = (int(x, 16) for x in cur[0].split("-"))
                    out[(a, b)] = (cur[1], "ac" in fields[1:])
    return out


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_relro_areas_stay_accountable(procs, tmp_path: Path, lazy: bool) -> None:
    out = tmp_path / "count.txt"
    p = procs.start([PYTHON, PROGRAMS / "counter.py", out, "0.02"])
    wait_for_lines(out, 3)
    before = private_file_flags(p.pid)
    relro = {k for k, (perms, ac) in before.items() if perms == "r--p" and ac}
    assert relro, "a dynamically linked python has RELRO areas"
    if lazy:
        checkpoint_kill(procs, p.pid, tmp_path / "img", out)
        res = torpor("restore", "--lazy", "--image-path", tmp_path / "img")
        assert res.stdout.split()[-1] == str(p.pid), res.stdout
        procs.adopt(p.pid)
    else:
        cycle(procs, p.pid, tmp_path / "img", out)
    after = private_file_flags(p.pid)
    assert after == before, sorted(set(after.items()) ^ set(before.items()))[:6]
    n = len(read_lines(out))
    wait_for_lines(out, n + 3)
    assert_consecutive([int(x) for x in read_lines(out)], what="counter")

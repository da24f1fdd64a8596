"""Pseudo-terminal pairs whose both ends are in the tree (issue 6): after restore the pair
carries data both ways with the same termios and window size; the slave number may change.

Every process a test starts or restores is tracked by PID and start time (helpers.Procs) and
SIGKILLed at the end; pytest is a child subreaper here (conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import PYTHON, checkpoint, read_lines, restore, wait_until

PROGRAMS = Path(__file__).resolve().parent / "programs"


def oks(log: Path) -> list[int]:
    return [int(m[1]) for ln in read_lines(log) if (m := re.match(r"ok (\d+)$", ln))]


def state(log: Path, tmp_path: Path, n: int) -> str:
    (tmp_path / "check").touch()
    lines = wait_until(lambda: (s := [ln for ln in read_lines(log) if ln.startswith("state ")])
                       and len(s) >= n and s, 10, "state line")
    return lines[n - 1]


def test_pty_pair_inside(procs, tmp_path: Path) -> None:
    log = tmp_path / "pty.log"
    p = procs.start([PYTHON, PROGRAMS / "pty_pair.py"], cwd=tmp_path, name="pty_pair")
    wait_until(lambda: len(oks(log)) >= 3, 10, "pings")
    before = state(log, tmp_path, 1)
    assert "echo=0 rows=33 cols=101" in before
    checkpoint(p.pid, tmp_path / "img")
    procs.reap(p.pid, timeout=5)
    n = len(oks(log))
    assert restore(tmp_path / "img", procs) == p.pid
    wait_until(lambda: len(oks(log)) >= n + 5, 10, "pings after restore")
    after = state(log, tmp_path, 2)
    assert "echo=0 rows=33 cols=101" in after, after
    assert not [ln for ln in read_lines(log) if ln.startswith("bad ")]
    ns = oks(log)
    assert ns == list(range(1, len(ns) + 1))

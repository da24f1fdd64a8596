"""A parent and child over unix socketpairs with data in flight both ways at checkpoint."""

from __future__ import annotations

from pathlib import Path

from helpers import Procs
from sockutil import checkpoint_kill, lines, restore_same, start, wait_lines


def test_socketpair_data_in_flight(procs: Procs, tmp_path: Path) -> None:
    out, go, image = tmp_path / "out", tmp_path / "go", tmp_path / "img"
    pid = start(procs, "pair", out, go)
    wait_lines(out, r"^ready", 2)
    child = int(next(ln.split()[1] for ln in lines(out) if ln.startswith("child ")))
    procs.adopt(child)
    checkpoint_kill(procs, pid, image)
    procs.reap(child, timeout=5)
    restore_same(procs, image, pid)
    procs.adopt(child)
    go.touch()
    wait_lines(out, r"^parent done", 1, timeout=20)
    got = lines(out)
    assert "child stream ok" in got, got
    assert "parent stream ok" in got, got
    assert "child dgram dgram from parent 0 | dgram from parent 1" in got, got
    assert ("parent dgram dgram from child 0 | dgram from child 1 | dgram from child 2"
            in got), got
    assert "child seq seq from parent A | seq from parent B" in got, got
    assert "parent seq seq from child A | seq from child B" in got, got
    assert "child passcred 1 blocking False" in got, got
    assert "parent done 0" in got, got


def test_accepted_pair_and_oneway_dgram(procs: Procs, tmp_path: Path) -> None:
    """An accepted stream connection (data queued both ways) and a dgram client connected
    one way to a server whose path was unlinked, with datagrams queued."""
    out, go, image = tmp_path / "out", tmp_path / "go", tmp_path / "img"
    pid = start(procs, "mixed", tmp_path, out, go)
    wait_lines(out, r"^ready")
    child = int(next(ln.split()[1] for ln in lines(out) if ln.startswith("child ")))
    procs.adopt(child)
    checkpoint_kill(procs, pid, image)
    procs.reap(child, timeout=5)
    restore_same(procs, image, pid)
    procs.adopt(child)
    go.touch()
    wait_lines(out, r"^done", timeout=20)
    got = lines(out)
    assert "child got to child" in got, got
    assert "server got to server" in got, got
    assert "server logs log 1 | log 2 | log 3" in got, got
    assert not (tmp_path / "log.sock").exists()

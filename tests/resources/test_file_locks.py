"""File locks (issue 6): flock, OFD and POSIX locks held by a Python program, and sqlite3
inside BEGIN EXCLUSIVE, are held again after `checkpoint --file-locks` and restore: another
process's non-blocking attempt still fails until the restored one lets go. Without
--file-locks the checkpoint is refused (process, fd, file and lock named) and the process
keeps running.

Every process a test starts or restores is tracked by PID and start time (helpers.Procs) and
SIGKILLed at the end; pytest is a child subreaper here (conftest.py)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path

from helpers import (
    PYTHON,
    assert_clean_error,
    checkpoint,
    proc_stat,
    read_lines,
    restore,
    wait_until,
)

PROGRAMS = Path(__file__).resolve().parent / "programs"

PROBE = r"""
import fcntl, json, os, struct
F = struct.Struct("<hhxxxxqqi4x")
res = {}
def attempt(name, fn):
    try:
        fn()
        res[name] = "got"
    except OSError:
        res[name] = "busy"
a = os.open("flock.dat", os.O_RDWR)
attempt("flock", lambda: fcntl.flock(a, fcntl.LOCK_EX | fcntl.LOCK_NB))
b = os.open("ofd.dat", os.O_RDWR)
attempt("ofd", lambda: fcntl.fcntl(b, 37, F.pack(fcntl.F_WRLCK, 0, 15, 1, 0)))
attempt("ofd_outside", lambda: fcntl.fcntl(b, 37, F.pack(fcntl.F_WRLCK, 0, 40, 1, 0)))
c = os.open("posix.dat", os.O_RDWR)
attempt("posix_w", lambda: fcntl.fcntl(c, fcntl.F_SETLK, F.pack(fcntl.F_WRLCK, 0, 50, 1, 0)))
attempt("posix_r", lambda: fcntl.fcntl(c, fcntl.F_SETLK, F.pack(fcntl.F_RDLCK, 0, 150, 1, 0)))
attempt("posix_w2", lambda: fcntl.fcntl(c, fcntl.F_SETLK, F.pack(fcntl.F_WRLCK, 0, 150, 1, 0)))
print(json.dumps(res))
"""
HELD = {"flock": "busy", "ofd": "busy", "ofd_outside": "got", "posix_w": "busy",
        "posix_r": "got", "posix_w2": "busy"}


def probe(cwd: Path) -> dict[str, str]:
    res = subprocess.run([PYTHON, "-c", PROBE], cwd=cwd, capture_output=True, text=True,
                         timeout=20)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def locks_of(pid: int) -> list[str]:
    """The lock lines of every fd of pid, without lock numbers and pids."""
    out = []
    for fd in Path(f"/proc/{pid}/fdinfo").iterdir():
        for line in fd.read_text().splitlines():
            if line.startswith("lock:"):
                w = line.split()
                out.append(f"{fd.name} {' '.join(w[2:5] + w[6:])}")
    return sorted(out)


def ticks(log: Path) -> int:
    return sum(1 for ln in read_lines(log) if ln.startswith("tick "))


def test_flock_ofd_posix_locks(procs, tmp_path: Path) -> None:
    log = tmp_path / "locks.log"
    p = procs.start([PYTHON, PROGRAMS / "locks_hold.py"], cwd=tmp_path, name="locks_hold")
    wait_until(lambda: any(ln.startswith("locked") for ln in read_lines(log)), 10, "locked")
    fds = [int(x) for x in re.findall(r"\d+", read_lines(log)[0])]
    held = locks_of(p.pid)
    assert len(held) == 4, held
    assert probe(tmp_path) == HELD

    # without --file-locks: refused, naming the process, the fd, the file and the lock
    res = checkpoint(p.pid, tmp_path / "refused", check=False)
    assert_clean_error(res, "checkpoint of held locks without --file-locks")
    assert f"process {p.pid}: fd {fds[0]} ({tmp_path}/flock.dat) holds a flock write lock" in res.stderr
    assert "--file-locks" in res.stderr
    n = ticks(log)
    wait_until(lambda: ticks(log) > n + 3, 10, "the refused process to keep running")
    assert probe(tmp_path) == HELD

    checkpoint(p.pid, tmp_path / "img", "--file-locks")
    procs.reap(p.pid, timeout=5)
    assert restore(tmp_path / "img", procs) == p.pid
    assert locks_of(p.pid) == held
    assert probe(tmp_path) == HELD
    n = ticks(log)
    wait_until(lambda: ticks(log) > n + 3, 10, "ticks after restore")
    (tmp_path / "release").touch()
    wait_until(lambda: "released" in read_lines(log), 10, "released")
    assert probe(tmp_path) == {k: "got" for k in HELD}


def test_sqlite_exclusive_transaction(procs, tmp_path: Path) -> None:
    """sqlite3 holds t.db in BEGIN EXCLUSIVE (POSIX locks on the lock bytes and a hot
    journal): after restore another connection still gets "database is locked"; once the
    restored process commits, its row is there."""
    log = tmp_path / "sqlite.log"
    p = procs.start([PYTHON, PROGRAMS / "sqlite_hold.py"], cwd=tmp_path, name="sqlite_hold")
    wait_until(lambda: "exclusive" in read_lines(log), 10, "exclusive")

    def other_write() -> str:
        db = sqlite3.connect(tmp_path / "t.db", timeout=0, isolation_level=None)
        try:
            db.execute("INSERT INTO t VALUES ('from outside')")
            return "written"
        except sqlite3.OperationalError as err:
            return str(err)
        finally:
            db.close()

    assert other_write() == "database is locked"
    held = locks_of(p.pid)
    assert held
    checkpoint(p.pid, tmp_path / "img", "--file-locks")
    procs.reap(p.pid, timeout=5)
    assert restore(tmp_path / "img", procs) == p.pid
    st = proc_stat(p.pid)
    assert st is not None and st[2] not in ("Z", "X", "t", "T")
    assert locks_of(p.pid) == held
    assert other_write() == "database is locked"
    (tmp_path / "commit").touch()
    wait_until(lambda: "committed" in read_lines(log), 10, "commit")
    assert other_write() == "written"
    wait_until(lambda: "rows 2" in read_lines(log), 10, "the restored process to see 2 rows")
    rows = sqlite3.connect(tmp_path / "t.db").execute("SELECT v FROM t ORDER BY rowid").fetchall()
    assert rows == [("from the held transaction",), ("from outside",)]
    (tmp_path / "stop").touch()

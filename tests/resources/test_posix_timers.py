"""POSIX timers (issue 6): a C program whose timers keep firing at their interval after
checkpoint and restore, with the same ids, clocks, signals, sigev_value and SIGEV_THREAD_ID
target thread; a disarmed timer stays disarmed, a one-shot keeps its remaining time.

Every process a test starts or restores is tracked by PID and start time (helpers.Procs) and
SIGKILLed at the end; pytest is a child subreaper here (conftest.py)."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
from pathlib import Path

from helpers import CFLAGS, checkpoint, proc_stat, read_lines, restore, torpor, wait_until

PROGRAMS = Path(__file__).resolve().parent / "programs"


def build(name: str, outdir: Path) -> Path:
    out = outdir / name
    res = subprocess.run(["gcc", *CFLAGS, "-o", str(out), str(PROGRAMS / f"{name}.c")],
                         capture_output=True, text=True)
    assert res.returncode == 0, f"compiling {name}.c failed:\n{res.stderr}"
    return out


def timers(pid: int) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {}
    cur: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/timers").read_text().splitlines():
        k, _, v = line.partition(":")
        if k == "ID":
            cur = out.setdefault(int(v), {})
        else:
            cur[k] = v.strip()
    return out


def ticks(log: Path, which: str) -> list[re.Match]:
    rx = re.compile(rf"^tick which={which} n=(\d+) value=(\d+) t=([\d.]+) tid=(\d+)")
    return [m for ln in read_lines(log) if (m := rx.match(ln))]


def test_posix_timers_keep_firing(procs, tmp_path: Path) -> None:
    exe = build("posix_timers", tmp_path)
    log = tmp_path / "posix_timers.log"
    p = procs.start([exe], cwd=tmp_path, name="posix_timers_prog")
    wait_until(lambda: len(ticks(log, "A")) >= 5 and len(ticks(log, "B")) >= 3, 10, "ticks")
    ids_line = next(ln for ln in read_lines(log) if ln.startswith("ids "))
    m = re.match(r"ids (\d+) (\d+) (\d+) (\d+) tid=(\d+)", ids_line)
    assert m
    ta, tb, tc, td, worker = (int(x) for x in m.groups())
    before = timers(p.pid)
    assert set(before) >= {ta, tb, tc, td}

    checkpoint(p.pid, tmp_path / "img")
    procs.reap(p.pid, timeout=5)
    n_a, n_b = len(ticks(log, "A")), len(ticks(log, "B"))
    assert restore(tmp_path / "img", procs) == p.pid
    st = proc_stat(p.pid)
    assert st is not None and st[2] not in ("Z", "X", "t", "T")

    # same ids, clocks, signals, values and notification (the thread id comes back equal)
    after = timers(p.pid)
    assert after == before
    assert after[tb]["notify"] == f"signal/tid.{worker}"

    wait_until(lambda: len(ticks(log, "A")) >= n_a + 12 and len(ticks(log, "B")) >= n_b + 8, 10,
               "ticks after restore")
    for which, period, value in (("A", 0.100, 0x5EED), ("B", 0.150, 77)):
        ms = ticks(log, which)
        ns = [int(x[1]) for x in ms]
        assert ns == list(range(1, len(ns) + 1)), f"timer {which}: ticks not consecutive: {ns}"
        assert {int(x[2]) for x in ms} == {value}, f"timer {which}: sigev_value changed"
        new = ms[(n_a if which == "A" else n_b) + 1 :]
        gaps = [float(b[3]) - float(a[3]) for a, b in zip(new, new[1:], strict=False)]
        assert abs(statistics.median(gaps) - period) < period * 0.3, f"timer {which}: gaps {gaps}"
    # SIGEV_THREAD_ID still reaches the worker thread, the process-directed one the main thread
    assert {int(x[4]) for x in ticks(log, "B")} == {worker}
    assert {int(x[4]) for x in ticks(log, "A")} == {p.pid}
    # saved: intervals, the one-shot's remaining time (an hour, less the seconds that
    # passed), the disarmed one as disarmed
    res = torpor("image", "show", tmp_path / "img", "--format", "json")
    saved = {t["id"]: t for t in json.loads(res.stdout)["tree"]["processes"][0]["posix_timers"]}
    assert saved[ta]["interval_ns"] == 100_000_000
    assert saved[tb]["interval_ns"] == 150_000_000 and saved[tb]["notify"] == 4
    assert saved[tc].get("value_ns", 0) == 0
    assert 3500 * 10**9 < saved[td]["value_ns"] <= 3600 * 10**9

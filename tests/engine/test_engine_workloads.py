"""The workloads themselves, without torpor: when an engine test fails, these show that the
program was right to begin with."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from engutil import GROUPS, THREADS, check_per_key, cpu_has, per_key, reports, sanity, wait_reports
from helpers import PROGRAMS, PYTHON, assert_consecutive, read_lines, wait_for_lines, wait_until

pytestmark = pytest.mark.timeout(30)


def test_counters(compile_c, procs, tmp_path: Path) -> None:
    for i, argv in enumerate([[compile_c("counter")], [PYTHON, PROGRAMS / "counter.py"]]):
        out = tmp_path / f"out{i}"
        procs.start([*argv, out])
        wait_for_lines(out, 5)
        assert_consecutive([int(x) for x in read_lines(out)])


def test_threads_workload(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("threads"), out])
    wait_until(lambda: all(len(per_key(read_lines(out)).get(k, [])) >= 3 for k in THREADS), 10, "reports")
    check_per_key(read_lines(out), THREADS)
    os.kill(p.pid, signal.SIGUSR1)
    lines = wait_for_lines(out, 1, timeout=5, match="^forked ")
    assert {"joined sleeper", "joined late", "forked status=7"} <= set(lines)
    assert not [ln for ln in lines if "woke" in ln or "ok=0" in ln]


def test_pythreads_workload(procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    keys = ["worker-0", "worker-1", "worker-2", "pool", "main"]
    procs.start([PYTHON, PROGRAMS / "pythreads.py", out])
    wait_until(lambda: all(len(per_key(read_lines(out)).get(k, [])) >= 3 for k in keys), 15, "reports")
    check_per_key(read_lines(out), keys)


@pytest.mark.skipif(not cpu_has("avx512f", "avx512bw"), reason="CPU lacks avx512f/avx512bw")
def test_avx512_workload(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    procs.start([compile_c("avx512"), out])
    lines = wait_for_lines(out, 3)
    assert all(ln.startswith("OK ") for ln in lines), lines


def test_memsum_and_manymaps_workloads(compile_c, procs, tmp_path: Path) -> None:
    for name, args in (("memsum", ["64"]), ("manymaps", [])):
        out = tmp_path / name
        procs.start([compile_c(name), out, *args])
        lines = wait_for_lines(out, 3, timeout=15)
        assert len({ln.split("sum=")[1] for ln in lines}) == 1, lines


def test_sigframe_workload(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("sigframe"), out])
    wait_for_lines(out, 2)
    os.kill(p.pid, signal.SIGUSR1)
    lines = wait_for_lines(out, 2, match="^main n=")
    assert "back ret=0 xmm=1 mask=1" in lines


def test_state_workload(compile_c, procs, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "out"
    p = procs.start([compile_c("state"), out, work, "all"])
    reps = wait_reports(out, 3)
    for r in reps:
        sanity(r)
    seen = {k.split(".")[0] for k in reps[-1]}
    assert {"sa", "rlimit", "fd", "mem", "fddel", "memfd"} <= seen
    assert len(GROUPS) >= 17
    os.kill(p.pid, signal.SIGUSR1)
    lines = wait_for_lines(out, 1, timeout=5, match="^drain done$")
    assert len([ln for ln in lines if ln.startswith("drained ")]) == 4
    assert reports(out)

"""checkpoint --leave-running must leave the process exactly as it was: dumping runs syscalls
inside the task and borrows its memory and signal mask, all of which must be put back."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from engutil import (
    THREADS,
    assert_running_untraced,
    check_per_key,
    cpu_has,
    per_key,
    reports,
    sanity,
    stable,
    wait_reports,
)
from helpers import (
    assert_consecutive,
    assert_same_process_view,
    checkpoint,
    read_lines,
    snapshot,
    start_time,
    wait_for_lines,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


def leave_running(pid: int, image: Path) -> dict:
    before = snapshot(pid)
    t0 = start_time(pid)
    checkpoint(pid, image, "--leave-running")
    assert start_time(pid) == t0, "not the same process any more"
    assert_running_untraced(pid)
    assert_same_process_view(before, snapshot(pid))
    return before


def test_leave_running_counter_twice(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("counter"), out, "20"])
    wait_for_lines(out, 3)
    for i in range(2):
        leave_running(p.pid, tmp_path / f"img{i}")
        n = len(read_lines(out))
        wait_for_lines(out, n + 3)
        assert_consecutive([int(x) for x in read_lines(out)])


def test_leave_running_threads(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("threads"), out])
    wait_for_lines(out, 4 * len(THREADS) + 1)
    counts = {k: len(v) for k, v in per_key(read_lines(out)).items()}
    leave_running(p.pid, tmp_path / "img")
    wait_until(lambda: all(len(per_key(read_lines(out)).get(k, [])) >= counts.get(k, 0) + 3
                           for k in THREADS), 10, "every thread to go on")  # fmt: skip
    check_per_key(read_lines(out), THREADS)
    odd = [ln for ln in read_lines(out) if "woke" in ln or "failed" in ln]
    assert not odd, f"system calls were disturbed by the dump: {odd}"
    os.kill(p.pid, signal.SIGUSR1)
    wait_for_lines(out, 1, timeout=5, match="^joined sleeper$")


@pytest.mark.skipif(not cpu_has("avx512f", "avx512bw"), reason="CPU lacks avx512f/avx512bw")
def test_leave_running_avx512(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("avx512"), out])
    wait_for_lines(out, 3)
    leave_running(p.pid, tmp_path / "img")
    n = len(read_lines(out))
    wait_for_lines(out, n + 3)
    fails = [ln for ln in read_lines(out) if ln.startswith("FAIL")]
    assert not fails, f"the dump changed zmm/k registers: {fails}"


def test_leave_running_state(compile_c, procs, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "out"
    p = procs.start([compile_c("state"), out, work, "all"])
    wait_reports(out, 2)
    leave_running(p.pid, tmp_path / "img")
    last = reports(out)[-1]
    reps = wait_reports(out, int(last["seq"]) + 2)
    nxt = reps[int(last["seq"])]
    b, a = stable(last), stable(nxt)
    diff = {k: (b.get(k), a.get(k)) for k in sorted(set(b) | set(a)) if b.get(k) != a.get(k)}
    assert not diff, f"report changed across a --leave-running checkpoint: {diff}"
    sanity(nxt)
    os.kill(p.pid, signal.SIGUSR1)
    lines = wait_for_lines(out, 1, timeout=5, match="^drain done$")
    drained = [ln for ln in lines if ln.startswith("drained ")]
    assert len(drained) == 4, f"pending signals lost or added by the dump: {drained}"
    assert "usr1 altstack=1" in lines


def test_leave_running_memsum(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("memsum"), out, "64"])
    wait_for_lines(out, 2, timeout=20)
    leave_running(p.pid, tmp_path / "img")
    n = len(read_lines(out))
    lines = wait_for_lines(out, n + 3, timeout=20)
    assert len({ln.split("sum=")[1] for ln in lines}) == 1, "memory changed by the dump"

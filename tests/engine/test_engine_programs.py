"""Checkpoint (kill) + restore of real single-process workloads: each must come back with its
PID and go on exactly where it was (no gap, no repeat), with /proc showing the same process.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from engutil import (
    ALL_THREADS,
    THREADS,
    assert_running_untraced,
    check_per_key,
    checkpoint_kill,
    cpu_has,
    cycle,
    per_key,
)
from helpers import (
    PROGRAMS,
    PYTHON,
    assert_consecutive,
    assert_same_process_view,
    read_lines,
    snapshot,
    tids,
    wait_for_lines,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


def ints(lines: list[str]) -> list[int]:
    return [int(x) for x in lines]


def test_counter(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("counter"), out])
    wait_for_lines(out, 5)
    before = snapshot(p.pid)
    n = len(cycle(procs, p.pid, tmp_path / "img", out))
    wait_for_lines(out, n + 5)
    assert_same_process_view(before, snapshot(p.pid))
    assert_consecutive(ints(read_lines(out)))


def test_memory_deny_write_execute(compile_c, procs, tmp_path: Path) -> None:
    """A process under PR_SET_MDWE may not map the executable batch area the dump would use:
    it is checkpointed with calls injected one by one, and comes back still refusing
    writable+executable memory (the flag cannot be cleared, so losing it would be silent)."""
    out = tmp_path / "out"
    p = procs.start([compile_c("mdwe"), out])
    wait_for_lines(out, 3)
    assert read_lines(out)[0].endswith("mdwe=1 wx=refused")
    n = len(cycle(procs, p.pid, tmp_path / "img", out))
    wait_for_lines(out, n + 3)
    lines = read_lines(out)
    assert_consecutive([int(ln.split()[0]) for ln in lines])
    assert all(ln.split()[1:] == ["mdwe=1", "wx=refused"] for ln in lines), lines[n - 1:]


def test_python_counter(procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([PYTHON, PROGRAMS / "counter.py", out])
    wait_for_lines(out, 5)
    before = snapshot(p.pid)
    n = len(cycle(procs, p.pid, tmp_path / "img", out))
    wait_for_lines(out, n + 5)
    # Python may map/unmap memory and move fd positions on its own: compare the rest
    assert_same_process_view(before, snapshot(p.pid), ignore=("maps", "fds"))
    assert_consecutive(ints(read_lines(out)))




def test_threads(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("threads"), out])
    wait_for_lines(out, 3 * len(THREADS) + len(ALL_THREADS))
    started = {m.group(1): int(m.group(2)) for ln in read_lines(out)
               if (m := re.match(r"start (\S+) tid=(\d+)", ln))}  # fmt: skip
    assert sorted(started) == sorted(ALL_THREADS)
    assert sorted(started.values()) == tids(p.pid)
    before = snapshot(p.pid)
    counts = {k: len(v) for k, v in per_key(read_lines(out)).items()}

    cycle(procs, p.pid, tmp_path / "img", out)
    assert tids(p.pid) == sorted(started.values()), "thread IDs differ after restore"

    def all_progressed() -> bool:
        by = per_key(read_lines(out))
        return all(len(by.get(k, [])) >= counts.get(k, 0) + 3 for k in THREADS)

    wait_until(all_progressed, 10, "every thread to report 3 more times")
    by = check_per_key(read_lines(out), THREADS)
    odd = [ln for ln in read_lines(out) if "woke" in ln or "failed" in ln]
    assert not odd, f"interrupted system calls were not restarted: {odd}"
    for name in THREADS:
        assert all(f" tid={started[name]} " in ln for ln in by[name]), f"{name}: tid changed"
    assert_same_process_view(before, snapshot(p.pid))

    # the sleeper exits and main joins it: needs the sleeper's clear_child_tid futex wake
    os.kill(p.pid, signal.SIGUSR1)
    lines = wait_for_lines(out, 1, timeout=5, match="^forked ")
    assert "joined sleeper" in lines
    wait_until(lambda: started["tp-sleeper"] not in tids(p.pid), 5, "the sleeper to be gone")
    # a thread created after the restore gets a working TLS, rseq, robust list...
    assert "joined late" in lines, "could not create and join a new thread after restore"
    late = [ln for ln in lines if ln.startswith("tp-late n=")]
    assert len(late) == 1 and "ok=1" in late[0], f"new thread after restore: {late}"
    # ...and fork works
    assert "forked status=7" in lines, [ln for ln in lines if ln.startswith("forked")]
    assert_running_untraced(p.pid)


def test_python_threads(procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    keys = ["worker-0", "worker-1", "worker-2", "pool", "main"]
    p = procs.start([PYTHON, PROGRAMS / "pythreads.py", out])
    wait_until(lambda: all(len(v) >= 3 for v in per_key(read_lines(out)).values())
               and len(per_key(read_lines(out))) == len(keys), 15, "reports from all threads")  # fmt: skip
    before = snapshot(p.pid)
    threads_before = tids(p.pid)
    counts = {k: len(v) for k, v in per_key(read_lines(out)).items()}

    cycle(procs, p.pid, tmp_path / "img", out)
    assert tids(p.pid) == threads_before

    def progressed() -> bool:
        by = per_key(read_lines(out))
        return all(len(by.get(k, [])) >= counts.get(k, 0) + 3 for k in keys)

    wait_until(progressed, 15, "every thread to report 3 more times")
    check_per_key(read_lines(out), keys)
    assert_same_process_view(before, snapshot(p.pid), ignore=("maps", "fds"))


@pytest.mark.skipif(not cpu_has("avx512f", "avx512bw"), reason="CPU lacks avx512f/avx512bw")
def test_avx512_registers(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("avx512"), out])
    wait_for_lines(out, 3)
    before = snapshot(p.pid)
    n = len(cycle(procs, p.pid, tmp_path / "img", out))
    wait_for_lines(out, n + 5)
    lines = read_lines(out)
    fails = [ln for ln in lines if ln.startswith("FAIL")]
    assert not fails, f"zmm/k registers changed across checkpoint/restore: {fails} (bit i = zmm i, bit 32+i = k i, bit 40 MXCSR, bit 41 x87 control word)"
    rounds = [int(ln.split()[1]) // 32 for ln in lines]
    assert_consecutive(rounds, what="OK rounds")
    assert_same_process_view(before, snapshot(p.pid))


def test_memsum_256mib(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("memsum"), out])
    wait_for_lines(out, 2, timeout=20)
    before = snapshot(p.pid)
    n = len(cycle(procs, p.pid, tmp_path / "img", out))
    wait_for_lines(out, n + 3, timeout=20)
    lines = read_lines(out)
    passes = [int(re.match(r"pass=(\d+) sum=(\w+)$", ln).group(1)) for ln in lines]
    sums = {ln.split("sum=")[1] for ln in lines}
    assert_consecutive(passes, what="passes")
    assert len(sums) == 1, f"checksum changed after restore: {lines[n - 2 : n + 3]}"
    assert_same_process_view(before, snapshot(p.pid))


def test_many_areas_and_sparse_gigabyte(compile_c, procs, tmp_path: Path) -> None:
    """3000 separate VMAs (more than IOV_MAX) and a 1 GiB area with 16 pages touched."""
    out = tmp_path / "out"
    p = procs.start([compile_c("manymaps"), out])
    wait_for_lines(out, 2)
    before = snapshot(p.pid)
    assert len(before["maps"]) > 3000
    img = tmp_path / "img"
    n = len(cycle(procs, p.pid, img, out))
    size = sum(f.stat().st_size for f in img.rglob("*") if f.is_file())
    assert size < 64 << 20, f"image is {size >> 20} MiB: untouched/zero pages were stored"
    wait_for_lines(out, n + 3)
    lines = read_lines(out)
    assert_consecutive([int(re.match(r"pass=(\d+)", ln).group(1)) for ln in lines], what="passes")
    assert len({ln.split("sum=")[1] for ln in lines}) == 1, "memory differs after restore"
    assert_same_process_view(before, snapshot(p.pid))


def test_inside_signal_handler_on_altstack(compile_c, procs, tmp_path: Path) -> None:
    """Checkpointed inside a SIGUSR2 handler running on the sigaltstack; after the restore the
    handler goes on, and returning from it (sigreturn through the frame on the alternate
    stack) gives back main's xmm15 and signal mask."""
    out = tmp_path / "out"
    p = procs.start([compile_c("sigframe"), out])
    wait_for_lines(out, 3)
    before = snapshot(p.pid)
    n = len(cycle(procs, p.pid, tmp_path / "img", out))
    wait_for_lines(out, n + 3)
    handler = [ln for ln in read_lines(out) if ln.startswith("handler n=")]
    assert_consecutive([int(ln.split()[1][2:]) for ln in handler], what="handler rounds")
    assert all(ln.endswith("onstack=1 ss_onstack=1") for ln in handler), handler[-3:]
    assert_same_process_view(before, snapshot(p.pid))
    os.kill(p.pid, signal.SIGUSR1)
    lines = wait_for_lines(out, 3, timeout=5, match="^main n=")
    back = [ln for ln in lines if ln.startswith("back ")]
    assert back == ["back ret=0 xmm=1 mask=1"], f"after sigreturn: {back}"
    assert "handler returns" in lines


@pytest.mark.parametrize("program", ["threads", "pythreads.py"])
def test_threads_three_generations(compile_c, procs, tmp_path: Path, program: str) -> None:
    """A restored multi-threaded process can be checkpointed and restored again."""
    out = tmp_path / "out"
    if program.endswith(".py"):
        argv, keys = [PYTHON, PROGRAMS / program, out], ["worker-0", "worker-1", "worker-2", "pool", "main"]
    else:
        argv, keys = [compile_c(program), out], THREADS
    p = procs.start(argv)

    def progressed(counts: dict[str, int]) -> bool:
        by = per_key(read_lines(out))
        return all(len(by.get(k, [])) >= counts.get(k, 0) + 3 for k in keys)

    wait_until(lambda: progressed({}), 15, "first reports")
    threads = tids(p.pid)
    for gen in range(3):
        counts = {k: len(v) for k, v in per_key(read_lines(out)).items()}
        cycle(procs, p.pid, tmp_path / f"img{gen}", out)
        assert tids(p.pid) == threads, f"generation {gen + 1}: thread IDs differ"
        wait_until(lambda c=counts: progressed(c), 15, f"generation {gen + 1} to go on")
        check_per_key(read_lines(out), keys)


# The restore command with the userfaultfd of the restored task refused (as for a task in a
# user namespace without CAP_SYS_PTRACE where vm.unprivileged_userfaultfd is 0)
RESTORE_WITHOUT_UFFD = """
import errno, sys
import torpor.engine.restore as R
def refuse(*args, **kw):
    raise OSError(errno.EPERM, "userfaultfd refused")
R._task_userfaultfd = refuse
from torpor.cli.main import main
sys.exit(main(["restore", "--image-path", sys.argv[1]]))
"""


# The restore command, telling on stderr whether the UFFDIO_COPY fill of each process
# succeeded (a silent fallback would hide a broken fill)
RESTORE_TELLING_UFFD = """
import sys
import torpor.engine.restore as R
fill = R._fill_by_uffd
def telling(b, vmas, sources):
    ok = fill(b, vmas, sources)
    sys.stderr.write(f"uffd fill {'ok' if ok else 'FELL BACK'} {len(vmas)}\\n")
    return ok
R._fill_by_uffd = telling
from torpor.cli.main import main
sys.exit(main(["restore", "--image-path", sys.argv[1]]))
"""


@pytest.mark.parametrize("harness", ["uffd", "no-uffd"])
def test_pages_by_uffd_or_written(compile_c, procs, tmp_path: Path, harness: str) -> None:
    """Eager restore puts private anonymous pages in with UFFDIO_COPY (it must not fall
    back unnoticed); a task that may not have a userfaultfd gets them written by
    process_vm_writev instead. Same memory either way."""
    import subprocess
    import sys

    from helpers import REPO

    out = tmp_path / "out"
    p = procs.start([compile_c("memsum"), out, "32"])
    wait_for_lines(out, 2, timeout=20)
    n = len(checkpoint_kill(procs, p.pid, tmp_path / "img", out))
    code = RESTORE_TELLING_UFFD if harness == "uffd" else RESTORE_WITHOUT_UFFD
    res = subprocess.run([sys.executable, "-c", code, tmp_path / "img"],
                         capture_output=True, text=True, timeout=60, cwd=REPO,
                         stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert res.returncode == 0, res.stderr
    procs.adopt(int(res.stdout.split()[-1]))
    if harness == "uffd":
        assert "uffd fill ok" in res.stderr and "FELL BACK" not in res.stderr, res.stderr
    wait_for_lines(out, n + 2, timeout=30)
    sums = {ln.split("sum=")[1] for ln in read_lines(out)}
    assert len(sums) == 1, f"the memory checksum changed across the restore: {sums}"

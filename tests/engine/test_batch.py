"""The batched syscall executor (engine/batch.py) in a real, stopped process: many calls in one
round trip, their effects visible from outside, failures reported by call and errno, and the
task going on afterwards as if nothing had happened."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from helpers import maps, read_lines, wait_for_lines, wait_until

from torpor.engine.batch import AREA_SIZE, Batch
from torpor.engine.inject import InjectError, Injector, Scratch, find_syscall_insn
from torpor.engine.linux import ptrace as pt
from torpor.engine.linux.sys import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MREMAP_FIXED, PAGE_SIZE

pytestmark = pytest.mark.timeout(60)
NANOSLEEP = 35


@contextlib.contextmanager
def stopped(pid: int):
    """pid seized and stopped; an Injector with a batch area; on exit the area is unmapped,
    registers and mask put back, the task let go."""
    pt.seize(pid, pt.O_EXITKILL)
    pt.interrupt(pid)
    while True:
        st = pt.wait_stop(pid)
        if pt.stop_event(st) == pt.EVENT_STOP:
            break
        pt.cont(pid, os.WSTOPSIG(st))
    mem = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
    inj = Injector(pid, pid, mem, find_syscall_insn(pid, mem))
    scratch = Scratch(inj, batch=AREA_SIZE)
    try:
        yield inj, scratch
    finally:
        scratch.unmap()
        inj.finish()
        os.close(mem)
        pt.detach(pid)


def counter(compile_c, procs, tmp_path: Path, interval: int = 20):
    out = tmp_path / "count.txt"
    p = procs.start([compile_c("counter"), out, str(interval)])
    wait_for_lines(out, 3)
    return p.pid, out


def prot_at(pid: int, addr: int) -> str | None:
    for ln in maps(pid):
        a, b = (int(x, 16) for x in ln.split()[0].split("-"))
        if a <= addr < b:
            return ln.split()[1]
    return None


def continues(out: Path, seen: int) -> None:
    """The counter goes on from where it was, no gap, no repeat."""
    wait_until(lambda: len(read_lines(out)) >= seen + 3, 10, "counter going on")
    values = [int(x) for x in read_lines(out)]
    assert values == list(range(1, len(values) + 1)), values[-10:]


def test_many_mmaps_in_one_batch(compile_c, procs, tmp_path: Path) -> None:
    pid, out = counter(compile_c, procs, tmp_path)
    n = 1500  # more than fit in one table round trip? no: 3072; the rounds test is below
    with stopped(pid) as (inj, scratch):
        base = inj.call("mmap", 0, 2 * n * PAGE_SIZE, 0, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        b = inj.batch()
        for i in range(n):  # every other page: n separate areas with alternating protection
            b.add("mmap", base + 2 * i * PAGE_SIZE, PAGE_SIZE, 1 + (i % 2) * 2,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
        res = b.run()
        assert res == [base + 2 * i * PAGE_SIZE for i in range(n)]
        lines = [ln for ln in maps(pid) if int(ln.split("-")[0], 16) in
                 {base + 2 * i * PAGE_SIZE for i in range(n)}]
        assert len(lines) == n, f"{len(lines)} of {n} areas in /proc/{pid}/maps"
        assert {ln.split()[1] for ln in lines} == {"r--p", "rw-p"}
        seen = len(read_lines(out))
        inj.call("munmap", base, 2 * n * PAGE_SIZE)
    continues(out, seen)


def test_rounds_and_data_in_a_pipe(compile_c, procs, tmp_path: Path) -> None:
    """More entries than one table holds, each writing its own argument data to a pipe the
    task holds: every byte arrives, in order."""
    pid, out = counter(compile_c, procs, tmp_path)
    r, w = os.pipe()
    os.set_blocking(r, False)
    got = bytearray()
    try:
        with stopped(pid) as (inj, scratch):
            pidfd = os.pidfd_open(pid)
            # give the task our pipe's write end: it steals nothing, we dup into it by
            # writing through /proc/self/fd
            path = f"/proc/{os.getpid()}/fd/{w}\0".encode()
            inj.write(scratch.addr, path)
            tfd = inj.call("open", scratch.addr, os.O_WRONLY | os.O_CLOEXEC)
            os.close(pidfd)
            b = inj.batch()
            n = 5000  # > 3072 entries: two rounds
            msgs = [f"{i};".encode() for i in range(n)]
            stop = threading.Event()

            def drain() -> None:
                while not stop.is_set():
                    try:
                        got.extend(os.read(r, 65536))
                    except BlockingIOError:
                        time.sleep(0.001)

            t = threading.Thread(target=drain)
            t.start()
            try:
                idx = [b.add("write", tfd, b.data(m), len(m)) for m in msgs]
                res = b.run()
            finally:
                time.sleep(0.05)
                stop.set()
                t.join()
            assert idx == list(range(n))
            assert res == [len(m) for m in msgs]
            inj.call("close", tfd)
            seen = len(read_lines(out))
    finally:
        with contextlib.suppress(BlockingIOError):
            got.extend(os.read(r, 1 << 20))
        os.close(r)
        os.close(w)
    assert bytes(got) == b"".join(msgs)
    continues(out, seen)


def test_failing_entry_stops_and_names_the_call(compile_c, procs, tmp_path: Path) -> None:
    pid, out = counter(compile_c, procs, tmp_path)
    with stopped(pid) as (inj, scratch):
        base = inj.call("mmap", 0, 4 * PAGE_SIZE, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        b = inj.batch()
        b.add("mprotect", base, PAGE_SIZE, 1)
        b.add("close", 987654, check=False)  # unchecked: EBADF is a result, the batch goes on
        b.add("mprotect", base + PAGE_SIZE, PAGE_SIZE, 1)
        b.add("madvise", base + 1, PAGE_SIZE, 4)  # unaligned: EINVAL, stops the batch
        b.add("mprotect", base + 2 * PAGE_SIZE, PAGE_SIZE, 1)  # never runs
        with pytest.raises(OSError) as ei:
            b.run()
        assert ei.value.errno == errno.EINVAL
        assert "madvise" in str(ei.value) and hex(base + 1) in str(ei.value), str(ei.value)
        assert "entry 3" in str(ei.value)
        assert prot_at(pid, base) == "r--p" and prot_at(pid, base + PAGE_SIZE) == "r--p"
        assert prot_at(pid, base + 2 * PAGE_SIZE) == "rw-p", "the entry after the failure ran"
        # the batch is reusable after a failure, and unchecked failures come back as -errno
        b.add("close", 987654, check=False)
        b.add("getpid")
        assert b.run() == [-errno.EBADF, pid]
        seen = len(read_lines(out))
        inj.call("munmap", base, 4 * PAGE_SIZE)
    continues(out, seen)


def test_guard_refuses_calls_over_the_batch_area(compile_c, procs, tmp_path: Path) -> None:
    pid, out = counter(compile_c, procs, tmp_path)
    with stopped(pid) as (inj, scratch):
        b = inj.batch()
        lo, hi = scratch.addr, scratch.addr + scratch.size
        bad = [
            ("mmap", hi - PAGE_SIZE, 2 * PAGE_SIZE, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
            ("munmap", lo - PAGE_SIZE, 2 * PAGE_SIZE),
            ("mprotect", lo, PAGE_SIZE, 1),
            ("madvise", lo + PAGE_SIZE, 1, 4),
            ("mremap", lo - 8 * PAGE_SIZE, PAGE_SIZE, PAGE_SIZE, MREMAP_FIXED | 1, lo),
        ]
        bad.append((30, 0, lo, 0o40000))  # shmat(id, addr, SHM_REMAP): size unknown here
        for call in bad:
            with pytest.raises(InjectError, match="batch area"):
                b.add(*call)
        with pytest.raises(ValueError):
            b.add("clone3", 0, 0)
        # right next to it (not over it) is accepted (not run: what lies there is not ours)
        b.add("munmap", hi, PAGE_SIZE)
        b.add("munmap", lo - PAGE_SIZE, PAGE_SIZE)
        b.entries.clear()
        free = inj.call("mmap", 0, 2 * PAGE_SIZE, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        b.add("mmap", free, PAGE_SIZE, 1, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
        b.add("munmap", free, 2 * PAGE_SIZE)
        assert b.run() == [free, 0]
        seen = len(read_lines(out))
    continues(out, seen)


def test_sigstop_during_batch_is_swallowed(compile_c, procs, tmp_path: Path) -> None:
    """A SIGSTOP sent while the loop runs (long nanosleeps in it) neither stops the task for
    good nor breaks the batch: the interrupted call restarts."""
    pid, out = counter(compile_c, procs, tmp_path)
    with stopped(pid) as (inj, scratch):
        b = inj.batch()
        ts = b.data((0).to_bytes(8, "little") + (50_000_000).to_bytes(8, "little"))  # 50 ms
        for _ in range(6):
            b.add(NANOSLEEP, ts, 0)
        b.add("getpid")
        timer = threading.Timer(0.08, os.kill, (pid, signal.SIGSTOP))
        timer.start()
        t0 = time.monotonic()
        res = b.run()
        timer.join()
        assert res == [0] * 6 + [pid]
        assert time.monotonic() - t0 >= 0.25
        seen = len(read_lines(out))
    continues(out, seen)


def test_batch_in_scratch_without_area_is_refused(compile_c, procs, tmp_path: Path) -> None:
    pid, _ = counter(compile_c, procs, tmp_path)
    with stopped(pid) as (inj, _scratch):
        inj.batch_area = None
        with pytest.raises(InjectError, match="no batch area"):
            inj.batch()
        with pytest.raises(ValueError):
            Batch(inj, 0x10000, 128)


def test_answers_written_by_the_calls(compile_c, procs, tmp_path: Path) -> None:
    """out(): space the kernel fills during the batch (getitimer, sigaltstack, prctl answers),
    read back after run(); the same answers from SerialBatch, which injects call by call.
    A batch whose answers are pending refuses to run early rather than reuse their space."""
    from torpor.engine.batch import SerialBatch

    pid, out = counter(compile_c, procs, tmp_path)
    with stopped(pid) as (inj, scratch):
        answers = []
        for b in (inj.batch(), SerialBatch(inj, scratch.addr, 4 * PAGE_SIZE)):
            name = b.out(16)
            timer = b.out(32)
            b.add("prctl", 16, name, 0, 0, 0)  # PR_GET_NAME
            b.add("getitimer", 0, timer)
            i_pid = b.add("getpid")
            res = b.run()
            answers.append((inj.read(name, 16).split(b"\0")[0], inj.read(timer, 32), res[i_pid]))
        assert answers[0] == answers[1] == (b"tp-counter", bytes(32), pid)

        b = inj.batch()
        b.out(8)
        with pytest.raises(ValueError, match="pending"):
            for _ in range(b.capacity + 1):
                b.add("getpid")
        b.run()
        seen = len(read_lines(out))
    continues(out, seen)

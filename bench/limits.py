"""Physical limits of this machine, measured in the same run as the torpor benchmarks:
memcpy, buffered write to the page cache, first touch of fresh anonymous pages, and
process_vm_readv of a child's memory with one large iovec. All in MiB/s."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

from bench.common import MiB, build_c, emit, kill_tree, log, now, rotate, spawn, wait_file

NAME = "limits"


class Anon:
    """An anonymous private mapping and its address."""

    def __init__(self, size: int):
        self.m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._c = ctypes.c_char.from_buffer(self.m)
        self.addr = ctypes.addressof(self._c)
        self.size = size

    def close(self) -> None:
        del self._c
        self.m.close()


def warm(size: int) -> None:
    """Touch and free `size` bytes of memory, untimed, right before a measurement that
    allocates that much (page cache or fresh pages). This VM hands freed memory back to the
    host and touching it again is 3-5x slower; whichever of two measurements goes first
    would pay for it and leave the other warm memory (2 GiB checkpoint ratios of 21% to
    275% of the page-cache write), so each one is given warm memory."""
    a = Anon(size + size // 4)
    try:
        ctypes.memset(a.addr, 0, a.size)
    finally:
        a.close()


def memcpy(size: int) -> float:
    a, b = Anon(size), Anon(size)
    try:
        ctypes.memset(a.addr, 0x5A, size)
        ctypes.memset(b.addr, 0, size)
        t = now()
        ctypes.memmove(b.addr, a.addr, size)
        return size / MiB / (now() - t)
    finally:
        a.close()
        b.close()


def page_cache_write(size: int, d: Path) -> float:
    # the dirty pages of earlier writes (images, this test) go to disk first, untimed: with
    # gigabytes pending, ext4 throttles writers to disk speed and this figure swings 6x
    os.sync()
    warm(size)
    chunk = 64 * MiB
    buf = os.urandom(1 << 20) * (chunk >> 20)
    p = d / "limits-write.tmp"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t = now()
        for _ in range(size // chunk):
            mv = memoryview(buf)
            while mv:
                mv = mv[os.write(fd, mv):]
        dt = now() - t
    finally:
        os.close(fd)
        os.unlink(p)
    return size / MiB / dt


def first_touch(size: int) -> float:
    warm(size)
    a = Anon(size)
    try:
        t = now()
        ctypes.memset(a.addr, 0x5A, size)
        return size / MiB / (now() - t)
    finally:
        a.close()


def vm_readv(size: int, remote: tuple[int, int]) -> float:
    from torpor.engine.linux import vm

    pid, addr = remote
    a = Anon(size)
    try:
        ctypes.memset(a.addr, 0, size)
        t = now()
        n = vm.readv(pid, [(a.addr, size)], [(addr, size)])
        dt = now() - t
        if n != size:
            raise OSError(f"process_vm_readv read {n} of {size} bytes")
        return size / MiB / dt
    finally:
        a.close()


def run(ctx) -> dict:
    size = ctx.limit_mib * MiB
    d = ctx.workdir
    hog = build_c("memhog", ctx.bindir)
    ready = d / "limits-hog.ready"
    p = spawn([str(hog), str(ctx.limit_mib), str(ready)])
    try:
        wait_file(ready, proc=p)
        addr = int(ready.read_text().split()[0])
        tests = {
            "memcpy": lambda: memcpy(size),
            "page_cache_write": lambda: page_cache_write(size, d),
            "first_touch": lambda: first_touch(size),
            "process_vm_readv": lambda: vm_readv(size, (p.pid, addr)),
        }
        vals: dict[str, list[float]] = {k: [] for k in tests}
        errors: dict[str, str] = {}
        names = list(tests)
        for r in range(ctx.runs + 1):  # run 0 is a warm-up
            for k in rotate(names, r):
                try:
                    v = tests[k]()
                except Exception as e:  # noqa: BLE001 - record, do not hide
                    errors[k] = f"{type(e).__name__}: {e}"
                    continue
                if r:
                    vals[k].append(v)
    finally:
        kill_tree(p.pid)
    out = {}
    for k in names:
        rec = emit(NAME, k, vals[k], "MiB/s", error=errors.get(k), bytes=size)
        out[k] = rec.get("median")
        log(f"  {k:18s} {_fmt(rec)}")
    ctx.limits.update(out)
    return out


def _fmt(rec: dict) -> str:
    if "median" not in rec:
        return f"FAILED {rec.get('error')}"
    return f"{rec['median']:>9} {rec['unit']} (min {rec['min']}, max {rec['max']}, n={rec['n']})"

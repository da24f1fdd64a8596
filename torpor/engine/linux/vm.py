"""Bulk copies between address spaces: process_vm_readv / process_vm_writev.

The kernel does the copying; Python only builds iovec arrays. Runs of pages are batched
into calls of up to IOV_MAX remote iovecs.
"""

from __future__ import annotations

import ctypes
import os

from torpor.engine.linux.ptrace import IoVec
from torpor.engine.linux.sys import NR, syscall

IOV_MAX = 1024


def _iovecs(items: list[tuple[int, int]]):
    arr = (IoVec * len(items))()
    for i, (a, n) in enumerate(items):
        arr[i].base = a
        arr[i].len = n
    return arr


def readv(pid: int, local: list[tuple[int, int]], remote: list[tuple[int, int]]) -> int:
    lv, rv = _iovecs(local), _iovecs(remote)
    return syscall(NR["process_vm_readv"], pid, ctypes.addressof(lv), len(local),
                   ctypes.addressof(rv), len(remote), 0)


def writev(pid: int, local: list[tuple[int, int]], remote: list[tuple[int, int]]) -> int:
    lv, rv = _iovecs(local), _iovecs(remote)
    return syscall(NR["process_vm_writev"], pid, ctypes.addressof(lv), len(local),
                   ctypes.addressof(rv), len(remote), 0)


def read_runs_into(pid: int, mem_fd: int, runs: list[tuple[int, int]], buf_addr: int,
                   view: memoryview) -> None:
    """Read remote runs [(addr, len)] back to back into the local buffer at buf_addr.
    Falls back to /proc/PID/mem for what process_vm_readv cannot read (PROT_NONE areas)."""
    total = sum(n for _, n in runs)
    done = 0
    try:
        done = readv(pid, [(buf_addr, total)], runs)
    except OSError:
        done = 0
    if done == total:
        return
    # finish the rest page by page through /proc/PID/mem (FOLL_FORCE reads any mapping)
    pos = 0
    for a, n in runs:
        if pos + n <= done:
            pos += n
            continue
        skip = max(0, done - pos)
        off = skip
        while off < n:
            got = os.preadv(mem_fd, [view[pos + off : pos + n]], a + off)
            if got <= 0:
                raise OSError(5, f"cannot read memory of {pid} at {a + off:#x}")
            off += got
        pos += n

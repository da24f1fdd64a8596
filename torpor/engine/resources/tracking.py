"""Dirty-page tracking between checkpoints, for incremental images (no soft-dirty here).

`checkpoint --track-mem` leaves, inside each process, a userfaultfd with asynchronous
write-protection (UFFD_FEATURE_WP_ASYNC) over its private anonymous areas: the kernel resolves
the write faults itself and only marks the pages written. The next `checkpoint --parent-path`
asks PAGEMAP_SCAN for the pages written since (and re-arms them in the same call), stores
only those, and points every other page at its copy in the parent image.

The userfaultfd must stay open for the tracking to last, so it is kept as an fd of the process
itself (close-on-exec, at a high number). Checkpoints recognise it by its WP_ASYNC feature and
leave it out of images; a restored process is not tracked.
"""

from __future__ import annotations

import ctypes
import fcntl
import os

from torpor.engine.linux import pagemap as pm
from torpor.engine.linux import sys as lx
from torpor.engine.linux import uffd

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.inject import Injector
    from torpor.image.schema import Vma

FEATURE_WP_UNPOPULATED = 1 << 13
FEATURE_WP_ASYNC = 1 << 15
REGISTER_MODE_WP = 1 << 1
F_DUPFD_CLOEXEC = 1030


def is_tracker(pid: int, fd: int) -> bool:
    """A userfaultfd left by --track-mem (the only kind torpor makes with WP_ASYNC)."""
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("API:"):
                    return bool(int(line.split(":")[2], 16) & FEATURE_WP_ASYNC)
    except (OSError, ValueError, IndexError):
        pass
    return False


def find_tracker(pid: int) -> int | None:
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == "anon_inode:[userfaultfd]" and is_tracker(pid, int(name)):
                return int(name)
        except OSError:
            continue
    return None


def areas_of_maps(maps) -> list[tuple[int, int]]:
    """tracked_areas() for /proc/PID/maps entries."""
    return [(e.start, e.end) for e in maps
            if e.inode == 0 and not e.shared and "w" in e.perms and not e.path.startswith("[v")]


def tracked_areas(vmas: list[Vma]) -> list[tuple[int, int]]:
    """The areas whose writes are tracked: private anonymous writable memory."""
    return [(v.start, v.end) for v in vmas
            if v.kind == "anon" and not v.shared and v.prot & lx.PROT_WRITE]


def start(inj: Injector, pid: int, areas: list[tuple[int, int]]) -> int:
    """Arm write tracking in the stopped process; returns the tracker's fd number in it."""
    task_fd = inj.call("userfaultfd", os.O_CLOEXEC | os.O_NONBLOCK)
    soft = int(open(f"/proc/{pid}/limits").read().split("Max open files")[1].split()[0])
    high = inj.call("fcntl", task_fd, F_DUPFD_CLOEXEC, max(64, soft - 32))
    inj.call("close", task_fd)
    pidfd = lx.syscall(lx.NR["pidfd_open"], pid, 0)
    try:
        fd = lx.syscall(lx.NR["pidfd_getfd"], pidfd, high, 0)
    finally:
        os.close(pidfd)
    try:
        uffd.api(fd, FEATURE_WP_ASYNC | FEATURE_WP_UNPOPULATED)
        for a, e in areas:
            uffd.register(fd, a, e - a, REGISTER_MODE_WP)
        written(pid, areas)  # write-protects everything: the clock starts now
    finally:
        os.close(fd)
    return high


def written(pid: int, areas: list[tuple[int, int]]) -> dict[int, list[tuple[int, int]]]:
    """Pages written since the last scan, per area start, re-protected in the same call."""
    out: dict[int, list[tuple[int, int]]] = {}
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    vec = (pm.PageRegion * 4096)()
    try:
        for a, end in areas:
            ranges: list[tuple[int, int]] = []
            start = a
            while start < end:
                arg = pm.PmScanArg(
                    size=ctypes.sizeof(pm.PmScanArg),
                    flags=pm.PM_SCAN_WP_MATCHING | pm.PM_SCAN_CHECK_WPASYNC,
                    start=start, end=end, vec=ctypes.addressof(vec), vec_len=4096,
                    category_mask=pm.PAGE_IS_WRITTEN, return_mask=pm.PAGE_IS_WRITTEN,
                )
                n = fcntl.ioctl(fd, pm.PAGEMAP_SCAN, arg)
                ranges.extend((vec[i].start, vec[i].end) for i in range(n))
                if arg.walk_end >= end or arg.walk_end <= start:
                    break
                start = arg.walk_end
            out[a] = ranges
    finally:
        os.close(fd)
    return out

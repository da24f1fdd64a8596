"""eventfd: the counter, EFD_SEMAPHORE and O_NONBLOCK.

Dump: /proc/PID/fdinfo gives "eventfd-count" (hex) and, on kernels since 6.8,
"eventfd-semaphore"; nothing is read from the eventfd, so its waiters see no change.
Restore: a new eventfd with the same flags, the counter written back (a write adds to the
counter, so counts above 2^32-1, which eventfd(2)'s initval cannot take, come back too).
Limit: on a kernel without "eventfd-semaphore" in fdinfo, EFD_SEMAPHORE is not seen and the
eventfd comes back in counter mode.
"""

from __future__ import annotations

import os

from torpor.image.schema import EventFdFile

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.dump import DumpContext

TAG = "eventfd"
LINK = "anon_inode:[eventfd]"


def matches(link: str, st: os.stat_result) -> bool:
    return link == LINK


def dump(ctx: DumpContext, pid: int, fd: int, link: str, st: os.stat_result, info: dict) -> EventFdFile:
    return EventFdFile(id=-1, flags=int(info.get("flags", "0"), 8),
                       count=int(info.get("eventfd-count", "0"), 16),
                       semaphore=info.get("eventfd-semaphore", "0") == "1")


def open(rec: EventFdFile, rctx) -> int:  # noqa: A001 - the kind's restore step
    flags = os.EFD_CLOEXEC
    if rec.flags & os.O_NONBLOCK:
        flags |= os.EFD_NONBLOCK
    if rec.semaphore:
        flags |= os.EFD_SEMAPHORE
    fd = os.eventfd(0, flags)
    if rec.count:
        os.eventfd_write(fd, rec.count)
    return fd

"""memfds held as an fd: content, name, seals, access mode, O_APPEND/O_NONBLOCK, position.

The memfd object is saved like a mapped one (DumpContext.save_object, kind "memfd": content
without holes, name, F_GET_SEALS) and shared with it: a memfd both mapped and held as an fd
is one MappedFile, recreated once by FileOpener.mapped_file (memfd_create, content, seals),
so the mapping and the fd still see the same memory after restore. Each saved open
description is a new open of that object through /proc/self/fd (its own position and flags).

Limits: MFD_HUGETLB memfds come back as ordinary ones; MFD_NOEXEC_SEAL/MFD_EXEC are not
distinguished (F_SEAL_EXEC is kept with the other seals).
"""

from __future__ import annotations

import os
import stat

from torpor.image.schema import MemfdFile

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.dump import DumpContext

TAG = "memfd"
PREFIX = "/memfd:"
DELETED = " (deleted)"
_OPEN_MASK = os.O_ACCMODE | os.O_APPEND | os.O_NONBLOCK | os.O_LARGEFILE | os.O_NOATIME


def matches(link: str, st: os.stat_result) -> bool:
    return link.startswith(PREFIX) and link.endswith(DELETED) and stat.S_ISREG(st.st_mode) \
        and st.st_nlink == 0


def dump(ctx: DumpContext, pid: int, fd: int, link: str, st: os.stat_result, info: dict) -> MemfdFile:
    src = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        mf = ctx.save_object(src, link.removesuffix(DELETED), "memfd", True)
    finally:
        os.close(src)
    return MemfdFile(id=-1, object_id=mf.id, flags=int(info.get("flags", "0"), 8),
                     pos=int(info.get("pos", "0")))


def open(rec: MemfdFile, rctx) -> int:  # noqa: A001 - the kind's restore step
    obj = rctx.mapped_file(rctx.tree.mapped_files[rec.object_id], True)
    fd = os.open(f"/proc/self/fd/{obj}", (rec.flags & _OPEN_MASK) | os.O_CLOEXEC)
    os.lseek(fd, rec.pos, os.SEEK_SET)
    return fd

"""epoll: the interest list (target fd number, events with EPOLLET/EPOLLONESHOT/..., data),
nested epolls included.

The kernel keys an interest-list entry by (file, fd number), the fd number being the one the
registering process passed to EPOLL_CTL_ADD; EPOLL_CTL_MOD/DEL later find the entry by the
process's fd number. So the entry must be added under the same number, with the same file.

Dump: fdinfo lists "tfd: N events: X data: Y ...". For each entry the target file is located
with kcmp(KCMP_EPOLL_TFD): the fd N of the process that holds the epoll, else fd N of one of
its descendants (an epoll inherited across fork, with entries added by a child). The entry is
saved as (tfd, events, data, pid, fd) with the image PID of that process. An entry whose
file is no longer at its fd number in any of these processes (fd closed or moved after
EPOLL_CTL_ADD while the file lives on through another fd) is refused: it could not be
registered under its number again.

Restore, in two steps:
1. open(): epoll_create1 with the saved flags, empty. Like every other file it is dup2'ed to
   its planned helper fd by restore._open_all.
2. finish_open(): once every file of the image is open at its helper fd (restore._open_all
   calls files.finish_open after its loop; the root task is still Python here), each entry is
   added: the target's helper fd is dup2'ed to the entry's fd number N in the root task,
   EPOLL_CTL_ADD(epoll helper fd, N, events, data), and N is closed again. Closing N does not
   drop the entry (an entry lives as long as its file); the processes then get their fds at
   their numbers, so (file, N) is again what their N refers to. N is below every helper fd
   (Plan.base is above every saved fd number), so nothing of the restorer is overwritten.
   Nested epolls work in any order: every epoll exists before the first entry is added.

After restore every entry is re-evaluated by EPOLL_CTL_ADD: a ready target is reported once
more, also with EPOLLET (a spurious wake-up an edge-triggered program reads through to EAGAIN
anyway); an EPOLLONESHOT entry that had fired comes back disarmed (its saved events hold only
the flag bits, as the kernel left them).
"""

from __future__ import annotations

import builtins
import ctypes
import os
import re
import struct

from torpor.engine.linux import sys as lx
from torpor.errors import TorporError
from torpor.image.schema import EpollFile, EpollTarget

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.dump import DumpContext

TAG = "epoll"
LINK = "anon_inode:[eventpoll]"
KCMP_EPOLL_TFD = 7
EPOLL_CTL_ADD = 1
TFD_LINE = re.compile(r"tfd:\s*(\d+)\s+events:\s*([0-9a-fA-F]+)\s+data:\s*([0-9a-fA-F]+)")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.epoll_create1.argtypes = [ctypes.c_int]
_libc.epoll_ctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_char_p]


def matches(link: str, st: os.stat_result) -> bool:
    return link == LINK


def _entries(pid: int, fd: int) -> list[tuple[int, int, int]]:
    with builtins.open(f"/proc/{pid}/fdinfo/{fd}") as f:
        return [(int(m[1]), int(m[2], 16), int(m[3], 16)) for m in TFD_LINE.finditer(f.read())]


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with builtins.open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def _image_pid(pid: int) -> int:
    with builtins.open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return pid


def _is_target(pid: int, fd: int, owner: int, efd: int, tfd: int, toff: int) -> bool:
    slot = ctypes.create_string_buffer(struct.pack("<3I", efd, tfd, toff))
    try:
        return lx.syscall(lx.NR["kcmp"], pid, owner, KCMP_EPOLL_TFD, fd, ctypes.addressof(slot)) == 0
    except OSError:
        return False


def dump(ctx: DumpContext, pid: int, fd: int, link: str, st: os.stat_result, info: dict) -> EpollFile:
    rec = EpollFile(id=-1, flags=int(info.get("flags", "0"), 8))
    seen: dict[int, int] = {}  # tfd -> entries with that number so far (kcmp's toff)
    others: list[int] | None = None
    for tfd, events, data in _entries(pid, fd):
        toff = seen.get(tfd, 0)
        seen[tfd] = toff + 1
        where = pid if _is_target(pid, tfd, pid, fd, tfd, toff) else 0
        if not where:
            others = _descendants(pid) if others is None else others
            where = next((p for p in others if _is_target(p, tfd, pid, fd, tfd, toff)), 0)
        if not where:
            raise TorporError(
                f"process {pid} fd {fd}: epoll watches a file registered as fd {tfd}, which no "
                "longer refers to it (closed or replaced after EPOLL_CTL_ADD): cannot checkpoint")
        rec.targets.append(EpollTarget(tfd, events, data, _image_pid(where), tfd))
    return rec


def open(rec: EpollFile, rctx) -> int:  # noqa: A001 - the kind's restore step
    fd = _libc.epoll_create1(os.O_CLOEXEC)
    if fd < 0:
        raise TorporError(f"epoll_create1: {os.strerror(ctypes.get_errno())}")
    return fd


def finish_open(rctx, file_fd) -> None:
    """Fill every epoll's interest list; file_fd(id) is the helper fd of file description id,
    every one of them open (see the module docstring)."""
    epolls = [r for r in rctx.tree.files if isinstance(r, EpollFile) and r.targets]
    if not epolls:
        return
    fd_of = {(p.pid, f.fd): f.file_id for p in rctx.tree.processes for f in p.fds}
    for rec in epolls:
        efd = file_fd(rec.id)
        for t in rec.targets:
            target = fd_of.get((t.pid, t.fd))
            if target is None:
                raise TorporError(f"image: epoll {rec.id} entry fd {t.tfd} points at fd {t.fd} "
                                  f"of process {t.pid}, which the image does not hold")
            src = file_fd(target)
            if t.tfd != src:
                os.dup2(src, t.tfd, inheritable=False)
            try:
                ev = struct.pack("<IQ", t.events & 0xFFFFFFFF, t.data)  # packed epoll_event
                if _libc.epoll_ctl(efd, EPOLL_CTL_ADD, t.tfd, ev) < 0:
                    err = ctypes.get_errno()
                    raise TorporError(f"epoll: cannot add fd {t.tfd} (events {t.events:#x}) "
                                      f"back to its interest list: {os.strerror(err)}")
            finally:
                if t.tfd != src:
                    os.close(t.tfd)

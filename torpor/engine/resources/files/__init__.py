"""Open files: one module per kind, registered in KINDS.

Each kind module provides
    matches(link: str, st: os.stat_result) -> bool
    dump(ctx, pid, fd, link, st, fdinfo) -> FileDesc record
    open(rec, rctx) -> int   a descriptor in the restorer for the file description
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from torpor.engine.linux import sys as lx
from torpor.engine.linux.procfs import read_fdinfo
from torpor.engine.resources.files import (
    epoll,
    eventfd,
    fifo,
    inet,
    inotify,
    memfd,
    pipe,
    pty,
    regular,
    signalfd,
    sockopt,
    timerfd,
    unix,
)
from torpor.errors import TorporError
from torpor.image.schema import ExternalFile, Fd

if TYPE_CHECKING:
    from torpor.engine.dump import DumpContext

KINDS = [regular, pipe]
KINDS[:0] = [memfd]  # before regular: a memfd's link is a path too
KINDS += [fifo, eventfd, epoll, signalfd, timerfd, inotify]
KINDS += [unix, inet]  # sockets: told apart by sockopt.note_families(pid) in scan()
KINDS += [pty]  # /dev/ptmx masters and /dev/pts/N slaves
O_CLOEXEC = 0o2000000
KCMP_FILE = 0


class UnsupportedFile(TorporError):
    pass


def describe_kind(link: str, st: os.stat_result) -> str:
    if link.startswith(("pipe:", "socket:")):
        return link.split(":", 1)[0]
    if link.startswith("anon_inode:"):
        return link.removeprefix("anon_inode:").strip("[]")
    fmt = stat.S_IFMT(st.st_mode)
    return {stat.S_IFCHR: "character device", stat.S_IFBLK: "block device",
            stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket", stat.S_IFDIR: "directory"}.get(fmt, "file")


def _same_description(pid1: int, fd1: int, pid2: int, fd2: int) -> bool:
    try:
        return lx.syscall(312, pid1, pid2, KCMP_FILE, fd1, fd2) == 0  # kcmp
    except OSError:
        return False


def scan(pid: int, external=None) -> list[tuple[int, str, os.stat_result]]:
    """The fds of pid with their link text and stat; raises for a kind torpor cannot save
    (unless external(pid, fd, link) names it: the restorer's caller will provide it)."""
    out = []
    sockopt.note_families(pid)  # socket inode -> family, for the socket kinds' matches()
    for name in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        fd = int(name)
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if link == "anon_inode:[userfaultfd]":
            from torpor.engine.resources import tracking

            if tracking.is_tracker(pid, fd):
                continue  # torpor's own write tracker (--track-mem): never part of an image
        if external is not None and external(pid, fd, link):
            out.append((fd, link, st))
            continue
        if not any(k.matches(link, st) for k in KINDS):
            raise UnsupportedFile(
                f"process {pid} fd {fd}: cannot checkpoint a {describe_kind(link, st)} ({link})"
            )
        out.append((fd, link, st))
    return out


def dump(ctx: DumpContext, pid: int, fds: list[tuple[int, str, os.stat_result]]) -> list[Fd]:
    out = []
    for fd, link, st in fds:
        info = read_fdinfo(pid, fd)
        flags = int(info.get("flags", "0"), 8)
        # a description already saved (dup'ed fd, or inherited across fork) keeps its id
        file_id = -1
        for (opid, ofd), fid in ctx.fd_owner.items():
            if _same_description(opid, ofd, pid, fd):
                file_id = fid
                break
        key = ctx.external(pid, fd, link) if ctx.external is not None else None
        if file_id < 0 and key:
            rec = ExternalFile(id=len(ctx.files), key=key, flags=flags)
            ctx.files.append(rec)
            file_id = rec.id
        if file_id < 0:
            kind = next(k for k in KINDS if k.matches(link, st))
            rec = kind.dump(ctx, pid, fd, link, st, info)
            rec.id = len(ctx.files)
            ctx.files.append(rec)
            file_id = rec.id
        ctx.fd_owner[(pid, fd)] = file_id
        out.append(Fd(fd, file_id, bool(flags & O_CLOEXEC)))
    return out


def finish_open(rctx, file_fd) -> None:
    """After every file description is open at its helper fd (file_fd(id) gives it): the steps
    of kinds that refer to other files (epoll interest lists)."""
    for k in KINDS:
        fin = getattr(k, "finish_open", None)
        if fin is not None:
            fin(rctx, file_fd)


def open_for_restore(rec, rctx) -> int:
    if isinstance(rec, ExternalFile):
        fd = rctx.inherit_fds.get(rec.key)
        if fd is None:
            raise TorporError(f"the image needs the caller to provide {rec.key!r}")
        return os.dup(fd)
    for k in KINDS:
        if k.TAG == type(rec).__struct_config__.tag:
            return k.open(rec, rctx)
    raise TorporError(f"image holds a file of unknown kind {type(rec).__name__}")

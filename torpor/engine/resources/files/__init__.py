"""Open files: one module per kind, registered in KINDS.

Each kind module provides
    matches(link: str, st: os.stat_result) -> bool
    dump(ctx, pid, fd, link, st, fdinfo) -> FileDesc record
    open(rec, rctx) -> int   a descriptor in the restorer for the file description
"""

from __future__ import annotations

import os
import stat
import sys

from torpor.engine.linux import sys as lx
from torpor.engine.linux.procfs import read_fdinfo
from torpor.errors import TorporError
from torpor.image.schema import ExternalFile, Fd

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from types import ModuleType

    from torpor.engine.dump import DumpContext

# Kind modules are imported when a file of theirs is met (sockets pull in socket, netlink and
# threads: ~6 ms that a process without sockets should not pay). Candidates by the link's form,
# in the order their matches() is asked: a memfd's link is a path too, so it goes first.
CANDIDATES = {
    "socket": ("unix", "inet"),  # told apart by sockopt.note_families(pid) in scan()
    "pipe": ("pipe",),
    "anon_inode": ("eventfd", "epoll", "signalfd", "timerfd", "inotify"),
    "path": ("memfd", "regular", "fifo", "pty"),  # pty: /dev/ptmx masters, /dev/pts/N slaves
}
BY_TAG = {"unix": "unix", "inet": "inet", "pipe": "pipe", "eventfd": "eventfd", "epoll": "epoll",
          "signalfd": "signalfd", "timerfd": "timerfd", "inotify": "inotify", "memfd": "memfd",
          "reg": "regular", "fifo": "fifo", "pty": "pty"}


def kind_module(name: str) -> ModuleType:
    return __import__(f"torpor.engine.resources.files.{name}", fromlist=["_"])  # not importlib: warnings


def preload(records: list) -> None:
    """Import the kinds an image's file records need. Restore opens them in the root child,
    which may already be inside the container's root, where torpor's modules are not."""
    for rec in records:
        name = BY_TAG.get(type(rec)._tag)
        if name is not None:
            kind_module(name)


def _candidates(link: str) -> tuple[str, ...]:
    if link.startswith("/"):
        return CANDIDATES["path"]
    return CANDIDATES.get(link.split(":", 1)[0], ())


def kind_of(link: str, st: os.stat_result) -> ModuleType | None:
    for name in _candidates(link):
        mod = kind_module(name)
        if mod.matches(link, st):
            return mod
    return None


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
    families_noted = False
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
        if link.startswith("socket:") and not families_noted:
            from torpor.engine.resources.files import sockopt

            sockopt.note_families(pid)  # socket inode -> family, for the socket kinds' matches()
            families_noted = True
        if kind_of(link, st) is None:
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
        same_file = ctx.descriptions.setdefault((st.st_dev, st.st_ino), [])
        for opid, ofd, fid in same_file:
            if _same_description(opid, ofd, pid, fd):
                file_id = fid
                break
        key = ctx.external(pid, fd, link) if ctx.external is not None else None
        if file_id < 0 and key:
            rec = ExternalFile(id=len(ctx.files), key=key, flags=flags)
            ctx.files.append(rec)
            file_id = rec.id
        if file_id < 0:
            kind = kind_of(link, st)
            assert kind is not None  # scan() refused every fd without a kind
            rec = kind.dump(ctx, pid, fd, link, st, info)
            rec.id = len(ctx.files)
            ctx.files.append(rec)
            file_id = rec.id
        if not any(fid == file_id for _, _, fid in same_file):
            same_file.append((pid, fd, file_id))
        ctx.fd_owner[(pid, fd)] = file_id
        out.append(Fd(fd, file_id, bool(flags & O_CLOEXEC)))
    return out


def finish_open(rctx, file_fd) -> None:
    """After every file description is open at its helper fd (file_fd(id) gives it): the steps
    of kinds that refer to other files (epoll interest lists)."""
    for name in set(BY_TAG.values()):
        k = sys.modules.get(f"torpor.engine.resources.files.{name}")  # kinds met by this image
        fin = getattr(k, "finish_open", None)
        if fin is not None:
            fin(rctx, file_fd)


def open_for_restore(rec, rctx) -> int:
    if isinstance(rec, ExternalFile):
        fd = rctx.inherit_fds.get(rec.key)
        if fd is None:
            raise TorporError(f"the image needs the caller to provide {rec.key!r}")
        return os.dup(fd)
    name = BY_TAG.get(type(rec)._tag)
    if name is not None:
        return kind_module(name).open(rec, rctx)
    raise TorporError(f"image holds a file of unknown kind {type(rec).__name__}")

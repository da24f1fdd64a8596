"""FIFOs (named pipes in the file system): path, access mode, O_NONBLOCK, pipe size and the
data buffered in them.

Dump: the data is copied without consuming it, as for anonymous pipes (pipe._peek: a new
read end opened through /proc/PID/fd/N, tee(2)'d into a pipe of our own), once per FIFO
(dev, inode).
Restore: per FIFO, the restorer first opens it by path O_RDWR (never blocks, and keeps the
pipe alive while the other ends are opened), sets the pipe size and writes the data back;
each saved open description is then a new open of the path with its own access mode
(O_NONBLOCK during the open, so a lone write end does not block or fail), O_NONBLOCK set as
saved. A FIFO that was unlinked before the checkpoint ("(deleted)") is recreated with
mkfifo next to where it was (or in /tmp), opened, and unlinked again. A path that no longer
exists at restore is recreated with mkfifo (same mode); a path that is not a FIFO any more
is refused.

Limits: the data of a FIFO opened by processes outside the tree is saved and put back too,
but those processes' ends are not part of the image; a process blocked in open(2) of a FIFO
is not yet holding an fd and is restored as being in that system call.
"""

from __future__ import annotations

import fcntl
import os
import stat

from torpor.engine.resources.files.pipe import F_SETPIPE_SZ, _peek
from torpor.errors import TorporError
from torpor.image.schema import FifoFile

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.dump import DumpContext

TAG = "fifo"
DELETED = " (deleted)"


def matches(link: str, st: os.stat_result) -> bool:
    return link.startswith("/") and stat.S_ISFIFO(st.st_mode)


def dump(ctx: DumpContext, pid: int, fd: int, link: str, st: os.stat_result, info: dict) -> FifoFile:
    key = ("fifo", st.st_dev, st.st_ino)
    if key not in ctx.pipes:
        data, size = _peek(pid, fd)
        off = ctx.pages.write(data) if data else 0
        ctx.pipes[key] = (len(data), off, size)
    length, off, size = ctx.pipes[key]
    deleted = link.endswith(DELETED) and st.st_nlink == 0
    return FifoFile(id=-1, path=link.removesuffix(DELETED) if deleted else link,
                    flags=int(info.get("flags", "0"), 8), dev=st.st_dev, inode=st.st_ino,
                    mode=stat.S_IMODE(st.st_mode), deleted=deleted, size=size, data_len=length,
                    data_offset=off)


def _open_base(rec: FifoFile) -> int:
    """The restorer's own O_RDWR open of the FIFO (a ghost for a deleted one)."""
    path = rec.path
    if rec.deleted:
        directory = os.path.dirname(path) or "/"
        if not os.path.isdir(directory):
            directory = "/tmp"
        path = os.path.join(directory, f".torpor-fifo-{os.getpid()}-{rec.inode}")
        os.mkfifo(path, rec.mode)
        try:
            return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        finally:
            os.unlink(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        try:
            os.mkfifo(path, rec.mode)
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as err:
            raise TorporError(f"FIFO {path} needed by the image is missing and cannot be "
                              f"recreated: {err.strerror}") from None
    except OSError as err:
        raise TorporError(f"cannot open FIFO {path} needed by the image: {err.strerror}") from None
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise TorporError(f"{path} is no longer a FIFO (it was one at the checkpoint)")
    return fd


def open(rec: FifoFile, rctx) -> int:  # noqa: A001 - the kind's restore step
    key = ("fifo", rec.dev, rec.inode)
    base = rctx.pipes.get(key)
    if base is None:
        base = rctx._keep(_open_base(rec))
        if rec.size and rec.size != fcntl.fcntl(base, 1032):  # F_GETPIPE_SZ
            fcntl.fcntl(base, F_SETPIPE_SZ, rec.size)
        data = rctx.pages[rec.data_offset : rec.data_offset + rec.data_len]
        done = 0
        while done < len(data):
            done += os.write(base, data[done:])
        rctx.pipes[key] = base
    # a new description of the same FIFO (through the open base: a deleted one has no path)
    acc = rec.flags & os.O_ACCMODE
    fd = os.open(f"/proc/self/fd/{base}", acc | os.O_NONBLOCK | os.O_CLOEXEC)
    if not rec.flags & os.O_NONBLOCK:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd

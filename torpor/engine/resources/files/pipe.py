"""Anonymous pipes: both ends, O_NONBLOCK, the pipe size and the data buffered in it.

The buffered data is copied without consuming it: the pipe is reopened through
/proc/PID/fd/N (a new read end of the same pipe) and tee(2)'d into a pipe of our own.
On restore one pipe is made per saved pipe (by inode), refilled, and each saved open file
description becomes one end of it.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import stat

from torpor.engine.linux.sys import libc
from torpor.image.schema import PipeFile

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.dump import DumpContext

TAG = "pipe"
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
SPLICE_F_NONBLOCK = 2
libc.tee.restype = ctypes.c_ssize_t
libc.tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]


def matches(link: str, st: os.stat_result) -> bool:
    return link.startswith("pipe:") and stat.S_ISFIFO(st.st_mode)


def _peek(pid: int, fd: int) -> tuple[bytes, int]:
    """The bytes buffered in the pipe behind pid's fd, and the pipe's size."""
    rd = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        size = fcntl.fcntl(rd, F_GETPIPE_SZ)
        r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            if size > 65536:
                fcntl.fcntl(w, F_SETPIPE_SZ, size)
            n = libc.tee(rd, w, size, SPLICE_F_NONBLOCK)
            if n < 0:
                err = ctypes.get_errno()
                if err != 11:  # EAGAIN: the pipe is empty
                    raise OSError(err, os.strerror(err))
                return b"", size
            chunks = []
            while n > 0:
                b = os.read(r, n)
                chunks.append(b)
                n -= len(b)
            return b"".join(chunks), size
        finally:
            os.close(r)
            os.close(w)
    finally:
        os.close(rd)


def dump(ctx: DumpContext, pid: int, fd: int, link: str, st: os.stat_result, info: dict) -> PipeFile:
    flags = int(info.get("flags", "0"), 8)
    inode = st.st_ino
    if inode not in ctx.pipes:
        data, size = _peek(pid, fd)
        off = ctx.pages.write(data) if data else 0
        ctx.pipes[inode] = (len(data), off, size)
    length, off, size = ctx.pipes[inode]
    return PipeFile(id=-1, inode=inode, flags=flags, size=size, data_len=length, data_offset=off)


def open(rec: PipeFile, rctx) -> int:  # noqa: A001 - the kind's restore step
    ends = rctx.pipes.get(rec.inode)
    if ends is None:
        r, w = os.pipe2(os.O_CLOEXEC)
        if rec.size and rec.size != 65536:
            fcntl.fcntl(w, F_SETPIPE_SZ, rec.size)
        data = rctx.pages[rec.data_offset : rec.data_offset + rec.data_len]
        done = 0
        while done < len(data):
            done += os.write(w, data[done:])
        ends = rctx.pipes[rec.inode] = [rctx._keep(r), rctx._keep(w), False, False]
    write_end = (rec.flags & os.O_ACCMODE) == os.O_WRONLY
    idx = 1 if write_end else 0
    if not ends[2 + idx]:
        ends[2 + idx] = True
        fd = os.dup(ends[idx])
    else:  # a second description of the same end: reopen the pipe
        fd = os.open(f"/proc/self/fd/{ends[idx]}", os.O_WRONLY if write_end else os.O_RDONLY)
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    if rec.flags & os.O_NONBLOCK:
        fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    return fd

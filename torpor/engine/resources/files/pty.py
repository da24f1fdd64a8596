"""Pseudo-terminal pairs: the master (/dev/ptmx) and its slave (/dev/pts/N).

Dump: the master's slave number from fdinfo "tty-index"; termios (TCGETS), window size
(TIOCGWINSZ) and the slave lock (TIOCGPTLCK) read through a duplicate of the master
(pidfd_getfd: on a master these ioctls answer for the slave side). A slave records its
number and path.

Restore: a new pair is opened from /dev/ptmx, given the saved termios and window size and
unlocked unless it was locked; every slave of that master (same saved number) is opened
from the new pair. The kernel hands out the slave number: it may differ from the saved one
(/dev/pts/N changes; the process is not told). A slave whose master is not in the image
(a terminal outside the tree) is reopened by its path, which must still exist.
Not kept: data buffered in either direction, packet mode, and the controlling terminal of a
session (a restored slave is not made the controlling tty).
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct

from torpor.engine.linux.sockdiag import pidfd_getfd
from torpor.errors import TorporError
from torpor.image.schema import PtyFile

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.dump import DumpContext

TAG = "pty"
TCGETS, TCSETS = 0x5401, 0x5402
TIOCGWINSZ, TIOCSWINSZ = 0x5413, 0x5414
TIOCGPTN, TIOCSPTLCK, TIOCGPTLCK = 0x80045430, 0x40045431, 0x80045439
TIOCGPTPEER = 0x5441
TERMIOS_SIZE = 36  # struct termios of the TCGETS ioctl
PTMX_RDEV = (5, 2)
PTS_MAJORS = range(136, 144)


def matches(link: str, st: os.stat_result) -> bool:
    if not stat.S_ISCHR(st.st_mode):
        return False
    dev = (os.major(st.st_rdev), os.minor(st.st_rdev))
    return dev == PTMX_RDEV or (dev[0] in PTS_MAJORS and link.startswith("/dev/pts/"))


def dump(ctx: DumpContext, pid: int, fd: int, link: str, st: os.stat_result, info: dict) -> PtyFile:
    flags = int(info.get("flags", "0"), 8)
    if (os.major(st.st_rdev), os.minor(st.st_rdev)) != PTMX_RDEV:
        return PtyFile(id=-1, flags=flags, master=False, path=link,
                       index=int(link.removeprefix("/dev/pts/")))
    dup = pidfd_getfd(pid, fd)
    try:
        index = struct.unpack("<I", fcntl.ioctl(dup, TIOCGPTN, bytes(4)))[0]
        termios = fcntl.ioctl(dup, TCGETS, bytes(TERMIOS_SIZE))
        winsize = fcntl.ioctl(dup, TIOCGWINSZ, bytes(8))
        locked = struct.unpack("<i", fcntl.ioctl(dup, TIOCGPTLCK, bytes(4)))[0] != 0
    finally:
        os.close(dup)
    return PtyFile(id=-1, flags=flags, master=True, index=index, path=link, termios=termios,
                   winsize=winsize, locked=locked)


def _masters(rctx) -> dict:
    if not hasattr(rctx, "_pty_masters"):
        rctx._pty_masters = {}  # saved slave number -> restorer fd of the new master
    return rctx._pty_masters


def _open_master(rec: PtyFile, rctx) -> int:
    masters = _masters(rctx)
    if rec.index not in masters:
        fd = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        if rec.termios:
            fcntl.ioctl(fd, TCSETS, rec.termios)
        if rec.winsize:
            fcntl.ioctl(fd, TIOCSWINSZ, rec.winsize)
        fcntl.ioctl(fd, TIOCSPTLCK, struct.pack("<i", 0))
        masters[rec.index] = rctx._keep(fd)
    return masters[rec.index]


def _reopen_flags(rec: PtyFile) -> int:
    return (rec.flags & ~(os.O_CREAT | os.O_TRUNC | os.O_EXCL)) | os.O_NOCTTY | os.O_CLOEXEC


def open(rec: PtyFile, rctx) -> int:  # noqa: A001 - the kind's restore step
    if rec.master:
        fd = os.dup(_open_master(rec, rctx))  # one record per description: this is it
        if rec.flags & os.O_NONBLOCK:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        if rec.locked:
            fcntl.ioctl(fd, TIOCSPTLCK, struct.pack("<i", 1))
        return fd
    master_rec = next((f for f in rctx.tree.files if isinstance(f, PtyFile) and f.master
                       and f.index == rec.index), None)
    if master_rec is None:  # the master is outside the tree: the same terminal, by path
        try:
            return os.open(rec.path, _reopen_flags(rec))
        except OSError as err:
            raise TorporError(f"terminal {rec.path} needed by the image: {err.strerror}") from None
    master = _open_master(master_rec, rctx)
    # TIOCGPTPEER: the slave of this master, without going through /dev/pts by number
    return fcntl.ioctl(master, TIOCGPTPEER, _reopen_flags(rec) & (os.O_ACCMODE | os.O_NONBLOCK
                                                                  | os.O_NOCTTY | os.O_CLOEXEC))

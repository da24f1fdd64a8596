"""Regular files and device nodes opened by path: path, flags, position, O_APPEND.

A file deleted since it was opened has its content saved and comes back as an unlinked file
(created next to where it was, then removed), like CRIU's ghost files.
"""

from __future__ import annotations

import os
import stat

from torpor.errors import TorporError
from torpor.image.schema import OpenFile

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.dump import DumpContext

TAG = "reg"
DELETED = " (deleted)"
# character devices that are the same on every machine and can be reopened by path
SAFE_CHAR_DEVICES = {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0)}  # null zero full random urandom tty
_OPEN_MASK = os.O_ACCMODE | os.O_APPEND | os.O_NONBLOCK | os.O_DIRECT | os.O_NOATIME | os.O_SYNC | os.O_DSYNC | os.O_LARGEFILE | os.O_DIRECTORY


def matches(link: str, st: os.stat_result) -> bool:
    if not link.startswith("/"):
        return False
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return True
    if stat.S_ISCHR(st.st_mode):
        return (os.major(st.st_rdev), os.minor(st.st_rdev)) in SAFE_CHAR_DEVICES
    return False


def dump(ctx: DumpContext, pid: int, fd: int, link: str, st: os.stat_result, info: dict) -> OpenFile:
    flags = int(info.get("flags", "0"), 8)
    rec = OpenFile(id=-1, path=link.removesuffix(DELETED), flags=flags, pos=int(info.get("pos", "0")),
                   mode=st.st_mode, rdev=st.st_rdev)
    if link.endswith(DELETED) and stat.S_ISREG(st.st_mode) and st.st_nlink == 0:
        rec.deleted = True
        src = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            rec.content_file_id = ctx.save_ghost(src, st, rec.path)
        finally:
            os.close(src)
    return rec


def open(rec: OpenFile, rctx) -> int:  # noqa: A001 - the kind's restore step
    flags = (rec.flags & _OPEN_MASK) | os.O_CLOEXEC
    if rec.deleted:
        fd = rctx.ghost_fd(rec.content_file_id, flags)
    else:
        try:
            fd = os.open(rec.path, flags)
        except FileNotFoundError:
            raise TorporError(f"file {rec.path} needed by the image does not exist") from None
        except OSError as err:
            raise TorporError(f"cannot open {rec.path} needed by the image: {err.strerror}") from None
        st = os.fstat(fd)
        if stat.S_IFMT(st.st_mode) != stat.S_IFMT(rec.mode):
            os.close(fd)
            raise TorporError(f"{rec.path} changed kind since the checkpoint")
    if not stat.S_ISCHR(rec.mode) and not (rec.flags & os.O_APPEND):
        os.lseek(fd, rec.pos, os.SEEK_SET)
    elif stat.S_ISREG(rec.mode):
        os.lseek(fd, rec.pos, os.SEEK_SET)
    return fd

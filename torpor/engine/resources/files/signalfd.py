"""signalfd: the signal mask (fdinfo "sigmask", hex) and O_NONBLOCK.

The signals a signalfd reports are the process's pending signals, saved and restored with the
process (resources/signals.py); the signalfd itself holds only its mask.
"""

from __future__ import annotations

import ctypes
import os
import struct

from torpor.engine.linux.sys import libc
from torpor.errors import TorporError
from torpor.image.schema import SignalFdFile

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.dump import DumpContext

TAG = "signalfd"
LINK = "anon_inode:[signalfd]"
SFD_CLOEXEC, SFD_NONBLOCK = os.O_CLOEXEC, os.O_NONBLOCK
libc.signalfd.restype = ctypes.c_int
libc.signalfd.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]


def matches(link: str, st: os.stat_result) -> bool:
    return link == LINK


def dump(ctx: DumpContext, pid: int, fd: int, link: str, st: os.stat_result, info: dict) -> SignalFdFile:
    return SignalFdFile(id=-1, flags=int(info.get("flags", "0"), 8),
                        mask=int(info.get("sigmask", "0"), 16))


def open(rec: SignalFdFile, rctx) -> int:  # noqa: A001 - the kind's restore step
    flags = SFD_CLOEXEC | (SFD_NONBLOCK if rec.flags & os.O_NONBLOCK else 0)
    fd = libc.signalfd(-1, struct.pack("<Q", rec.mask), flags)
    if fd < 0:
        err = ctypes.get_errno()
        raise TorporError(f"signalfd with mask {rec.mask:#x}: {os.strerror(err)}")
    return fd

"""userfaultfd(2): registering areas for missing-page faults and resolving them (lazy restore,
copy-on-write checkpoints)."""

from __future__ import annotations

import errno
import fcntl
import os
import struct

API = 0xAA
UFFDIO_API = 0xC018AA3F  # _IOWR(0xAA, 0x3F, struct uffdio_api)
UFFDIO_REGISTER = 0xC020AA00  # _IOWR(0xAA, 0x00, struct uffdio_register)
UFFDIO_COPY = 0xC028AA03  # _IOWR(0xAA, 0x03, struct uffdio_copy)
UFFDIO_ZEROPAGE = 0xC020AA04  # _IOWR(0xAA, 0x04, struct uffdio_zeropage)
UFFDIO_UNREGISTER = 0x8010AA01  # _IOR(0xAA, 0x01, struct uffdio_range)
UFFDIO_WAKE = 0x8010AA02  # _IOR(0xAA, 0x02, struct uffdio_range)
UFFDIO_MOVE = 0xC028AA05  # _IOWR(0xAA, 0x05, struct uffdio_move), 6.8+

FEATURE_EVENT_FORK = 1 << 1
FEATURE_EVENT_REMAP = 1 << 2
FEATURE_EVENT_REMOVE = 1 << 3
FEATURE_EVENT_UNMAP = 1 << 6
FEATURE_MOVE = 1 << 16
NONCOOPERATIVE = FEATURE_EVENT_FORK | FEATURE_EVENT_REMAP | FEATURE_EVENT_REMOVE | FEATURE_EVENT_UNMAP

REGISTER_MODE_MISSING = 1
MOVE_MODE_DONTWAKE, MOVE_MODE_ALLOW_SRC_HOLES = 1 << 0, 1 << 1

EVENT_PAGEFAULT, EVENT_FORK, EVENT_REMAP, EVENT_REMOVE, EVENT_UNMAP = 0x12, 0x13, 0x14, 0x15, 0x16
MSG_SIZE = 32


def api(fd: int, features: int) -> int:
    buf = bytearray(struct.pack("<QQQ", API, features, 0))
    fcntl.ioctl(fd, UFFDIO_API, buf)
    return struct.unpack("<QQQ", buf)[1]


def register(fd: int, start: int, length: int, mode: int = REGISTER_MODE_MISSING) -> None:
    buf = bytearray(struct.pack("<QQQQ", start, length, mode, 0))
    fcntl.ioctl(fd, UFFDIO_REGISTER, buf)


def copy(fd: int, dst: int, src: int, length: int) -> int:
    """UFFDIO_COPY; returns bytes copied. A page already present ends the copy early (EEXIST):
    the caller skips it. EAGAIN with a partial copy is progress."""
    buf = bytearray(struct.pack("<QQQQq", dst, src, length, 0, 0))
    try:
        fcntl.ioctl(fd, UFFDIO_COPY, buf)
    except OSError as err:
        done = struct.unpack("<QQQQq", buf)[4]
        if err.errno in (errno.EEXIST, errno.EAGAIN):
            return max(done, 0) if done > 0 else -err.errno
        if err.errno in (errno.ENOENT, errno.ESRCH, errno.EINVAL):
            return -err.errno  # the area is gone (unmapped) or the process exited
        raise
    return struct.unpack("<QQQQq", buf)[4]


def zeropage(fd: int, start: int, length: int) -> None:
    buf = bytearray(struct.pack("<QQQq", start, length, 0, 0))
    try:
        fcntl.ioctl(fd, UFFDIO_ZEROPAGE, buf)
    except OSError as err:
        if err.errno not in (errno.EEXIST, errno.EAGAIN, errno.ENOENT, errno.ESRCH, errno.EINVAL):
            raise


_MOVE = struct.Struct("<QQQQq")  # struct uffdio_move: dst, src, len, mode, move (result)
MOVE_SIZE = _MOVE.size


def move_args(dst: int, src: int, length: int, mode: int = MOVE_MODE_ALLOW_SRC_HOLES) -> bytes:
    """struct uffdio_move for an UFFDIO_MOVE made elsewhere (engine/agent.py)."""
    return _MOVE.pack(dst, src, length, mode, 0)


def moved(raw: bytes) -> int:
    """The `move` field of a struct uffdio_move after the call: bytes moved, or -errno."""
    return _MOVE.unpack_from(raw)[4]


def move(fd: int, dst: int, src: int, length: int, mode: int = MOVE_MODE_ALLOW_SRC_HOLES) -> int:
    """UFFDIO_MOVE (same address space: the uffd's): returns the bytes moved (> 0; a short
    move is progress) or -errno when nothing was moved: EAGAIN (an event is pending: read it,
    retry), EEXIST (a destination page is present), EBUSY (a source page is not exclusive),
    ENOENT/EINVAL (an area is gone or differs), ESRCH (the process is gone)."""
    buf = bytearray(struct.pack("<QQQQq", dst, src, length, mode, 0))
    try:
        fcntl.ioctl(fd, UFFDIO_MOVE, buf)
    except OSError as err:
        done = struct.unpack("<QQQQq", buf)[4]
        return done if done > 0 else -err.errno
    return struct.unpack("<QQQQq", buf)[4]


def wake(fd: int, start: int, length: int) -> None:
    """Wake the threads waiting on faults in [start, start + length)."""
    try:
        fcntl.ioctl(fd, UFFDIO_WAKE, struct.pack("<QQ", start, length))
    except OSError:
        pass


def unregister(fd: int, start: int, length: int) -> None:
    try:
        fcntl.ioctl(fd, UFFDIO_UNREGISTER, struct.pack("<QQ", start, length))
    except OSError:
        pass


def read_events(fd: int) -> list[tuple[int, tuple[int, ...]]]:
    """Pending messages as (event, args); for FORK args[0] is the new uffd (installed by
    the read)."""
    out = []
    while True:
        try:
            raw = os.read(fd, MSG_SIZE * 16)
        except BlockingIOError:
            return out
        for i in range(0, len(raw), MSG_SIZE):
            msg = raw[i : i + MSG_SIZE]
            event = msg[0]
            if event == EVENT_PAGEFAULT:
                out.append((event, struct.unpack_from("<QQ", msg, 8)))  # flags, address
            elif event == EVENT_FORK:
                out.append((event, struct.unpack_from("<I", msg, 8)))
            elif event == EVENT_REMAP:
                out.append((event, struct.unpack_from("<QQQ", msg, 8)))  # from, to, len
            elif event in (EVENT_REMOVE, EVENT_UNMAP):
                out.append((event, struct.unpack_from("<QQ", msg, 8)))  # start, end
        if len(raw) < MSG_SIZE * 16:
            return out

"""inotify: the watches, each with its watch descriptor (wd) and mask; O_NONBLOCK.

Dump: fdinfo lists "inotify wd:W ino:I sdev:D mask:M ... f_handle:H" (hex). A watch is on an
inode, not a path, so the path is found from the file handle: open_by_handle_at(2) relative
to a mount of device D in the process's mount namespace (/proc/PID/mountinfo, opened under
/proc/PID/root), the resulting path read back from /proc/self/fd and translated to the
process's view (mount point + path inside the mount), then checked by stat (same device and
inode). The path is what is saved.
Restore: inotify_init1 with the saved flags, then the watches in increasing wd order, each
added by path with its mask (plus IN_DONT_FOLLOW: the saved path is the watched inode
itself). wds are handed out cyclically from 1, so to give a watch its saved wd the restorer
adds and removes it until the kernel hands out that number; the IN_IGNORED events of those
removals are read off the queue before the process runs.

Limits: events queued and not yet read at the checkpoint are lost (reading them would consume
them); a watched inode that has no path any more (deleted but still open), or on a file
system without file handles (e.g. overlayfs without nfs_export, procfs), or outside every
mount of its device as the process sees them, is refused at checkpoint; the path must name
the same kind of object at restore (a path that no longer exists is refused).
"""

from __future__ import annotations

import builtins
import ctypes
import os
import re
import struct

from torpor.errors import TorporError
from torpor.image.schema import InotifyFile, InotifyWatch

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.dump import DumpContext

TAG = "inotify"
LINK = "anon_inode:inotify"
IN_DONT_FOLLOW = 0x02000000
IN_MASK_CREATE, IN_MASK_ADD = 0x10000000, 0x20000000
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
MAX_WD_STEPS = 1 << 20
WATCH = re.compile(r"inotify wd:([0-9a-f]+) ino:([0-9a-f]+) sdev:([0-9a-f]+) mask:([0-9a-f]+)"
                   r"(?:.*?fhandle-bytes:([0-9a-f]+) fhandle-type:([0-9a-f]+) f_handle:([0-9a-f]+))?")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]


def matches(link: str, st: os.stat_result) -> bool:
    return link == LINK


def _mounts(pid: int, dev: int) -> list[tuple[str, str]]:
    """(mount point, root inside the file system) of each mount of device dev, as pid sees them."""
    out = []
    with builtins.open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            fields = line.split()
            major, minor = (int(x) for x in fields[2].split(":"))
            if os.makedev(major, minor) == dev:
                unesc = lambda s: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), s)  # noqa: E731
                out.append((unesc(fields[4]), unesc(fields[3])))
    return out


def _path_of(pid: int, dev: int, ino: int, htype: int, handle: bytes) -> str | None:
    """The path (in pid's view) of inode ino of device dev, from its file handle."""
    fh = struct.pack("<Ii", len(handle), htype) + handle
    for mountpoint, _root in _mounts(pid, dev):
        try:
            mfd = os.open(f"/proc/{pid}/root{mountpoint}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(mfd)
            if st.st_dev != dev:  # something else mounted over it
                continue
            hfd = _libc.open_by_handle_at(mfd, fh, os.O_PATH | os.O_CLOEXEC)
            if hfd < 0:
                continue
            try:
                full = os.readlink(f"/proc/self/fd/{hfd}")
                top = os.readlink(f"/proc/self/fd/{mfd}")
            finally:
                os.close(hfd)
        finally:
            os.close(mfd)
        if full == top:
            rel = ""
        elif full.startswith(top.rstrip("/") + "/"):
            rel = full[len(top.rstrip("/")):]
        else:
            continue  # outside this mount (a bind mount of another subtree)
        path = (mountpoint.rstrip("/") + rel) or "/"
        try:
            st = os.stat(f"/proc/{pid}/root{path}", follow_symlinks=False)
        except OSError:
            continue
        if st.st_dev == dev and st.st_ino == ino:
            return path
    return None


def dump(ctx: DumpContext, pid: int, fd: int, link: str, st: os.stat_result, info: dict) -> InotifyFile:
    rec = InotifyFile(id=-1, flags=int(info.get("flags", "0"), 8))
    with builtins.open(f"/proc/{pid}/fdinfo/{fd}") as f:
        text = f.read()
    for m in WATCH.finditer(text):
        wd, ino, sdev, mask = (int(m[i], 16) for i in range(1, 5))
        dev = os.makedev(sdev >> 20, sdev & 0xFFFFF)  # the kernel's dev_t encoding
        path = None
        if m[7]:
            handle = bytes.fromhex(m[7])[: int(m[5], 16)]
            path = _path_of(pid, dev, ino, int(m[6], 16), handle)
        if path is None:
            raise TorporError(
                f"process {pid} fd {fd}: inotify watch {wd} on inode {ino} of device "
                f"{os.major(dev)}:{os.minor(dev)}: its path cannot be found (deleted, outside the "
                "process's mounts, or a file system without file handles): cannot checkpoint")
        rec.watches.append(InotifyWatch(wd, mask, path, dev, ino))
    return rec


def _drain(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except BlockingIOError:
            return


def open(rec: InotifyFile, rctx) -> int:  # noqa: A001 - the kind's restore step
    fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        raise TorporError(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
    try:
        for w in sorted(rec.watches, key=lambda w: w.wd):
            mask = (w.mask & ~(IN_MASK_CREATE | IN_MASK_ADD)) | IN_DONT_FOLLOW
            path = os.fsencode(w.path)
            for _ in range(MAX_WD_STEPS):
                got = _libc.inotify_add_watch(fd, path, mask)
                if got < 0:
                    raise TorporError(f"inotify watch on {w.path} needed by the image: "
                                      f"{os.strerror(ctypes.get_errno())}")
                if got >= w.wd:
                    break
                _libc.inotify_rm_watch(fd, got)
            if got != w.wd:
                raise TorporError(f"inotify watch on {w.path}: cannot get back watch descriptor "
                                  f"{w.wd} (the kernel gave {got})")
        _drain(fd)
        if not rec.flags & os.O_NONBLOCK:
            import fcntl

            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd

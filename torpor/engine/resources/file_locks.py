"""File locks: flock(2), POSIX record locks (fcntl F_SETLK) and OFD locks (F_OFD_SETLK).

Like CRIU, locks are saved only when asked (`torpor checkpoint --file-locks`): a process that
holds one is refused otherwise, with a message naming the process, the fd, the file and the
lock, and it keeps running (nothing was changed yet).

Dump: /proc/PID/fdinfo/N lists, as "lock:" lines, the locks held through that fd: flock and
OFD locks belong to the open file description (they show in every fd of every process that
shares it), POSIX locks to the process (they show in the fd they were taken through). Leases
and delegations are refused.

Restore: the same locks are taken again, non-blocking, through the restored fds, inside the
process that held them (POSIX locks belong to the process). This happens at the very end of
the restore, after the restorer's helper fds are closed: closing any fd of a file drops the
process's POSIX locks on it. A lock that another process took while the tree was
checkpointed cannot be taken back: the restore fails and names it. Between the checkpoint
(which ends the tree) and the restore the locks are free; `--leave-running` keeps the tree
and its locks, so its image restores only once the original has let them go.
"""

from __future__ import annotations

import os
import struct

from torpor.errors import TorporError
from torpor.image.schema import FileLock

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.inject import Injector

F_SETLK = 6
F_OFD_SETLK = 37
F_RDLCK, F_WRLCK = 0, 1
LOCK_SH, LOCK_EX, LOCK_NB = 1, 2, 4
_FLOCK = struct.Struct("<hhxxxxqqi4x")  # struct flock: type, whence, start, len, pid
KINDS = {"POSIX": "posix", "OFDLCK": "ofd", "FLOCK": "flock"}


class FileLockError(TorporError):
    pass


def _fd_path(pid: int, fd: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return "?"


def describe(lock: FileLock) -> str:
    rng = "" if lock.kind == "flock" else \
        f" on bytes {lock.start}-{'EOF' if lock.end < 0 else lock.end}"
    name = {"flock": "flock", "posix": "POSIX", "ofd": "OFD"}[lock.kind]
    return f"a {name} {lock.type} lock{rng}"


def read_locks(pid: int) -> list[tuple[int, str]]:
    """(fd, line) for every "lock:" line of the fds of pid."""
    out: list[tuple[int, str]] = []
    try:
        names = os.listdir(f"/proc/{pid}/fdinfo")
    except FileNotFoundError:
        return out
    for name in names:
        try:
            with open(f"/proc/{pid}/fdinfo/{name}") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        out.extend((int(name), line) for line in text.splitlines() if line.startswith("lock:"))
    return sorted(out)


def parse(pid: int, fd: int, line: str) -> FileLock:
    # lock:\t1: POSIX  ADVISORY  WRITE 718 fe:00:2146342 0 99
    w = line.split()
    kind = KINDS.get(w[2])
    if kind is None:
        raise FileLockError(f"process {pid}: fd {fd} ({_fd_path(pid, fd)}) holds a {w[2].lower()} "
                            "that torpor cannot checkpoint")
    typ = {"WRITE": "write", "READ": "read"}.get(w[4])
    if typ is None:
        raise FileLockError(f"process {pid}: fd {fd} ({_fd_path(pid, fd)}): unexpected lock {line!r}")
    if kind == "flock":
        return FileLock(kind=kind, fd=fd, type=typ)
    start = int(w[7])
    end = -1 if w[8] == "EOF" else int(w[8])
    return FileLock(kind=kind, fd=fd, type=typ, start=start, end=end)


def dump(ctx, pid: int, inj: Injector, scratch: int) -> dict:
    locks: list[FileLock] = []
    seen: set = set()
    for fd, line in read_locks(pid):
        lock = parse(pid, fd, line)
        if not getattr(ctx, "file_locks", False):
            raise FileLockError(
                f"process {pid}: fd {fd} ({_fd_path(pid, fd)}) holds {describe(lock)}: "
                "checkpoint with --file-locks to save file locks")
        key = (lock.kind, lock.type, lock.start, lock.end,
               os.stat(f"/proc/{pid}/fd/{fd}").st_ino if lock.kind == "posix" else fd)
        if key not in seen:
            seen.add(key)
            locks.append(lock)
    return {"file_locks": locks} if locks else {}


def restore(rt, inj: Injector, scratch: int) -> list[str]:
    return []  # locks are taken in restore_late, once the helper fds are closed


def _take(inj: Injector, s: int, lock: FileLock) -> None:
    if lock.kind == "flock":
        inj.call("flock", lock.fd, (LOCK_EX if lock.type == "write" else LOCK_SH) | LOCK_NB)
        return
    length = 0 if lock.end < 0 else lock.end - lock.start + 1
    inj.write(s, _FLOCK.pack(F_WRLCK if lock.type == "write" else F_RDLCK, os.SEEK_SET,
                             lock.start, length, 0))
    inj.call("fcntl", lock.fd, F_OFD_SETLK if lock.kind == "ofd" else F_SETLK, s)


def restore_late(rt, inj: Injector, scratch: int) -> list[str]:
    """Runs after the restorer's helper fds are closed in the process (restore.py)."""
    for lock in rt.proc.file_locks:
        try:
            _take(inj, scratch, lock)
        except OSError as err:
            raise FileLockError(
                f"process {rt.proc.pid}: cannot take back {describe(lock)} through fd {lock.fd}: "
                f"{err.strerror} (another process holds it now?)") from None
    return []

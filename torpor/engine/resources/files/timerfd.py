"""timerfd: clock, interval, remaining time, expirations not yet read, flags.

Dump: /proc/PID/fdinfo gives "clockid", "ticks", "settime flags", "it_value" (time left to
the next expiry, relative, whatever the settime flags) and "it_interval". Nothing is read
from the timerfd.

Policy for the time between checkpoint and restore: it does not count. A timer comes back
with the remaining time it had when it was checkpointed, so it fires that long after the
restore, then every interval as before; the process sees the same delays as if it had been
paused. The one exception is an absolute timer on CLOCK_REALTIME or CLOCK_REALTIME_ALARM
(TFD_TIMER_ABSTIME: "wake me at 12:00"): it keeps its wall-clock deadline, so an expiry that
passed while the process was checkpointed fires at once on restore (with the missed periods
of an interval timer counted in its expirations, as the kernel counts overruns). Absolute
timers on the other clocks (MONOTONIC, BOOTTIME, whose zero differs between boots and
machines) are re-armed absolute at now + remaining.

An interval timer that expired and was not read since is first brought up to date by
timerfd_gettime on a duplicate (pidfd_getfd) of it, which counts the missed periods into its
ticks and re-arms it (see _settle). Expirations counted but not read ("ticks") are put back with the TFD_IOC_SET_TICKS
ioctl (CONFIG_CHECKPOINT_RESTORE); TFD_TIMER_CANCEL_ON_SET is kept.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
import time

from torpor.engine.linux import sys as lx
from torpor.engine.linux.procfs import read_fdinfo
from torpor.errors import TorporError
from torpor.image.schema import TimerFdFile

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.dump import DumpContext

TAG = "timerfd"
LINK = "anon_inode:[timerfd]"
TFD_TIMER_ABSTIME = 1
TFD_CLOEXEC, TFD_NONBLOCK = os.O_CLOEXEC, os.O_NONBLOCK
TFD_IOC_SET_TICKS = 0x40085400  # _IOW('T', 0, u64)
CLOCK_REALTIME, CLOCK_REALTIME_ALARM = 0, 8
NS = 1_000_000_000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p]
_libc.timerfd_gettime.argtypes = [ctypes.c_int, ctypes.c_void_p]


def matches(link: str, st: os.stat_result) -> bool:
    return link == LINK


def _timespec_ns(text: str) -> int:
    sec, nsec = (int(x) for x in text.strip("() ").split(","))
    return sec * NS + nsec


def _settle(pid: int, fd: int) -> dict:
    """fdinfo after timerfd_gettime on our own duplicate of the timerfd (pidfd_getfd): an
    interval timer that expired and was not read yet stays stopped in the kernel (fdinfo: one
    tick, it_value 0) until a read or timerfd_gettime forwards it, counting the periods
    missed since into its ticks and re-arming it. Nothing is consumed."""
    pidfd = lx.syscall(lx.NR["pidfd_open"], pid, 0)
    try:
        dup = lx.syscall(lx.NR["pidfd_getfd"], pidfd, fd, 0)
    finally:
        os.close(pidfd)
    try:
        cur = ctypes.create_string_buffer(32)
        _libc.timerfd_gettime(dup, cur)
    finally:
        os.close(dup)
    return read_fdinfo(pid, fd)


def dump(ctx: DumpContext, pid: int, fd: int, link: str, st: os.stat_result, info: dict) -> TimerFdFile:
    if info.get("it_interval", "(0, 0)") != "(0, 0)" and info.get("it_value") == "(0, 0)":
        info = _settle(pid, fd)
    clockid = int(info["clockid"])
    rec = TimerFdFile(id=-1, flags=int(info.get("flags", "0"), 8), clockid=clockid,
                      remaining_ns=_timespec_ns(info.get("it_value", "(0, 0)")),
                      interval_ns=_timespec_ns(info.get("it_interval", "(0, 0)")),
                      ticks=int(info.get("ticks", "0")),
                      settime_flags=int(info.get("settime flags", "0"), 8))
    if (rec.remaining_ns and rec.settime_flags & TFD_TIMER_ABSTIME
            and clockid in (CLOCK_REALTIME, CLOCK_REALTIME_ALARM)):
        rec.deadline_ns = time.clock_gettime_ns(CLOCK_REALTIME) + rec.remaining_ns
    return rec


def _check(res: int, what: str) -> int:
    if res < 0:
        raise TorporError(f"{what}: {os.strerror(ctypes.get_errno())}")
    return res


def open(rec: TimerFdFile, rctx) -> int:  # noqa: A001 - the kind's restore step
    flags = TFD_CLOEXEC | (TFD_NONBLOCK if rec.flags & os.O_NONBLOCK else 0)
    fd = _check(_libc.timerfd_create(rec.clockid, flags), f"timerfd_create(clock {rec.clockid})")
    try:
        if rec.remaining_ns:
            setflags = rec.settime_flags
            if setflags & TFD_TIMER_ABSTIME:
                value = rec.deadline_ns or time.clock_gettime_ns(rec.clockid) + rec.remaining_ns
            else:
                value = rec.remaining_ns
            spec = struct.pack("<4q", rec.interval_ns // NS, rec.interval_ns % NS, value // NS, value % NS)
            _check(_libc.timerfd_settime(fd, setflags, spec, None), "timerfd_settime")
        if rec.ticks:
            try:
                fcntl.ioctl(fd, TFD_IOC_SET_TICKS, struct.pack("<Q", rec.ticks))
            except OSError as err:
                raise TorporError(f"timerfd: cannot put back {rec.ticks} unread expirations "
                                  f"(TFD_IOC_SET_TICKS: {err.strerror})") from None
    except BaseException:
        os.close(fd)
        raise
    return fd

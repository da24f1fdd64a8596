"""POSIX timers (timer_create): ids, clocks, signal delivery, interval and remaining time.

Dump: /proc/PID/timers lists every timer with its id, signal number, sigev_value, how it
notifies (signal to the process, signal to one thread = SIGEV_THREAD_ID, none) and its
clock; timer_gettime and timer_getoverrun, injected into the stopped process, give the
interval and the time left to the next expiry.

Restore: the timers are created again inside the rebuilt process with their saved ids.
This kernel has prctl(PR_TIMER_CREATE_RESTORE_IDS) (Linux 6.17, made for CRIU): while it is
on, timer_create takes the id it must use from *timer_id. On an older kernel the ids are
handed out in order: timers are created until the wanted id comes back and the extra ones
are deleted afterwards.

Policy for the time between checkpoint and restore, the same as for timerfd: it does not
count. A timer comes back with the time it had left when it was checkpointed and then fires
every interval as before. The kernel does not say whether a timer was armed with
TIMER_ABSTIME, so an absolute CLOCK_REALTIME timer is re-armed relative too. The overrun
count of the last expiry cannot be set back and starts at 0. A timer signal already queued
at checkpoint time is restored with the other pending signals (signals.py).
"""

from __future__ import annotations

import struct

from torpor.engine.linux.procfs import read_status
from torpor.errors import TorporError
from torpor.image.schema import PosixTimer

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.inject import Injector

PR_TIMER_CREATE_RESTORE_IDS = 77
RESTORE_IDS_OFF, RESTORE_IDS_ON = 0, 1
SIGEV_THREAD_ID = 4
NOTIFY = {"signal": 0, "none": 1, "thread": 2}
_ITIMERSPEC = struct.Struct("<qqqq")  # it_interval {sec, nsec}, it_value {sec, nsec}
NSEC = 1_000_000_000
MAX_LINEAR_TRIES = 1 << 16  # fallback without the prctl: timers created to reach one id


class PosixTimerError(TorporError):
    pass


def read_timers(pid: int) -> list[dict]:
    """/proc/PID/timers as a list of {id, signo, value, notify, host_tid, clock}."""
    try:
        with open(f"/proc/{pid}/timers") as f:
            text = f.read()
    except FileNotFoundError:  # CONFIG_CHECKPOINT_RESTORE off: no timers can be seen
        return []
    out: list[dict] = []
    for line in text.splitlines():
        key, _, val = line.partition(":")
        val = val.strip()
        if key == "ID":
            out.append({"id": int(val)})
        elif key == "signal":
            signo, _, ptr = val.partition("/")
            out[-1]["signo"] = int(signo)
            out[-1]["value"] = int(ptr, 16) if ptr else 0
        elif key == "notify":
            how, _, who = val.partition("/")  # e.g. signal/pid.1234, signal/tid.1235
            kind, _, num = who.partition(".")
            out[-1]["notify"] = NOTIFY.get(how, 0) | (SIGEV_THREAD_ID if kind == "tid" else 0)
            out[-1]["host_tid"] = int(num) if num.lstrip("-").isdigit() else 0
        elif key == "ClockID":
            out[-1]["clock"] = int(val)
    return out


def _ns_tid(pid: int, host_tid: int) -> int:
    try:
        return int(read_status(pid, host_tid)["NSpid"].split()[-1])
    except (OSError, KeyError, ValueError):
        return host_tid


def dump(ctx, pid: int, inj: Injector, scratch: int) -> dict:
    timers: list[PosixTimer] = []
    for t in read_timers(pid):
        inj.call("timer_gettime", t["id"], scratch)
        isec, insec, vsec, vnsec = _ITIMERSPEC.unpack(inj.read(scratch, _ITIMERSPEC.size))
        overrun = inj.call("timer_getoverrun", t["id"], check=False)
        tid = _ns_tid(pid, t["host_tid"]) if t["notify"] & SIGEV_THREAD_ID else 0
        timers.append(PosixTimer(
            id=t["id"], clock=t.get("clock", 0), signo=t.get("signo", 0), notify=t["notify"],
            value=t.get("value", 0), tid=tid, interval_ns=isec * NSEC + insec,
            value_ns=vsec * NSEC + vnsec, overrun=max(overrun, 0),
        ))
    return {"posix_timers": timers} if timers else {}


def _sigevent(t: PosixTimer) -> bytes:
    # struct sigevent (64 bytes): sigev_value, sigev_signo, sigev_notify, union {_tid, ...}
    return struct.pack("<QiIi", t.value & ((1 << 64) - 1), t.signo, t.notify, t.tid).ljust(64, b"\0")


def _create(inj: Injector, s: int, t: PosixTimer, exact: bool) -> list[int]:
    """Create timer t with its id; returns the ids of extra timers made to get there."""
    inj.write(s, _sigevent(t))
    extra: list[int] = []
    for _ in range(1 if exact else MAX_LINEAR_TRIES):
        inj.write(s + 64, struct.pack("<i", t.id))
        inj.call("timer_create", t.clock, s, s + 64)
        got = struct.unpack("<i", inj.read(s + 64, 4))[0]
        if got == t.id:
            return extra
        extra.append(got)
        if exact or got > t.id:
            break
    for tid in extra:
        inj.call("timer_delete", tid, check=False)
    raise PosixTimerError(f"process {inj.pid}: POSIX timer {t.id} cannot get its id back "
                          f"(the kernel handed out {extra[-1] if extra else '?'})")


def restore(rt, inj: Injector, scratch: int) -> list[str]:
    timers = sorted(rt.proc.posix_timers, key=lambda t: t.id)
    if not timers:
        return []
    s = scratch
    try:
        inj.call("prctl", PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_ON, 0, 0, 0)
        exact = True
    except OSError:  # before Linux 6.17: ids are handed out in order
        exact = False
    extra: list[int] = []
    try:
        for t in timers:
            try:
                extra += _create(inj, s, t, exact)
            except OSError as err:
                raise PosixTimerError(f"process {rt.proc.pid}: cannot recreate POSIX timer {t.id} "
                                      f"(clock {t.clock}, signal {t.signo}): {err.strerror}") from None
    finally:
        if exact:
            inj.call("prctl", PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_OFF, 0, 0, 0, check=False)
    for tid in extra:
        inj.call("timer_delete", tid, check=False)
    for t in timers:
        if t.value_ns <= 0:
            continue  # disarmed: created, not set
        spec = _ITIMERSPEC.pack(t.interval_ns // NSEC, t.interval_ns % NSEC,
                                t.value_ns // NSEC, t.value_ns % NSEC)
        inj.write(s, spec)
        inj.call("timer_settime", t.id, 0, s, 0)
    return []


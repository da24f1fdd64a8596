"""Stop every thread of a process with PTRACE_SEIZE + PTRACE_INTERRUPT, and let them go.

Threads created while we seize are caught by listing /proc/PID/task until it is stable.
A signal that arrives during the seize is delivered as usual (not lost): a
signal-delivery-stop is resumed with its signal and we wait on for the interrupt stop.
"""

from __future__ import annotations

import os
import signal

from torpor.engine.linux import ptrace as pt
from torpor.engine.linux.procfs import list_tids
from torpor.errors import NotFound, TorporError


class FreezeError(TorporError):
    pass


def _wait_interrupt_stop(tid: int) -> None:
    while True:
        status = pt.wait_stop(tid)
        sig = os.WSTOPSIG(status)
        event = pt.stop_event(status)
        if event == pt.EVENT_STOP:
            return  # the PTRACE_INTERRUPT stop (or a group stop, also reported this way)
        if event:
            pt.cont(tid)
            continue
        # a signal-delivery-stop: deliver the signal, the interrupt stays pending
        pt.cont(tid, sig)


def seize_process(pid: int) -> list[int]:
    """Seize and stop every thread of pid. Returns the tids (leader first)."""
    if not os.path.exists(f"/proc/{pid}"):
        raise NotFound(f"process {pid} does not exist")
    seized: list[int] = []
    try:
        while True:
            try:
                tids = list_tids(pid)
            except FileNotFoundError:
                raise NotFound(f"process {pid} exited") from None
            new = [t for t in tids if t not in seized]
            if not new:
                break
            for tid in new:
                try:
                    pt.seize(tid)
                except ProcessLookupError:
                    continue
                except PermissionError as err:
                    raise FreezeError(f"cannot trace process {pid} (thread {tid}): {err.strerror}") from None
                seized.append(tid)
                pt.interrupt(tid)
                try:
                    _wait_interrupt_stop(tid)
                except ProcessLookupError:
                    seized.remove(tid)
        # a thread may have exited between listing and seizing
        alive = [t for t in seized if os.path.exists(f"/proc/{pid}/task/{t}")]
        status = open(f"/proc/{pid}/stat").read()
        if status[status.rindex(")") + 2] in "ZX":
            raise NotFound(f"process {pid} is a zombie")
        alive.sort(key=lambda t: (t != pid, t))
        return alive
    except BaseException:
        release(seized)
        raise


def release(tids: list[int]) -> None:
    """Detach: the threads go on from where they were stopped."""
    for tid in tids:
        try:
            pt.detach(tid)
        except (ProcessLookupError, OSError):
            pass


def kill(pid: int, tids: list[int]) -> None:
    """End a frozen process (after a complete checkpoint)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    release(tids)
    # wait until it is dead (a zombie for its parent to reap, or gone) so that the caller
    # can tell "killed" from "still running"
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
        except FileNotFoundError:
            return
        if raw[raw.rindex(")") + 2] in "ZX":
            return
        time.sleep(0.001)

"""Signal handlers, pending signals (private and shared queues), masks, alternate stacks."""

from __future__ import annotations

import struct

from torpor.engine.linux import ptrace as pt
from torpor.engine.linux.sys import SIGCHLD, SIGKILL, SIGSTOP
from torpor.image.schema import SigAction

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from collections.abc import Callable

    from torpor.engine.inject import Injector

NSIG = 64
SIG_IGN = 1
_KSIGACTION = struct.Struct("<QQQQ")  # handler, flags, restorer, mask (struct kernel_sigaction)
_STACK_T = struct.Struct("<QiiQ")  # ss_sp, ss_flags, pad, ss_size


def queue_sigactions(batch, status: dict[str, str]) -> Callable[[], list[SigAction]]:
    """Queue rt_sigaction queries for the signals /proc/PID/status shows caught or ignored,
    and SIGCHLD (SA_NOCLDSTOP/SA_NOCLDWAIT act on SIG_DFL too); returns what reads the answers
    once the batch has run. Any other signal has SIG_DFL, whose flags, mask and restorer take
    no part in delivery (which saves ~60 syscalls a process). Only actions other than SIG_DFL
    with nothing set are kept: a restored task starts with every action in that state."""
    handled = int(status["SigIgn"], 16) | int(status["SigCgt"], 16) | 1 << (SIGCHLD - 1)
    slots: list[tuple[int, int]] = []  # (signal, answer address)
    for sig in range(1, NSIG + 1):
        if sig not in (SIGKILL, SIGSTOP) and handled >> (sig - 1) & 1:
            addr = batch.out(_KSIGACTION.size)
            batch.add("rt_sigaction", sig, 0, addr, 8)
            slots.append((sig, addr))

    def answers() -> list[SigAction]:
        read = batch.inj.read
        out = []
        for sig, addr in slots:
            handler, flags, restorer, mask = _KSIGACTION.unpack(read(addr, _KSIGACTION.size))
            if handler or flags or restorer or mask:
                out.append(SigAction(sig, handler, flags, restorer, mask))
        return out

    return answers


def reset_sigactions() -> None:
    """Every action of the calling process back to SIG_DFL with no flags, mask or restorer:
    the state restore_sigactions expects of a task (glibc's own handlers for signals 32 and
    33, which Python cannot name, included)."""
    from torpor.engine.linux import sys as lx

    default = bytes(_KSIGACTION.size)
    for sig in range(1, NSIG + 1):
        if sig not in (SIGKILL, SIGSTOP):
            lx.syscall(lx.NR["rt_sigaction"], sig, default, 0, 8)


def queue_restore_sigactions(batch, actions: list[SigAction]) -> None:
    """Queue the saved actions that are not SIG_DFL-with-nothing: the task has every action in
    that state already (the root task ran reset_sigactions before it was seized; every other
    task was forked from one in that state, before its parent's actions were restored)."""
    for a in actions:
        if a.sig in (SIGKILL, SIGSTOP) or not (a.handler or a.flags or a.restorer or a.mask):
            continue
        act = _KSIGACTION.pack(a.handler, a.flags, a.restorer, a.mask)
        batch.add("rt_sigaction", a.sig, batch.data(act), 0, 8)


def queue_altstack(batch) -> Callable[[], tuple[int, int, int]]:
    """The calling thread's alternate signal stack (sp, flags, size), once the batch has run."""
    addr = batch.out(_STACK_T.size)
    batch.add("sigaltstack", 0, addr)

    def answer() -> tuple[int, int, int]:
        sp, flags, _, size = _STACK_T.unpack(batch.inj.read(addr, _STACK_T.size))
        return sp, flags, size

    return answer


def restore_altstack(inj: Injector, scratch: int, sp: int, flags: int, size: int) -> None:
    SS_DISABLE, SS_ONSTACK = 2, 1
    if flags & SS_DISABLE or not size:
        return  # a fresh task has no alternate stack
    inj.write(scratch, _STACK_T.pack(sp, flags & ~SS_ONSTACK, 0, size))
    inj.call("sigaltstack", scratch, 0)


def dump_pending(tid: int, shared: bool) -> list[bytes]:
    return pt.peek_siginfo(tid, shared)


def restore_pending(inj: Injector, scratch: int, tgid: int, tid: int, infos: list[bytes],
                    shared: bool, ignored: set[int]) -> None:
    """Queue the saved siginfos again, from the task to itself (any si_code is allowed then)."""
    for info in infos:
        sig = int.from_bytes(info[0:4], "little", signed=True)
        if sig in ignored:
            continue
        inj.write(scratch, info)
        if shared:
            inj.call("rt_sigqueueinfo", tgid, sig, scratch)
        else:
            inj.call("rt_tgsigqueueinfo", tgid, tid, sig, scratch)


def ignored_signals(actions: list[SigAction]) -> set[int]:
    return {a.sig for a in actions if a.handler == SIG_IGN}

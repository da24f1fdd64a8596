"""Run system calls inside a stopped, ptrace'd task: the parasite without a blob.

rip is pointed at a `syscall` instruction that already exists in the task (the vDSO has
several), the arguments go in registers, orig_rax = -1 keeps the kernel's restart logic away,
and one PTRACE_SINGLESTEP executes it. All signals are blocked meanwhile, so the step trap is
the stop we see. The task's registers and signal mask are put back by finish().
"""

from __future__ import annotations

import os

from torpor.engine.linux import ptrace as pt
from torpor.engine.linux import sys as lx
from torpor.engine.linux.procfs import read_maps
from torpor.engine.linux.sys import (
    MAP_ANONYMOUS,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    NR,
    PAGE_SIZE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
)
from torpor.errors import TorporError

ALL_SIGNALS = (1 << 64) - 1
TRACE = bool(os.environ.get("TORPOR_TRACE_INJECT"))  # print every injected call to stderr
SYSCALL_INSN = b"\x0f\x05"


class InjectError(TorporError):
    pass


def find_syscall_insn(pid: int, mem_fd: int, maps: list | None = None,
                      vdso: tuple[int, int] | None = None) -> int:
    """Address of a `syscall` instruction in pid's vDSO (maps: pid's, if already read; or
    vdso: where it is)."""
    if vdso is None:
        vdso = next(((v.start, v.end) for v in (maps if maps is not None else
                                                 read_maps(pid, with_flags=False))
                     if v.path == "[vdso]"), None)
    if vdso is not None:
        off = os.pread(mem_fd, vdso[1] - vdso[0], vdso[0]).find(SYSCALL_INSN)
        if off >= 0:
            return vdso[0] + off
    raise InjectError(f"process {pid}: no syscall instruction found in its vDSO")


class Injector:
    """Syscalls executed by one stopped thread `tid` (address space of `pid`)."""

    def __init__(self, pid: int, tid: int, mem_fd: int, syscall_ip: int) -> None:
        self.pid, self.tid, self.mem_fd, self.syscall_ip = pid, tid, mem_fd, syscall_ip
        self.saved_regs = pt.get_regs(tid)
        self.saved_sigmask = pt.get_sigmask(tid)
        pt.set_sigmask(tid, ALL_SIGNALS)
        self.events: list[tuple[int, int]] = []  # (event, message) seen while stepping
        # an executable area of the task for batched syscalls: (address, size, guard range)
        self.batch_area: tuple[int, int, tuple[int, int]] | None = None

    def batch(self):
        """A Batch (engine/batch.py) running its calls in this thread: one round trip for
        many syscalls. Needs batch_area (see Scratch(batch=...))."""
        from torpor.engine.batch import Batch

        if self.batch_area is None:
            raise InjectError(f"task {self.tid}: no batch area mapped")
        addr, size, guard = self.batch_area
        return Batch(self, addr, size, guard=guard)

    def share_batch_area(self, other: Injector) -> None:
        """Use the batch area of another thread of the same address space (or of the
        parent it was forked from: the area is inherited)."""
        self.batch_area = other.batch_area

    def call(self, name: str | int, *args: int, check: bool = True) -> int:
        nr = NR[name] if isinstance(name, str) else name
        regs = self.saved_regs.copy()
        regs.rip = self.syscall_ip
        regs.rax = nr
        regs.orig_rax = (1 << 64) - 1
        for reg, val in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args, strict=False):
            setattr(regs, reg, val & ((1 << 64) - 1))
        pt.set_regs(self.tid, regs)
        pt.singlestep(self.tid)
        for _ in range(1000):
            status = pt.wait_stop(self.tid)
            sig = os.WSTOPSIG(status)
            event = pt.stop_event(status)
            if sig == lx.SIGTRAP and event == 0:
                break
            if event:
                # e.g. PTRACE_EVENT_CLONE before the step completes: note it, keep stepping
                self.events.append((event, pt.get_event_msg(self.tid)))
                pt.singlestep(self.tid)
                continue
            if sig == lx.SIGSTOP:  # cannot be blocked: swallow it, keep stepping
                pt.singlestep(self.tid)
                continue
            raise InjectError(
                f"task {self.tid}: injected {name} at {self.syscall_ip:#x} raised signal {sig}"
            )
        else:
            raise InjectError(f"task {self.tid}: injected {name} did not complete (status {status:#x})")
        res = pt.get_regs(self.tid).rax
        if res >= (1 << 63):
            res -= 1 << 64
        if TRACE:
            import sys

            sys.stderr.write(f"inject {self.tid}: {name}({', '.join(hex(a) for a in args)}) = {res:#x}\n")
        if check and -4096 < res < 0:
            raise OSError(-res, f"{os.strerror(-res)} (injected {name} in task {self.tid})")
        return res

    def finish(self, regs: pt.Regs | None = None, sigmask: int | None = None) -> None:
        """Put the task's registers and signal mask back (or the given ones)."""
        pt.set_regs(self.tid, regs if regs is not None else self.saved_regs)
        pt.set_sigmask(self.tid, self.saved_sigmask if sigmask is None else sigmask)

    # memory of the target, through /proc/PID/mem (works on read-only and PROT_NONE pages)
    def read(self, addr: int, size: int) -> bytes:
        return os.pread(self.mem_fd, size, addr)

    def write(self, addr: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.mem_fd, view, addr)
            view, addr = view[n:], addr + n


class Scratch:
    """A private anonymous area mapped inside the task for syscall arguments. With batch
    (bytes), that many more bytes follow, executable, and become inj's batch area (the whole
    scratch is guarded against batched calls that would map over it)."""

    def __init__(self, inj: Injector, size: int = 4 * PAGE_SIZE, at: int = 0, batch: int = 0) -> None:
        self.inj = inj
        self.size = size + batch
        flags = MAP_PRIVATE | MAP_ANONYMOUS | (MAP_FIXED_NOREPLACE if at else 0)
        prot = PROT_READ | PROT_WRITE | (PROT_EXEC if batch else 0)
        self.addr = inj.call("mmap", at, self.size, prot, flags, -1, 0)
        if batch:
            inj.batch_area = (self.addr + size, batch, (self.addr, self.addr + self.size))

    def unmap(self, inj: Injector | None = None) -> None:
        (inj or self.inj).call("munmap", self.addr, self.size)

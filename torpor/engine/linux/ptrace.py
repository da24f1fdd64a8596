"""ptrace(2) for x86_64: requests, user_regs_struct, regsets, siginfo peeking, waits."""

from __future__ import annotations

import ctypes
import os

from torpor.engine.linux.sys import NR, WALL, syscall

TRACEME, PEEKDATA, POKEDATA, CONT, KILL, SINGLESTEP = 0, 2, 5, 7, 8, 9
GETREGS, SETREGS, ATTACH, DETACH = 12, 13, 16, 17
SETOPTIONS, GETEVENTMSG, GETSIGINFO, SETSIGINFO = 0x4200, 0x4201, 0x4202, 0x4203
GETREGSET, SETREGSET, SEIZE, INTERRUPT, LISTEN = 0x4204, 0x4205, 0x4206, 0x4207, 0x4208
PEEKSIGINFO, GETSIGMASK, SETSIGMASK = 0x4209, 0x420A, 0x420B
SECCOMP_GET_FILTER, GET_SYSCALL_INFO, GET_RSEQ_CONFIGURATION = 0x420C, 0x420E, 0x420F

O_TRACESYSGOOD, O_TRACEFORK, O_TRACEVFORK, O_TRACECLONE = 1, 2, 4, 8
O_TRACEEXEC, O_TRACEVFORKDONE, O_TRACEEXIT, O_TRACESECCOMP = 0x10, 0x20, 0x40, 0x80
O_EXITKILL, O_SUSPEND_SECCOMP = 0x100000, 0x200000

EVENT_FORK, EVENT_VFORK, EVENT_CLONE, EVENT_EXEC = 1, 2, 3, 4
EVENT_VFORK_DONE, EVENT_EXIT, EVENT_SECCOMP, EVENT_STOP = 5, 6, 7, 128

NT_PRSTATUS, NT_PRFPREG, NT_X86_XSTATE = 1, 2, 0x202
PEEKSIGINFO_SHARED = 1
SIGINFO_SIZE = 128

REG_NAMES = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
    "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds",
    "es", "fs", "gs",
)


class Regs(ctypes.Structure):
    """struct user_regs_struct (x86_64)."""

    _fields_ = [(n, ctypes.c_ulonglong) for n in REG_NAMES]

    def copy(self) -> Regs:
        r = Regs()
        ctypes.memmove(ctypes.addressof(r), ctypes.addressof(self), ctypes.sizeof(Regs))
        return r

    def to_bytes(self) -> bytes:
        return bytes(self)

    @classmethod
    def from_bytes(cls, b: bytes) -> Regs:
        return cls.from_buffer_copy(b)


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class PeekSiginfoArgs(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("flags", ctypes.c_uint32), ("nr", ctypes.c_int32)]


class RseqConfig(ctypes.Structure):
    _fields_ = [
        ("rseq_abi_pointer", ctypes.c_uint64),
        ("rseq_abi_size", ctypes.c_uint32),
        ("signature", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


def ptrace(req: int, pid: int, addr: int = 0, data: int = 0) -> int:
    return syscall(NR["ptrace"], req, pid, addr, data)


def seize(tid: int, options: int = 0) -> None:
    ptrace(SEIZE, tid, 0, options)


def interrupt(tid: int) -> None:
    ptrace(INTERRUPT, tid)


def detach(tid: int, sig: int = 0) -> None:
    ptrace(DETACH, tid, 0, sig)


def cont(tid: int, sig: int = 0) -> None:
    ptrace(CONT, tid, 0, sig)


def singlestep(tid: int, sig: int = 0) -> None:
    ptrace(SINGLESTEP, tid, 0, sig)


def set_options(tid: int, options: int) -> None:
    ptrace(SETOPTIONS, tid, 0, options)


def get_event_msg(tid: int) -> int:
    v = ctypes.c_ulong()
    ptrace(GETEVENTMSG, tid, 0, ctypes.addressof(v))
    return v.value


def get_regs(tid: int) -> Regs:
    r = Regs()
    ptrace(GETREGS, tid, 0, ctypes.addressof(r))
    return r


def set_regs(tid: int, regs: Regs) -> None:
    ptrace(SETREGS, tid, 0, ctypes.addressof(regs))


_xstate_size: int | None = None


def get_xstate(tid: int) -> bytes:
    """The full XSAVE area (2432 bytes on this CPU). Sizes itself on first use."""
    global _xstate_size
    size = _xstate_size or 4096 * 4
    buf = ctypes.create_string_buffer(size)
    iov = IoVec(ctypes.addressof(buf), size)
    ptrace(GETREGSET, tid, NT_X86_XSTATE, ctypes.addressof(iov))
    _xstate_size = iov.len
    return buf.raw[: iov.len]


def set_xstate(tid: int, xstate: bytes) -> None:
    buf = ctypes.create_string_buffer(xstate, len(xstate))
    iov = IoVec(ctypes.addressof(buf), len(xstate))
    ptrace(SETREGSET, tid, NT_X86_XSTATE, ctypes.addressof(iov))


def xstate_features(xstate: bytes) -> int:
    """XCR0 as recorded by the kernel in the software-reserved bytes of the FXSAVE area
    (struct _fpx_sw_bytes at offset 464: magic1, extended_size, xfeatures, xstate_size)."""
    return int.from_bytes(xstate[472:480], "little")


def get_sigmask(tid: int) -> int:
    v = ctypes.c_uint64()
    ptrace(GETSIGMASK, tid, 8, ctypes.addressof(v))
    return v.value


def set_sigmask(tid: int, mask: int) -> None:
    v = ctypes.c_uint64(mask)
    ptrace(SETSIGMASK, tid, 8, ctypes.addressof(v))


def peek_siginfo(tid: int, shared: bool) -> list[bytes]:
    """Pending signals (siginfo_t, 128 bytes each) without dequeuing them."""
    out: list[bytes] = []
    batch = 32
    buf = ctypes.create_string_buffer(SIGINFO_SIZE * batch)
    while True:
        args = PeekSiginfoArgs(len(out), PEEKSIGINFO_SHARED if shared else 0, batch)
        n = ptrace(PEEKSIGINFO, tid, ctypes.addressof(args), ctypes.addressof(buf))
        if n <= 0:
            return out
        raw = buf.raw
        out.extend(raw[i * SIGINFO_SIZE : (i + 1) * SIGINFO_SIZE] for i in range(n))


def get_rseq(tid: int) -> RseqConfig:
    c = RseqConfig()
    ptrace(GET_RSEQ_CONFIGURATION, tid, ctypes.sizeof(c), ctypes.addressof(c))
    return c


def get_siginfo(tid: int) -> bytes:
    buf = ctypes.create_string_buffer(SIGINFO_SIZE)
    ptrace(GETSIGINFO, tid, 0, ctypes.addressof(buf))
    return buf.raw


def waitpid(tid: int, flags: int = 0) -> tuple[int, int]:
    return os.waitpid(tid, flags | WALL)


def wait_stop(tid: int) -> int:
    """Wait for the next stop of tid; return the raw status. Raises if the task died."""
    while True:
        try:
            pid, status = os.waitpid(tid, WALL)
        except InterruptedError:
            continue
        if os.WIFSTOPPED(status):
            return status
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            raise ProcessLookupError(f"task {tid} exited while traced (status {status:#x})")


def stop_event(status: int) -> int:
    return (status >> 16) & 0xFF


def get_robust_list(tid: int) -> tuple[int, int]:
    head = ctypes.c_void_p()
    size = ctypes.c_size_t()
    syscall(NR["get_robust_list"], tid, ctypes.addressof(head), ctypes.addressof(size))
    return head.value or 0, size.value

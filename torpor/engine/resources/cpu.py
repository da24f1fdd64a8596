"""Registers and the extended FPU state (xstate, AVX-512 included), with syscall restarts."""

from __future__ import annotations

from torpor.engine.linux import ptrace as pt
from torpor.engine.linux.cpu import feature_names, xcr0
from torpor.errors import ImageError

ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK = 512, 513, 514, 516
EINTR = 4
MASK64 = (1 << 64) - 1


def dump(tid: int, regs: pt.Regs) -> tuple[bytes, bytes]:
    return regs.to_bytes(), pt.get_xstate(tid)


def regs_for_new_task(raw: bytes) -> pt.Regs:
    """Registers to give a recreated task. A task stopped inside an interrupted system call
    restarts it (rip back over `syscall`, rax = number) as the kernel would have; a relative
    sleep (-ERESTART_RESTARTBLOCK) has no restart block in the new task and returns -EINTR."""
    regs = pt.Regs.from_bytes(raw)
    orig = regs.orig_rax
    if orig < (1 << 63):  # inside a system call
        err = (-regs.rax) & MASK64 if regs.rax >= (1 << 63) else 0
        if err in (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND):
            regs.rip -= 2
            regs.rax = orig
        elif err == ERESTART_RESTARTBLOCK:
            regs.rax = (-EINTR) & MASK64
    regs.orig_rax = MASK64
    return regs


def check_cpu(image_features: int, image_xstate_size: int) -> None:
    """Refuse an image whose xstate needs features this CPU does not have."""
    missing = image_features & ~xcr0()
    if missing:
        raise ImageError(
            "this CPU lacks xstate features the image needs: "
            + ", ".join(feature_names(missing))
            + f" (image XCR0 {image_features:#x}, this CPU {xcr0():#x})"
        )


def fit_xstate(xstate: bytes, size: int) -> bytes:
    """The kernel insists on its own xstate size: pad (a superset CPU) or trim."""
    if len(xstate) == size:
        return xstate
    if len(xstate) < size:
        return xstate + bytes(size - len(xstate))
    return xstate[:size]


def restore(tid: int, raw_regs: bytes, xstate: bytes, size: int) -> None:
    pt.set_xstate(tid, fit_xstate(xstate, size))
    pt.set_regs(tid, regs_for_new_task(raw_regs))

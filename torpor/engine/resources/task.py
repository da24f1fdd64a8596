"""Per-process and per-thread attributes: credentials, capabilities, rlimits, personality,
itimers, prctl bits, cwd/root/umask; thread name, rseq, robust list, clear_child_tid."""

from __future__ import annotations

import errno
import os
import struct

from torpor.engine.linux import sys as lx
from torpor.engine.linux.procfs import read_status
from torpor.image.schema import Creds, Itimer

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from collections.abc import Callable

    from torpor.engine.inject import Injector

RLIMIT_COUNT = 16
RLIM_INFINITY = (1 << 64) - 1
_ITIMERVAL = struct.Struct("<qqqq")  # interval {sec, usec}, value {sec, usec}


# ------------------------------------------------------------------- credentials


def dump_creds(pid: int, status: dict[str, str] | None = None) -> Creds:
    st = status if status is not None else read_status(pid)
    return Creds(
        uid=[int(x) for x in st["Uid"].split()],
        gid=[int(x) for x in st["Gid"].split()],
        groups=[int(x) for x in st.get("Groups", "").split()],
        cap_inh=int(st["CapInh"], 16),
        cap_prm=int(st["CapPrm"], 16),
        cap_eff=int(st["CapEff"], 16),
        cap_bnd=int(st["CapBnd"], 16),
        cap_amb=int(st.get("CapAmb", "0"), 16),
        no_new_privs=st.get("NoNewPrivs", "0") == "1",
    )


def restore_creds(inj: Injector, scratch: int, c: Creds, last_cap: int) -> None:
    """Switch one thread to the saved credentials. Order matters: the bounding set and
    groups need CAP_SETPCAP/CAP_SETGID, so they go before the uid change; KEEPCAPS keeps the
    permitted set across it; capset then trims to the exact sets. One batch of injected
    calls when the thread has a batch area."""
    batch = inj.batch() if inj.batch_area is not None else None

    def put(data: bytes) -> int:
        if batch is not None:
            return batch.data(data)
        inj.write(scratch, data)
        return scratch

    call = batch.add if batch is not None else inj.call
    for cap in range(last_cap + 1):
        if not c.cap_bnd >> cap & 1:
            call("prctl", lx.PR_CAPBSET_DROP, cap, 0, 0, 0)
    groups = put(struct.pack(f"<{len(c.groups)}I", *c.groups) if c.groups else b"\0" * 4)
    call("setgroups", len(c.groups), groups)
    call("setresgid", c.gid[0], c.gid[1], c.gid[2])
    call("setfsgid", c.gid[3], check=False)
    call("prctl", lx.PR_SET_KEEPCAPS, 1, 0, 0, 0)
    call("setresuid", c.uid[0], c.uid[1], c.uid[2])
    call("setfsuid", c.uid[3], check=False)
    call("prctl", lx.PR_SET_KEEPCAPS, 0, 0, 0, 0)
    # struct __user_cap_header_struct {u32 version, int pid}; two __user_cap_data_struct
    hdr = struct.pack("<Ii", 0x20080522, 0)
    data = struct.pack(
        "<6I",
        c.cap_eff & 0xFFFFFFFF, c.cap_prm & 0xFFFFFFFF, c.cap_inh & 0xFFFFFFFF,
        c.cap_eff >> 32, c.cap_prm >> 32, c.cap_inh >> 32,
    )
    caps = put(hdr + data)
    call("capset", caps, caps + len(hdr))
    call("prctl", lx.PR_CAP_AMBIENT, lx.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, check=False)
    for cap in range(last_cap + 1):
        if c.cap_amb >> cap & 1:
            call("prctl", lx.PR_CAP_AMBIENT, lx.PR_CAP_AMBIENT_RAISE, cap, 0, 0)
    if batch is not None:
        batch.run()


def creds_are_root_full(c: Creds, last_cap: int) -> bool:
    full = (1 << (last_cap + 1)) - 1
    return (
        c.uid == [0, 0, 0, 0] and c.gid == [0, 0, 0, 0] and c.cap_prm & full == full
        and c.cap_eff & full == full and c.cap_bnd & full == full and not c.cap_amb
        and not c.cap_inh
    )


# ----------------------------------------------------------------------- rlimits


def dump_rlimits(inj: Injector, scratch: int) -> list[list[int]]:
    """From /proc/PID/limits (prlimit64 on another uid needs CAP_SYS_RESOURCE, which this
    machine's root lacks, and 16 injected calls cost ~2 ms a process). The kernel prints one
    line per resource in RLIMIT order, columns "%-25s %-20s %-20s": raw values, so exact."""
    with open(f"/proc/{inj.pid}/limits") as f:
        lines = f.read().splitlines()[1:]
    if len(lines) < RLIMIT_COUNT:
        raise OSError(f"/proc/{inj.pid}/limits has {len(lines)} limits, not {RLIMIT_COUNT}")

    def value(text: str) -> int:
        return RLIM_INFINITY if text == "unlimited" else int(text)

    return [[value(ln[26:46].strip()), value(ln[47:67].strip())] for ln in lines[:RLIMIT_COUNT]]


def queue_restore_rlimits(batch, limits: list[list[int]]) -> range:
    """Queue the saved limits (set inside the task, before its credentials change); returns
    the indices of their results for settle_rlimits."""
    first = len(batch)
    for res, (cur, mx) in enumerate(limits):
        batch.add("prlimit64", 0, res, batch.data(struct.pack("<QQ", cur, mx)), 0, check=False)
    return range(first, len(batch))


def settle_rlimits(inj: Injector, scratch: int, limits: list[list[int]],
                   results: list[int]) -> list[str]:
    """After the batch: a hard limit above the restorer's cannot be raised without
    CAP_SYS_RESOURCE (EPERM); those are capped at the restorer's one by one, with a warning."""
    warnings = []
    for res, got in enumerate(results):
        if got >= 0:
            continue
        if got != -errno.EPERM:
            raise OSError(-got, f"{os.strerror(-got)} (batched prlimit64 of resource {res} "
                                f"in task {inj.tid})")
        cur, mx = limits[res]
        inj.call("prlimit64", 0, res, 0, scratch + 16)
        _, old_max = struct.unpack("<QQ", inj.read(scratch + 16, 16))
        inj.write(scratch, struct.pack("<QQ", min(cur, old_max), min(mx, old_max)))
        inj.call("prlimit64", 0, res, scratch, 0)
        warnings.append(f"rlimit {res}: hard limit {mx} capped at {old_max}")
    return warnings


# ------------------------------------------------------------------- misc prctl


def queue_itimers(batch) -> Callable[[], list[Itimer]]:
    """The armed interval timers, once the batch has run."""
    slots = []
    for which in (0, 1, 2):  # ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF
        addr = batch.out(_ITIMERVAL.size)
        batch.add("getitimer", which, addr)
        slots.append((which, addr))

    def answers() -> list[Itimer]:
        out = []
        for which, addr in slots:
            isec, iusec, vsec, vusec = _ITIMERVAL.unpack(batch.inj.read(addr, _ITIMERVAL.size))
            if vsec or vusec or isec or iusec:
                out.append(Itimer(which, isec * 1_000_000 + iusec, vsec * 1_000_000 + vusec))
        return out

    return answers


def restore_itimers(inj: Injector, scratch: int, timers: list[Itimer]) -> None:
    for t in timers:
        value = max(t.value_us, 1)
        inj.write(scratch, _ITIMERVAL.pack(t.interval_us // 1_000_000, t.interval_us % 1_000_000,
                                           value // 1_000_000, value % 1_000_000))
        inj.call("setitimer", t.which, scratch, 0)


def queue_prctl_get(batch, option: int) -> Callable[[], int]:
    """prctl options that answer through a pointer (PDEATHSIG, CHILD_SUBREAPER, TID_ADDRESS),
    once the batch has run."""
    addr = batch.out(8)
    batch.add("prctl", option, addr, 0, 0, 0)
    return lambda: int.from_bytes(batch.inj.read(addr, 8), "little")


def read_personality(pid: int) -> int:
    with open(f"/proc/{pid}/personality") as f:
        return int(f.read(), 16)


def read_cwd_root(pid: int) -> tuple[str, str]:
    return os.readlink(f"/proc/{pid}/cwd"), os.readlink(f"/proc/{pid}/root")

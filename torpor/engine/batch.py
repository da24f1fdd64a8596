"""Batched system calls inside a stopped, ptrace'd task: one round trip for N syscalls.

Injector.call costs one PTRACE_SINGLESTEP round trip (set regs, step, waitpid, get regs:
~130 us from Python) per syscall. A Batch instead writes a table of syscall entries and a
small loop of machine code into an executable area of the task, points rip at the loop and
lets the task run (PTRACE_CONT) until the loop's final `int3`; one read then brings every
result back.

The area (mapped by the caller, readable, writable and executable, e.g. inside restore's
scratch) is laid out as:

    +0            the code below (CODE_SIZE bytes reserved)
    +CODE_SIZE    argument data (bytes that entries point at: structs, strings)
    +TABLE_OFF    the table: ENTRY_SIZE bytes per entry

Entry (8 little-endian quadwords): nr | flags << 32, arg0 .. arg5, result.
flags bit 0 (STOP): stop after this entry if it fails (-4095 <= result <= -1).

The loop (hand-assembled for x86-64; it uses no stack and no memory but the table: only
rbx and r12, which the kernel preserves across `syscall`, and rax/rcx/r11, which it may
clobber). On entry rbx = first entry, r12 = end of the table:

    loop:  4c 39 e3              cmp   rbx, r12          ; past the last entry?
           73 32                 jae   done              ;   yes: finish
           8b 03                 mov   eax, [rbx]        ; syscall number (low dword; zero-extends)
           48 8b 7b 08           mov   rdi, [rbx+8]      ; arg0
           48 8b 73 10           mov   rsi, [rbx+16]     ; arg1
           48 8b 53 18           mov   rdx, [rbx+24]     ; arg2
           4c 8b 53 20           mov   r10, [rbx+32]     ; arg3
           4c 8b 43 28           mov   r8,  [rbx+40]     ; arg4
           4c 8b 4b 30           mov   r9,  [rbx+48]     ; arg5
           0f 05                 syscall
           48 89 43 38           mov   [rbx+56], rax     ; result slot
           48 83 c3 40           add   rbx, 64           ; next entry
           48 3d 01 f0 ff ff     cmp   rax, -4095        ; unsigned: below = not an error
           72 cf                 jb    loop
           f6 43 c4 01           test  byte [rbx-60], 1  ; failed: the entry's STOP flag
           74 c9                 jz    loop              ;   not set: go on
    done:  cc                    int3                    ; SIGTRAP stop for the tracer

On the trap, rbx points past the last entry executed. Signals stay blocked (the Injector
blocked them all); a syscall interrupted by SIGSTOP is restarted by the kernel (rip and rax
are rewound by the normal restart logic, the argument registers are intact).
"""

from __future__ import annotations

import os
import struct
import sys

from torpor.engine.linux import ptrace as pt
from torpor.engine.linux import sys as lx
from torpor.engine.linux.sys import MAP_FIXED, MREMAP_FIXED, NR, PAGE_SIZE

CODE = bytes.fromhex(
    "4c39e3" "7332" "8b03" "488b7b08" "488b7310" "488b5318" "4c8b5320" "4c8b4328" "4c8b4b30"
    "0f05" "48894338" "4883c340" "483d01f0ffff" "72cf" "f643c401" "74c9" "cc"
)
TRAP_END = len(CODE)  # rip after the int3
CODE_SIZE = 256
ENTRY = struct.Struct("<IIQQQQQQQ")  # nr, flags, args[6], result
ENTRY_SIZE = ENTRY.size
STOP = 1
AREA_SIZE = 64 * PAGE_SIZE  # a default area: 60 KiB of data, 3072 entries
MASK64 = (1 << 64) - 1
# calls that must not run in the loop (x86-64 numbers): a new task would run the loop too
# (clone, clone3, fork, vfork), the others end or replace the task or its frame
FORBIDDEN = {56, 435, 57, 58, 59, 322, 60, 231, 15}
# calls whose (address, length) arguments are checked against the guarded range
RANGE_CALLS = {11: "munmap", 10: "mprotect", 329: "pkey_mprotect", 28: "madvise",
               462: "mseal", 216: "remap_file_pages"}
NAMES = {nr: name for name, nr in NR.items()}
GUARDED = set(RANGE_CALLS) | {NR["mmap"], NR["mremap"]}
SHMAT, SHM_REMAP = 30, 0o40000
GUARDED.add(SHMAT)
_ZEROS = [(0,) * (6 - n) for n in range(7)]
TRACE = bool(os.environ.get("TORPOR_TRACE_INJECT"))  # print every batched call to stderr


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


class Batch:
    """Syscalls queued with add(), executed in the task of `inj` by run().

    area/size: an executable, writable area of the task that nothing in the batch may map
    over, unmap or change (checked before anything runs); guard: a larger range to protect
    (default: the area itself)."""

    def __init__(self, inj, area: int, size: int = AREA_SIZE,
                 guard: tuple[int, int] | None = None, table_off: int | None = None) -> None:
        from torpor.engine.inject import InjectError

        self.Error = InjectError
        self.inj, self.area, self.size = inj, area, size
        self.guard = guard or (area, area + size)
        self.table_off = table_off if table_off is not None else max(CODE_SIZE, size // 4 // 64 * 64)
        if not CODE_SIZE <= self.table_off <= size - ENTRY_SIZE:
            raise ValueError(f"batch area of {size} bytes is too small")
        self.capacity = (size - self.table_off) // ENTRY_SIZE
        self.entries: list[tuple[int, int, tuple[int, ...]]] = []  # (nr, flags, args)
        self.data_buf = bytearray()
        self.data_base = area + CODE_SIZE
        self.data_cap = self.table_off - CODE_SIZE
        self.results: list[int] = []
        self.events: list[tuple[int, int]] = []
        self.answers_pending = False  # out() handed out space the queued calls will fill
        self.code_written = False

    def __len__(self) -> int:
        return len(self.results) + len(self.entries)

    # ---------------------------------------------------------------- queueing
    def data(self, payload: bytes, align: int = 8) -> int:
        """Address (in the task) that will hold payload when the queued calls run."""
        if len(payload) > self.data_cap:
            raise ValueError(f"batch argument of {len(payload)} bytes exceeds the data area")
        pad = -len(self.data_buf) % align
        if len(self.data_buf) + pad + len(payload) > self.data_cap:
            self._make_room()  # the queued calls run now; their data may then be reused
            pad = 0
        self.data_buf += bytes(pad)
        addr = self.data_base + len(self.data_buf)
        self.data_buf += payload
        return addr

    def out(self, size: int, align: int = 8) -> int:
        """Address of SIZE zeroed bytes for a queued call to write its answer into (read it
        back with inj.read after run()). The batch never runs early to make room once answers
        are pending: that would let later calls overwrite them; too much raises instead."""
        pad = -len(self.data_buf) % align
        if len(self.data_buf) + pad + size > self.data_cap:
            raise ValueError(f"batch answers of {size} more bytes exceed the data area")
        self.data_buf += bytes(pad + size)
        self.answers_pending = True
        return self.data_base + len(self.data_buf) - size

    def _make_room(self) -> None:
        if self.answers_pending:
            raise ValueError("batch full while answers are pending in its data area")
        self.flush()

    def add(self, name: str | int, *args: int, check: bool = True) -> int:
        """Queue a syscall; returns its index in run()'s results. check: a failure stops the
        batch and raises OSError (as Injector.call does); otherwise its -errno is the result."""
        nr = NR[name] if name.__class__ is str else name
        if nr in FORBIDDEN:
            raise ValueError(f"syscall {NAMES.get(nr, nr)} cannot run in a batch")
        if len(args) > 6:
            raise ValueError("a syscall takes at most 6 arguments")
        full = tuple([a & MASK64 for a in args]) + _ZEROS[len(args)]
        if nr in GUARDED:
            self._check_guard(nr, full)
        if len(self.entries) >= self.capacity:  # only while answers are pending
            raise ValueError("batch table full while answers are pending in its data area")
        self.entries.append((nr, STOP if check else 0, full))
        if len(self.entries) >= self.capacity and not self.answers_pending:
            self.flush()  # a full table runs at once (its data goes with it)
        return len(self.results) + len(self.entries) - 1

    def _check_guard(self, nr: int, a: tuple[int, ...]) -> None:
        """Refuse a call that would map over, unmap or change the batch's own memory."""
        name = NAMES.get(nr) or RANGE_CALLS.get(nr) or str(nr)
        ranges = []
        if nr == NR["mmap"] and a[3] & MAP_FIXED:
            ranges.append((a[0], a[1]))
        elif nr in RANGE_CALLS:
            ranges.append((a[0], a[1]))
        elif nr == NR["mremap"]:
            ranges.append((a[0], a[1]))
            if a[3] & MREMAP_FIXED:
                ranges.append((a[4], a[2]))
        lo, hi = self.guard
        if nr == SHMAT and a[2] & SHM_REMAP:  # its size is the segment's: not checkable here
            raise self.Error(f"task {self.inj.tid}: batched shmat with SHM_REMAP is refused "
                             f"(it could map over the batch area {lo:#x}-{hi:#x})")
        for start, length in ranges:
            end = start + ((length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
            if start < hi and lo < end:
                raise self.Error(f"task {self.inj.tid}: batched {name}({start:#x}, {length:#x}) "
                                 f"would touch the batch area {lo:#x}-{hi:#x}")

    # ---------------------------------------------------------------- running
    def flush(self) -> None:
        """Execute the queued calls now (in rounds of the table's capacity)."""
        while self.entries:
            chunk, self.entries = self.entries[: self.capacity], self.entries[self.capacity:]
            self._round(chunk)
        self.data_buf = bytearray()

    def run(self) -> list[int]:
        """Execute everything queued; the results (negative errno for unchecked failures),
        one per add(), and a fresh batch."""
        try:
            self.flush()
            return self.results
        finally:
            self.results = []
            self.entries = []
            self.data_buf = bytearray()
            self.answers_pending = False

    def _round(self, chunk: list[tuple[int, int, tuple[int, ...]]]) -> None:
        inj, tid = self.inj, self.inj.tid
        table = bytearray(len(chunk) * ENTRY_SIZE)
        for i, (nr, flags, args) in enumerate(chunk):
            ENTRY.pack_into(table, i * ENTRY_SIZE, nr, flags, *args, 0)
        # the code (on a batch's first round: the area may hold another one's data), the data
        # and the table: only the bytes in use (the area is 256 KiB; writing it whole through
        # /proc/PID/mem cost ~0.1 ms a round)
        if not self.code_written:
            inj.write(self.area, CODE + bytes(CODE_SIZE - len(CODE)) + self.data_buf)
            self.code_written = True
        elif self.data_buf:
            inj.write(self.data_base, bytes(self.data_buf))
        first = self.area + self.table_off
        inj.write(first, bytes(table))
        regs = inj.saved_regs.copy()
        regs.rip = self.area
        regs.rbx = first
        regs.r12 = first + len(table)
        regs.orig_rax = MASK64  # not in a syscall: no restart logic on the way out
        regs.eflags &= ~0x100  # no trap flag
        pt.set_regs(tid, regs)
        pt.cont(tid)
        while True:
            status = pt.wait_stop(tid)
            sig, event = os.WSTOPSIG(status), pt.stop_event(status)
            if event:  # e.g. an interrupt's PTRACE_EVENT_STOP: note it, go on
                self.events.append((event, pt.get_event_msg(tid)))
                inj.events.append(self.events[-1])
                pt.cont(tid)
                continue
            if sig == lx.SIGSTOP:  # cannot be blocked: swallow it (the syscall restarts)
                pt.cont(tid)
                continue
            got = pt.get_regs(tid)
            done = (got.rbx - first) // ENTRY_SIZE
            if sig == lx.SIGTRAP and got.rip == self.area + TRAP_END:
                break
            where = self._describe(chunk, min(max(done, 0), len(chunk) - 1))
            raise self.Error(f"task {tid}: batched syscalls raised signal {sig} at "
                             f"{got.rip:#x} during {where}")
        if not 0 <= done <= len(chunk):
            raise self.Error(f"task {tid}: batch ended at a bad position ({done} of {len(chunk)})")
        raw = inj.read(first, done * ENTRY_SIZE)
        results = [_signed(int.from_bytes(raw[i * ENTRY_SIZE + 56: (i + 1) * ENTRY_SIZE], "little"))
                   for i in range(done)]
        if TRACE:
            for (nr, _, args), res in zip(chunk, results, strict=False):
                sys.stderr.write(f"batch {tid}: {NAMES.get(nr, nr)}("
                                 f"{', '.join(hex(a) for a in args)}) = {res:#x}\n")
        self.results.extend(results)
        failed = bool(done) and chunk[done - 1][1] & STOP and -4096 < results[-1] < 0
        if failed:  # the loop stopped at a failing checked entry: the last one it ran
            nr, _, args = chunk[done - 1]
            self.entries = []
            self.data_buf = bytearray()
            raise OSError(-results[-1], f"{os.strerror(-results[-1])} (batched {NAMES.get(nr, nr)}("
                                        f"{', '.join(hex(a) for a in args)}) in task {tid}, "
                                        f"entry {len(self.results) - 1})")
        if done != len(chunk):
            raise self.Error(f"task {tid}: batch stopped after {done} of {len(chunk)} entries")

    @staticmethod
    def _describe(chunk, i: int) -> str:
        nr, _, args = chunk[i]
        return f"entry {i}: {NAMES.get(nr, nr)}({', '.join(hex(a) for a in args)})"


class SerialBatch:
    """Batch's interface, each call injected on its own at add() (one round trip each), with
    data and answers in a plain scratch area: for a task that may not map the batch loop's
    executable area (e.g. PR_SET_MDWE refuses writable+executable mappings)."""

    def __init__(self, inj, scratch: int, size: int) -> None:
        self.inj, self.base, self.size = inj, scratch, size
        self.used = 0
        self.results: list[int] = []

    def _take(self, size: int, align: int) -> int:
        self.used += -self.used % align
        if self.used + size > self.size:
            raise ValueError(f"scratch of {self.size} bytes too small for the queued calls")
        addr = self.base + self.used
        self.used += size
        return addr

    def data(self, payload: bytes, align: int = 8) -> int:
        addr = self._take(len(payload), align)
        self.inj.write(addr, payload)
        return addr

    def out(self, size: int, align: int = 8) -> int:
        return self.data(bytes(size), align)

    def add(self, name: str | int, *args: int, check: bool = True) -> int:
        self.results.append(self.inj.call(name, *args, check=check))
        return len(self.results) - 1

    def run(self) -> list[int]:
        results, self.results, self.used = self.results, [], 0
        return results


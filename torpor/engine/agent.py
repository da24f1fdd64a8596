"""A thread planted in a stopped task that runs, while the task goes on, the syscalls torpor
sends it through a pipe: for calls that work only from inside the task's own address space.
UFFDIO_MOVE is one: asked by another process (ctx->mm not the caller's) it fails with EINVAL
(measured on 6.18), so the copy-on-write checkpoint (engine/cow.py) moves its blocks back
through an agent.

Planted while the task is stopped: a two-page area (code read+exec, written through
/proc/PID/mem; data read+write), two pipes (command, reply), then clone(CLONE_THREAD ...)
injected with PTRACE_O_TRACECLONE so that the new thread stops at birth; its registers are
pointed at the loop below and it is let go. It inherits the injecting thread's signal mask,
all blocked by the Injector, and uses no stack: no signal ever runs on it. Its name is
"torpor-agent" (visible in /proc/PID/task while it lives).

The loop, hand-assembled (x86-64); r12 = command fd, r13 = reply fd, r14 = data page:

    loop:  31 c0                 xor   eax, eax            ; read(r12, r14, 104)
           44 89 e7              mov   edi, r12d
           4c 89 f6              mov   rsi, r14
           ba 68 00 00 00        mov   edx, 104
           0f 05                 syscall
           48 83 f8 68           cmp   rax, 104            ; a whole record, or the end
           75 36                 jne   done
           49 8b 06              mov   rax, [r14]          ; number and six arguments
           49 8b 7e 08           mov   rdi, [r14+8]
           49 8b 76 10           mov   rsi, [r14+16]
           49 8b 56 18           mov   rdx, [r14+24]
           4d 8b 56 20           mov   r10, [r14+32]
           4d 8b 46 28           mov   r8,  [r14+40]
           4d 8b 4e 30           mov   r9,  [r14+48]
           0f 05                 syscall
           49 89 46 38           mov   [r14+56], rax       ; result, before the payload
           b8 01 00 00 00        mov   eax, 1              ; write(r13, r14 + 56, 48)
           44 89 ef              mov   edi, r13d
           49 8d 76 38           lea   rsi, [r14+56]
           ba 30 00 00 00        mov   edx, 48
           0f 05                 syscall
           eb b5                 jmp   loop
    done:  49 8d 9e 00 01 00 00  lea   rbx, [r14+256]      ; the will: entries of 7
           4d 8b a6 f8 00 00 00  mov   r12, [r14+248]      ;   quadwords, r12 of them
    will:  4d 85 e4              test  r12, r12
           74 37                 je    bye
           41 bd e8 03 00 00     mov   r13d, 1000          ; tries on EAGAIN
    again: 48 8b 03              mov   rax, [rbx]
           48 8b 7b 08           mov   rdi, [rbx+8]
           48 8b 73 10           mov   rsi, [rbx+16]
           48 8b 53 18           mov   rdx, [rbx+24]
           4c 8b 53 20           mov   r10, [rbx+32]
           4c 8b 43 28           mov   r8,  [rbx+40]
           4c 8b 4b 30           mov   r9,  [rbx+48]
           0f 05                 syscall
           48 83 f8 f5           cmp   rax, -11            ; EAGAIN: once more
           75 05                 jne   next
           41 ff cd              dec   r13d
           75 d8                 jne   again
    next:  48 83 c3 38           add   rbx, 56
           49 ff cc              dec   r12
           eb c4                 jmp   will
    bye:   b8 3c 00 00 00        mov   eax, 60             ; exit: this thread only
           31 ff                 xor   edi, edi
           0f 05                 syscall

A command is one 104-byte pipe write (atomic): number, six arguments, a result slot, and 40
bytes of payload at data + 64, where arguments may point. The reply is 48 bytes: the result
and the payload as the call left it. End of file or an error on the command pipe ends the
thread, after its will: calls left at data + 256 (their count at data + 248), run when torpor
dies before it has stopped the agent (then nobody else could put the task's memory back).
The area is unmapped by the caller once the thread is gone (a thread cannot unmap the code
it runs).
"""

from __future__ import annotations

import os
import select
import struct
import time

from torpor.engine import freeze
from torpor.engine.linux import ptrace as pt
from torpor.engine.linux import sys as lx

CODE = bytes.fromhex(
    "31c0" "4489e7" "4c89f6" "ba68000000" "0f05" "4883f868" "7536"
    "498b06" "498b7e08" "498b7610" "498b5618" "4d8b5620" "4d8b4628" "4d8b4e30" "0f05"
    "49894638" "b801000000" "4489ef" "498d7638" "ba30000000" "0f05" "ebb5"
    "498d9e00010000" "4d8ba6f8000000" "4d85e4" "7437" "41bde8030000"
    "488b03" "488b7b08" "488b7310" "488b5318" "4c8b5320" "4c8b4328" "4c8b4b30" "0f05"
    "4883f8f5" "7505" "41ffcd" "75d8" "4883c338" "49ffcc" "ebc4"
    "b83c000000" "31ff" "0f05"
)
RECORD = struct.Struct("<8Q40s")  # nr, 6 args, result slot, payload
REPLY = struct.Struct("<q40s")
PAYLOAD_OFF = 64
WILL_COUNT_OFF, WILL_OFF = 248, 256  # in the data page
WILL_ENTRY = struct.Struct("<7Q")  # nr, 6 arguments
WILL_DATA_OFF = 2048  # what the will's calls point at
WILL_MAX = (WILL_DATA_OFF - WILL_OFF) // WILL_ENTRY.size
AREA_SIZE = 2 * lx.PAGE_SIZE
THREAD_FLAGS = (lx.CLONE_VM | lx.CLONE_FS | lx.CLONE_FILES | lx.CLONE_SIGHAND | lx.CLONE_THREAD
                | lx.CLONE_SYSVSEM)
PIDFD_THREAD = os.O_EXCL  # pidfd_open flag: a thread's pidfd (6.9+)
NAME = b"torpor-agent\0"


class AgentError(OSError):
    pass


class Agent:
    """One planted thread; call() runs a syscall in it, stop() ends it."""

    def __init__(self, pid: int, tid: int, area: int, cmd_w: int, reply_r: int,
                 task_fds: tuple[int, int]) -> None:
        self.pid, self.tid, self.area = pid, tid, area
        self.cmd_w, self.reply_r = cmd_w, reply_r  # torpor's ends
        self.task_fds = task_fds  # the task's ends (command read, reply write)
        self.data = area + lx.PAGE_SIZE
        self.payload = self.data + PAYLOAD_OFF
        self.alive = True
        self._mem_fd = -1

    @classmethod
    def plant(cls, inj, scratch: int) -> Agent | None:
        """While inj's task is stopped. None where the task refuses (e.g. PR_SET_MDWE, a
        pids limit); nothing is left in it then."""
        area = inj.call("mmap", 0, AREA_SIZE, lx.PROT_READ | lx.PROT_EXEC,
                        lx.MAP_PRIVATE | lx.MAP_ANONYMOUS, -1, 0, check=False)
        if -4096 < area < 0:
            return None
        task_fds: list[int] = []
        mine: list[int] = []
        try:
            inj.call("mprotect", area + lx.PAGE_SIZE, lx.PAGE_SIZE, lx.PROT_READ | lx.PROT_WRITE)
            inj.write(area, CODE)
            ends = []
            for _ in range(2):
                inj.call("pipe2", scratch, os.O_CLOEXEC)
                r, w = struct.unpack("<ii", inj.read(scratch, 8))
                task_fds += [r, w]
                ends.append((r, w))
            (cmd_r, cmd_w), (reply_r, reply_w) = ends
            mine = [steal_fd(inj.pid, cmd_w), steal_fd(inj.pid, reply_r)]
            for fd in (cmd_w, reply_r):
                inj.call("close", fd)
                task_fds.remove(fd)
            tid = _clone_thread(inj)
        except OSError:
            for fd in task_fds:
                inj.call("close", fd, check=False)
            for fd in mine:
                os.close(fd)
            inj.call("munmap", area, AREA_SIZE, check=False)
            return None
        regs = pt.get_regs(tid)
        regs.rip, regs.r12, regs.r13, regs.r14 = area, cmd_r, reply_w, area + lx.PAGE_SIZE
        regs.rax, regs.orig_rax = 0, (1 << 64) - 1
        pt.set_regs(tid, regs)
        pt.detach(tid)  # it runs: blocked in read() until the first command
        agent = cls(inj.pid, tid, area, mine[0], mine[1], (cmd_r, reply_w))
        agent.call("prctl", lx.PR_SET_NAME, agent.payload, 0, 0, 0, payload=NAME)
        return agent

    def call(self, name: str | int, *args: int, payload: bytes = b"") -> tuple[int, bytes]:
        """Run a syscall in the agent: (result or -errno, the payload after it)."""
        if not self.alive:
            raise AgentError(3, f"the agent of process {self.pid} is gone")  # ESRCH
        nr = lx.NR[name] if isinstance(name, str) else name
        full = [a & ((1 << 64) - 1) for a in args] + [0] * (6 - len(args))
        try:
            os.write(self.cmd_w, RECORD.pack(nr, *full, 0, payload))
            reply = _read_exact(self.reply_r, REPLY.size)
        except OSError as err:  # EPIPE: the thread (or the process) is gone
            self.alive = False
            raise AgentError(3, f"the agent of process {self.pid} is gone ({err.strerror})") from None
        if reply is None:
            self.alive = False
            raise AgentError(3, f"the agent of process {self.pid} is gone")
        res, back = REPLY.unpack(reply)
        return res, back

    def set_will(self, calls: list[tuple[str, int, ...]], data: bytes = b"") -> None:
        """The calls the thread makes if torpor dies before stop() (they may point at DATA,
        placed at will_data). An EAGAIN is retried, up to 1000 times."""
        if len(calls) > WILL_MAX or len(data) > lx.PAGE_SIZE - WILL_DATA_OFF:
            raise ValueError("the agent's will does not fit its page")
        table = b"".join(WILL_ENTRY.pack(lx.NR[name], *[a & ((1 << 64) - 1) for a in args],
                                         *[0] * (6 - len(args))) for name, *args in calls)
        self.clear_will()  # no half-written will is ever in force
        self._poke(self.data + WILL_OFF, table + bytes(WILL_DATA_OFF - WILL_OFF - len(table)) + data)
        self._poke(self.data + WILL_COUNT_OFF, struct.pack("<Q", len(calls)))

    @property
    def will_data(self) -> int:
        return self.data + WILL_DATA_OFF

    def clear_will(self) -> None:
        self._poke(self.data + WILL_COUNT_OFF, bytes(8))

    def _poke(self, addr: int, data: bytes) -> None:
        """Write into the agent's page while the task runs (the thread reads it only after
        its command pipe ends)."""
        if self._mem_fd < 0:
            self._mem_fd = os.open(f"/proc/{self.pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        os.pwrite(self._mem_fd, data, addr)

    def stop(self, timeout: float = 5.0) -> bool:
        """Close the task's pipe ends from inside (the thread then reads EBADF and exits) and
        wait for the thread to be gone. True when it is: only then may its area be unmapped."""
        if self.alive:
            cmd_r, reply_w = self.task_fds
            try:
                self.clear_will()
                os.write(self.cmd_w, RECORD.pack(lx.NR["close"], reply_w, 0, 0, 0, 0, 0, 0, b""))
                os.write(self.cmd_w, RECORD.pack(lx.NR["close"], cmd_r, 0, 0, 0, 0, 0, 0, b""))
            except OSError:
                pass
            self.alive = False
        os.close(self.cmd_w)
        os.close(self.reply_r)
        if self._mem_fd >= 0:
            os.close(self._mem_fd)
            self._mem_fd = -1
        return _wait_thread_gone(self.pid, self.tid, timeout)


def _read_exact(fd: int, n: int) -> bytes | None:
    out = b""
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            return None
        out += chunk
    return out


def steal_fd(pid: int, fd: int) -> int:
    pidfd = os.pidfd_open(pid)
    try:
        return lx.syscall(lx.NR["pidfd_getfd"], pidfd, fd, 0)
    finally:
        os.close(pidfd)


def _clone_thread(inj) -> int:
    """clone(CLONE_THREAD ...) inside the task; the new thread, auto-attached, in its first
    stop. Its TID as torpor sees it."""
    pt.set_options(inj.tid, freeze.SEIZE_OPTIONS | pt.O_TRACECLONE)
    try:
        inj.events.clear()
        inj.call("clone", THREAD_FLAGS, 0, 0, 0, 0)
        tid = next((msg for ev, msg in inj.events if ev == pt.EVENT_CLONE), 0)
        if not tid:
            raise AgentError(0, "no trace event for the agent thread")
        freeze.wait_new_stop(tid, "agent thread")
        return tid
    finally:
        pt.set_options(inj.tid, freeze.SEIZE_OPTIONS)


def _wait_thread_gone(pid: int, tid: int, timeout: float) -> bool:
    try:
        fd = os.pidfd_open(tid, PIDFD_THREAD)
    except OSError:  # already gone (ESRCH), or a kernel without thread pidfds
        deadline = time.monotonic() + timeout
        while os.path.exists(f"/proc/{pid}/task/{tid}"):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])  # readable once it has exited
    finally:
        os.close(fd)

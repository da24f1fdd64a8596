"""Restore: rebuild a process from an image with its PID and TIDs, then let it run.

The order is the one kernel-facts.md records as working on this kernel:
open every file first (errors before anything exists) -> fork a child with the PID (clone3
set_tid) that arranges its fds and stops itself -> drop Python's rseq -> map scratch, unmap
everything else -> move vvar/vDSO -> PR_SET_MM_MAP -> map areas, write pages -> per-process
and per-thread state, threads by injected clone3 with set_tid -> credentials -> close helper
fds, unmap scratch -> registers, xstate, signal mask -> detach.
Any failure kills the half-built task (PTRACE_O_EXITKILL covers a crash of the restorer).
"""

from __future__ import annotations

import mmap
import os
import signal
import struct
import time
from dataclasses import dataclass, field

from torpor.engine.clone import fork_with_pid
from torpor.engine.inject import Injector, Scratch, find_syscall_insn
from torpor.engine.linux import ptrace as pt
from torpor.engine.linux import sys as lx
from torpor.engine.linux.procfs import read_maps
from torpor.engine.resources import cpu, memory, signals, task
from torpor.engine.resources import files as fdkinds
from torpor.errors import AlreadyExists, ImageError, TorporError
from torpor.image.schema import SCHEMA_VERSION, MappedFile, Process, TreeImage
from torpor.image.store import ImageReader

TASK_SIZE = 0x7FFFFFFFF000
SPECIALS = ("vvar", "vvar_vclock", "vdso")
F_ADD_SEALS = 1033
RSEQ_FLAG_UNREGISTER = 1
ROBUST_LIST_HEAD_SIZE = 24
THREAD_FLAGS = (lx.CLONE_VM | lx.CLONE_FS | lx.CLONE_FILES | lx.CLONE_SIGHAND | lx.CLONE_THREAD
                | lx.CLONE_SYSVSEM)


class RestoreError(TorporError):
    pass


@dataclass
class TaskRestore:
    """What the resource restore steps need about the process being rebuilt."""

    pid: int
    proc: Process
    inj: Injector | None = None
    mem_fd: int = -1
    file_fds: dict[int, int] = field(default_factory=dict)  # MappedFile id -> fd in the task
    pages_view: memoryview | None = None
    pages_addr: int = 0


@dataclass
class RestoreResult:
    pid: int
    threads: int
    seconds: float
    warnings: list[str]


# ------------------------------------------------------------------------ files


class FileOpener:
    """Opens in the restorer every file the image needs, before any task exists."""

    def __init__(self, tree: TreeImage, pages: memoryview) -> None:
        self.tree = tree
        self.pages = pages
        self.mapped: dict[int, int] = {}  # MappedFile id -> restorer fd
        self.ghosts: dict[int, int] = {}
        self.fds: list[int] = []

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def _keep(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def _fill(self, fd: int, mf: MappedFile) -> None:
        os.ftruncate(fd, mf.size)
        for run in mf.content:  # (file offset, byte length, page-file offset)
            data = self.pages[run.offset : run.offset + run.npages]
            done = 0
            while done < len(data):
                done += os.pwrite(fd, data[done:], run.vaddr + done)

    def ghost_fd(self, file_id: int, flags: int) -> int:
        """A file deleted before the checkpoint: recreated with its content, then unlinked."""
        if file_id not in self.ghosts:
            mf = self.tree.mapped_files[file_id]
            directory = os.path.dirname(mf.path) or "/"
            name = f".torpor-ghost-{os.getpid()}-{file_id}"
            path = os.path.join(directory, name) if os.path.isdir(directory) else f"/tmp/{name}"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            os.unlink(path)
            self._fill(fd, mf)
            self.ghosts[file_id] = self._keep(fd)
        src = self.ghosts[file_id]
        return self._keep(os.open(f"/proc/self/fd/{src}", flags & ~(os.O_CREAT | os.O_TRUNC | os.O_EXCL)))

    def mapped_file(self, mf: MappedFile, writable_shared: bool) -> int:
        if mf.id in self.mapped:
            return self.mapped[mf.id]
        if mf.kind in ("memfd", "shmem"):
            name = mf.memfd_name or mf.path.lstrip("/")
            fl = os.MFD_CLOEXEC | (os.MFD_ALLOW_SEALING if mf.seals else 0)
            fd = self._keep(os.memfd_create(name[:249], fl))
            self._fill(fd, mf)
            if mf.seals:
                import fcntl

                fcntl.fcntl(fd, F_ADD_SEALS, mf.seals)
        elif mf.deleted:
            fd = self.ghost_fd(mf.id, os.O_RDWR if writable_shared else os.O_RDONLY)
        else:
            try:
                fd = self._keep(os.open(mf.path, (os.O_RDWR if writable_shared else os.O_RDONLY) | os.O_CLOEXEC))
            except FileNotFoundError:
                raise RestoreError(f"file {mf.path} needed by the image does not exist") from None
            except OSError as err:
                raise RestoreError(f"cannot open {mf.path} needed by the image: {err.strerror}") from None
        self.mapped[mf.id] = fd
        return fd


# ------------------------------------------------------------------ layout helpers


def _free_address(size: int, avoid: list[tuple[int, int]], start: int = 0x100000000) -> int:
    """An address where [a, a+size) overlaps none of the ranges in avoid."""
    a = start
    ranges = sorted(avoid)
    while a + size < TASK_SIZE:
        clash = next(((s, e) for s, e in ranges if s < a + size and a < e), None)
        if clash is None:
            return a
        a = (clash[1] + (1 << 30)) & ~((1 << 30) - 1)
    raise RestoreError("no free address range for the restorer's scratch area")


def _check_pids_free(proc: Process) -> None:
    for th in proc.threads:
        if os.path.exists(f"/proc/{th.tid}"):
            raise AlreadyExists(f"cannot restore: PID {th.tid} is in use")


def _special_areas(maps) -> dict[str, tuple[int, int]]:
    """[vvar], [vvar_vclock], [vdso] ([vsyscall] lies above TASK_SIZE and never moves)."""
    return {memory.SPECIAL[e.path]: (e.start, e.end) for e in maps
            if e.path in memory.SPECIAL and e.path != "[vsyscall]"}


def _check_vdso(proc: Process) -> None:
    mine = _special_areas(read_maps(os.getpid(), with_flags=False))
    for v in proc.vmas:
        if v.kind in SPECIALS:
            cur = mine.get(v.kind)
            if cur is None or cur[1] - cur[0] != v.end - v.start:
                raise ImageError(
                    f"the image's [{v.kind}] area ({v.end - v.start} bytes) does not match this "
                    "kernel's: restore on the kernel that made the image"
                )


# ------------------------------------------------------------------------ restore


def _child(fd_plan: dict[int, tuple[int, bool]], keep: set[int], proc: Process) -> None:
    """Runs in the forked child (still Python): fds, cwd, session; then stops for the tracer."""
    try:
        for target, (src, cloexec) in fd_plan.items():
            os.dup2(src, target, inheritable=not cloexec)
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        try:
            os.chdir(proc.cwd)
        except OSError:
            pass
        os.umask(proc.umask)
        if proc.sid == proc.pid:
            os.setsid()
        elif proc.pgid == proc.pid:
            os.setpgid(0, 0)
        pt.ptrace(pt.TRACEME, 0)
        os.kill(os.getpid(), signal.SIGSTOP)
    finally:
        os._exit(127)  # only reached if the tracer let go without rebuilding us


def restore(image_path: str) -> RestoreResult:
    t0 = time.monotonic()
    reader = ImageReader(image_path)
    tree = reader.record("tree", TreeImage)
    if tree.schema_version > SCHEMA_VERSION:
        raise ImageError(f"image {image_path}: schema version {tree.schema_version} is newer than this torpor's ({SCHEMA_VERSION})")
    cpu.check_cpu(tree.xfeatures, tree.xstate_size)
    reader.verify_pages()
    if len(tree.processes) != 1:
        raise RestoreError("this image holds a process tree; tree restore is not implemented yet")
    proc = tree.processes[0]
    _check_pids_free(proc)
    _check_vdso(proc)

    pages_fd = reader.page_fd("pages")
    size = os.fstat(pages_fd).st_size
    pages_map = mmap.mmap(pages_fd, size, flags=mmap.MAP_PRIVATE) if size else mmap.mmap(-1, mmap.PAGESIZE)
    pages_view = memoryview(pages_map)
    opener = FileOpener(tree, pages_view)
    child = 0
    try:
        # 1. every file, before any task exists
        writable_shared = {v.file_id for v in proc.vmas if v.shared and v.prot & lx.PROT_WRITE}
        mapped_src = {}
        for v in proc.vmas:
            if v.file_id >= 0 and v.file_id not in mapped_src:
                mf = tree.mapped_files[v.file_id]
                mapped_src[v.file_id] = opener.mapped_file(mf, v.file_id in writable_shared)
        fd_src = {}
        for f in proc.fds:
            if f.file_id not in fd_src:
                fd_src[f.file_id] = opener._keep(fdkinds.open_for_restore(tree.files[f.file_id], opener))
        try:
            exe_src = opener._keep(os.open(proc.mm.exe.removesuffix(" (deleted)"), os.O_RDONLY | os.O_CLOEXEC))
        except OSError as err:
            raise RestoreError(f"executable {proc.mm.exe} needed by the image: {err.strerror}") from None

        # 2. helper fds above every target fd, so arranging the targets cannot clobber them
        base = max([f.fd for f in proc.fds] + [2]) + 1
        helper: dict[int, int] = {}

        def place(src: int) -> int:
            if src not in helper:
                helper[src] = opener._keep(_dup_at_least(src, base))
            return helper[src]

        file_fds = {fid: place(src) for fid, src in mapped_src.items()}
        fd_plan = {f.fd: (place(fd_src[f.file_id]), f.cloexec) for f in proc.fds}
        exe_fd = place(exe_src)
        keep = set(fd_plan) | set(helper.values())

        # 3. the task, with its PID
        child = fork_with_pid([proc.pid])
        if child == 0:
            _child(fd_plan, keep, proc)
        status = pt.wait_stop(child)
        if os.WSTOPSIG(status) != signal.SIGSTOP:
            raise RestoreError(f"restored task {child} stopped with signal {os.WSTOPSIG(status)}")
        pt.set_options(child, pt.O_EXITKILL | pt.O_TRACECLONE)
        t = TaskRestore(pid=child, proc=proc, file_fds=file_fds, pages_view=pages_view,
                        pages_addr=lx.addr(pages_map))
        warnings = _rebuild(t, tree, exe_fd, base)
        return RestoreResult(child, len(proc.threads), time.monotonic() - t0, warnings)
    except BaseException:
        if child > 0:
            try:
                os.kill(child, signal.SIGKILL)
                os.waitpid(child, lx.WALL)
            except OSError:
                pass
        raise
    finally:
        opener.close()
        pages_view.release()
        try:
            pages_map.close()
        except BufferError:
            pass
        reader.close()


def _dup_at_least(src: int, base: int) -> int:
    import fcntl

    return fcntl.fcntl(src, fcntl.F_DUPFD, base)


def _rebuild(t: TaskRestore, tree: TreeImage, exe_fd: int, helper_base: int) -> list[str]:
    proc = t.proc
    pid = t.pid
    warnings: list[str] = []
    t.mem_fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
    try:
        inj = t.inj = Injector(pid, pid, t.mem_fd, find_syscall_insn(pid, t.mem_fd))
        # Python registered an rseq area; the kernel would write to it after we unmap it
        rseq = pt.get_rseq(pid)
        if rseq.rseq_abi_pointer:
            inj.call("rseq", rseq.rseq_abi_pointer, rseq.rseq_abi_size, RSEQ_FLAG_UNREGISTER, rseq.signature)

        current = read_maps(pid, with_flags=False)
        cur_special = _special_areas(current)
        target = [(v.start, v.end) for v in proc.vmas]
        scratch = Scratch(inj, size=4 * lx.PAGE_SIZE,
                          at=_free_address(4 * lx.PAGE_SIZE, target + [(e.start, e.end) for e in current]))
        s = scratch.addr
        keep = sorted([*cur_special.values(), (s, s + scratch.size)])
        pos = lx.PAGE_SIZE
        for ks, ke in keep:
            if ks > pos:
                inj.call("munmap", pos, ks - pos)
            pos = max(pos, ke)
        if pos < TASK_SIZE:
            inj.call("munmap", pos, TASK_SIZE - pos)

        # vvar and vDSO move together to where the image had them (parked first: may overlap)
        tgt_special = {v.kind: (v.start, v.end) for v in proc.vmas if v.kind in SPECIALS}
        lo = min(a for a, _ in cur_special.values())
        hi = max(b for _, b in cur_special.values())
        park = _free_address(hi - lo, target + keep, start=0x200000000)
        old_vdso = cur_special["vdso"][0]
        # the vDSO holds the syscall instruction we execute: it moves last each time
        order = sorted(cur_special, key=lambda k: k == "vdso")
        for kind in order:
            a, b = cur_special[kind]
            inj.call("mremap", a, b - a, b - a, lx.MREMAP_MAYMOVE | lx.MREMAP_FIXED, park + (a - lo))
        inj.syscall_ip = park + (inj.syscall_ip - lo)  # the syscall instruction moved with the vDSO
        old_vdso = park + (old_vdso - lo)
        for kind in order:
            a, b = cur_special[kind]
            dest = tgt_special.get(kind)
            if dest is None:
                inj.call("munmap", park + (a - lo), b - a)
                continue
            if kind == "vdso":
                continue  # moved last: the next syscall instruction we use lives in it
            inj.call("mremap", park + (a - lo), b - a, b - a, lx.MREMAP_MAYMOVE | lx.MREMAP_FIXED, dest[0])
        a, b = cur_special["vdso"]
        inj.call("mremap", park + (a - lo), b - a, b - a, lx.MREMAP_MAYMOVE | lx.MREMAP_FIXED,
                 tgt_special["vdso"][0])
        inj.syscall_ip = tgt_special["vdso"][0] + (inj.syscall_ip - old_vdso)

        # mm fields, auxv, exe before the areas exist (exe_fd gives EBUSY while one maps the old exe)
        mm = proc.mm
        auxv = mm.auxv[:416]
        mm_map = struct.pack("<11QQII", mm.start_code, mm.end_code, mm.start_data, mm.end_data,
                             mm.start_brk, mm.brk, mm.start_stack, mm.arg_start, mm.arg_end,
                             mm.env_start, mm.env_end, s + 128, len(auxv), exe_fd)
        inj.write(s, mm_map)
        inj.write(s + 128, auxv)
        inj.call("prctl", lx.PR_SET_MM, lx.PR_SET_MM_MAP, s, len(mm_map), 0)

        memory.restore_areas(t, proc.vmas)
        memory.restore_pages(t, proc.vmas)

        # process-wide state
        signals.restore_sigactions(inj, s, proc.sigactions)
        task.restore_itimers(inj, s, proc.itimers)
        inj.call("personality", proc.personality)
        if proc.pdeath_sig:
            inj.call("prctl", lx.PR_SET_PDEATHSIG, proc.pdeath_sig, 0, 0, 0)
        if proc.child_subreaper:
            inj.call("prctl", lx.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        if proc.thp_disabled:
            inj.call("prctl", lx.PR_SET_THP_DISABLE, 1, 0, 0, 0)
        warnings += task.restore_rlimits(pid, proc.rlimits)

        # threads: clone3 with set_tid from inside the process; TRACECLONE stops each one
        injectors = {pid: inj}
        for th in proc.threads[1:]:
            args = struct.pack("<11Q", THREAD_FLAGS, 0, 0, 0, 0, 0, 0, 0, s + 256, 1, 0)
            inj.write(s + 256, struct.pack("<i", th.tid))
            inj.write(s + 512, args)
            tid = inj.call("clone3", s + 512, len(args))
            if tid != th.tid:
                raise RestoreError(f"thread {th.tid} came back as {tid}")
            st = pt.wait_stop(tid)
            if os.WSTOPSIG(st) != signal.SIGSTOP:
                raise RestoreError(f"new thread {tid} stopped with signal {os.WSTOPSIG(st)}")
            injectors[tid] = Injector(pid, tid, t.mem_fd, inj.syscall_ip)

        lastcap = task.last_cap()
        full_root = task.creds_are_root_full(proc.creds, lastcap)
        ignored = signals.ignored_signals(proc.sigactions)
        for th in proc.threads:
            ti = injectors[th.tid]
            if th.robust_list:
                ti.call("set_robust_list", th.robust_list, th.robust_len or ROBUST_LIST_HEAD_SIZE)
            ti.call("set_tid_address", th.clear_child_tid)
            signals.restore_altstack(ti, s, th.altstack_sp, th.altstack_flags, th.altstack_size)
            ti.write(s, th.name.encode()[:15] + b"\0")
            ti.call("prctl", lx.PR_SET_NAME, s, 0, 0, 0)
            if th.rseq_ptr:
                ti.call("rseq", th.rseq_ptr, th.rseq_len, 0, th.rseq_sig)
            signals.restore_pending(ti, s, pid, th.tid, th.pending, False, ignored)
        signals.restore_pending(inj, s, pid, pid, proc.shared_pending, True, ignored)
        for th in proc.threads:
            ti = injectors[th.tid]
            if not full_root:
                task.restore_creds(ti, s, proc.creds, lastcap)
            if proc.creds.no_new_privs:
                ti.call("prctl", lx.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        inj.call("prctl", lx.PR_SET_DUMPABLE, proc.dumpable, 0, 0, 0, check=False)

        inj.call("close_range", helper_base, 0xFFFFFFFF, 0)
        inj.call("munmap", s, scratch.size)

        size = len(pt.get_xstate(pid))
        for th in proc.threads:
            cpu.restore(th.tid, th.regs, th.xstate, size)
            pt.set_sigmask(th.tid, th.sigmask)
        for th in proc.threads:
            pt.detach(th.tid)
        return warnings
    finally:
        os.close(t.mem_fd)

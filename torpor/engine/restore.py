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

import ctypes
import mmap
import os
import struct
import time

from torpor.engine import freeze
from torpor.engine.batch import AREA_SIZE as BATCH_AREA_SIZE
from torpor.engine.clone import fork_with_pid
from torpor.engine.inject import Injector, Scratch, find_syscall_insn
from torpor.engine.linux import ptrace as pt
from torpor.engine.linux import sys as lx
from torpor.engine.linux.procfs import (
    close_fds_except,
    last_cap,
    read_bracketed_areas,
    read_layout,
)
from torpor.engine.resources import cpu, memory, process_resources, signals, task
from torpor.engine.resources import files as fdkinds
from torpor.errors import AlreadyExists, ImageError, TorporError
from torpor.image.schema import SCHEMA_VERSION, MappedFile, Process, TreeImage
from torpor.image.store import ImageReader, PageCheck
from torpor.records import factory, record

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from collections.abc import Callable

TASK_SIZE = 0x7FFFFFFFF000
SPECIALS = ("vvar", "vvar_vclock", "vdso")
F_ADD_SEALS = 1033
RSEQ_FLAG_UNREGISTER = 1
RLIMIT_NOFILE = 7
ROBUST_LIST_HEAD_SIZE = 24
# private anonymous pages a process needs for them to go in by UFFDIO_COPY: making the
# userfaultfd costs two injected round trips and an ioctl per area (~0.25 ms), which the
# ~25% faster copy repays from about 2-3 MiB on
UFFD_FILL_MIN = 4 << 20
THREAD_FLAGS = (lx.CLONE_VM | lx.CLONE_FS | lx.CLONE_FILES | lx.CLONE_SIGHAND | lx.CLONE_THREAD
                | lx.CLONE_SYSVSEM)


class RestoreError(TorporError):
    pass


@record
class TaskRestore:
    """What the resource restore steps need about the process being rebuilt."""

    pid: int
    proc: Process
    inj: Injector | None = None
    mem_fd: int = -1
    file_fds: dict[int, int] = factory(dict)  # MappedFile id -> fd in the task
    sources: dict = factory(dict)  # page file -> (view, address) in the restorer
    # areas mapped writable for their pages, given their saved protection after the copy
    reprotect: list = factory(list)


@record
class RestoreResult:
    pid: int
    threads: int
    seconds: float
    warnings: list[str]


# ------------------------------------------------------------------------ files


class FileOpener:
    """Opens in the restorer every file the image needs, before any task exists."""

    def __init__(self, tree: TreeImage, pages: memoryview, inherit_fds: dict[str, int]) -> None:
        fdkinds.preload(tree.files)  # now: the root child may no longer see torpor's files
        self.tree = tree
        self.pages = pages
        self.inherit_fds = inherit_fds
        self.mapped: dict[int, int] = {}  # MappedFile id -> restorer fd
        self.ghosts: dict[int, int] = {}
        self.pipes: dict[int, list] = {}
        self.fds: list[int] = []

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass

    high = 0  # retained fds are moved at or above this (clear of the planned numbers)

    def _keep(self, fd: int) -> int:
        if self.high and fd < self.high:
            import fcntl

            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, self.high)
            os.close(fd)
            fd = moved
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
            # recreated under its own name when that is free, so /proc shows "path (deleted)"
            directory = os.path.dirname(mf.path) or "/"
            path = mf.path
            if not os.path.isdir(directory):
                path = f"/tmp/.torpor-ghost-{os.getpid()}-{file_id}"
            elif os.path.lexists(path):
                path = os.path.join(directory, f".torpor-ghost-{os.getpid()}-{file_id}")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            os.unlink(path)
            self._fill(fd, mf)
            self.ghosts[file_id] = self._keep(fd)
        src = self.ghosts[file_id]
        return self._keep(os.open(f"/proc/self/fd/{src}", flags & ~(os.O_CREAT | os.O_TRUNC | os.O_EXCL)))

    def mapped_file(self, mf: MappedFile, writable_shared: bool) -> int:
        if mf.id in self.mapped:
            return self.mapped[mf.id]
        if mf.kind == "shmem" and mf.path.startswith("/dev/zero"):
            fd = self._keep(_shared_anon_object(mf.size))
            self._fill(fd, mf)
        elif mf.kind in ("memfd", "shmem"):
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


def _shared_anon_object(size: int) -> int:
    """A fresh MAP_SHARED|MAP_ANONYMOUS object (it shows as "/dev/zero (deleted)"), as an fd:
    map one, open it through /proc/self/map_files, unmap it."""
    size = max(size, lx.PAGE_SIZE)
    addr = lx.syscall(lx.NR["mmap"], 0, size, lx.PROT_READ | lx.PROT_WRITE,
                      lx.MAP_SHARED | lx.MAP_ANONYMOUS, -1, 0)
    try:
        return os.open(f"/proc/self/map_files/{addr:x}-{addr + size:x}", os.O_RDWR | os.O_CLOEXEC)
    finally:
        lx.syscall(lx.NR["munmap"], addr, size)


# ------------------------------------------------------------------ layout helpers


def _free_address(size: int, avoid: list[tuple[int, int]], start: int = 0x100000000) -> int:
    """An address where [a, a+size) overlaps none of the ranges in avoid: from start, past
    each clashing range to the next GiB boundary. One pass over the ranges sorted by start
    (a range passed once ends below every later candidate)."""
    a = start
    for s, e in sorted(avoid):
        if s >= a + size:
            break  # this and every later range start above the candidate
        if a < e:
            a = (e + (1 << 30)) & ~((1 << 30) - 1)
    if a + size < TASK_SIZE:
        return a
    raise RestoreError("no free address range for the restorer's scratch area")


def _check_pids_free(tree: TreeImage) -> None:
    for proc in tree.processes:
        for tid in [proc.pid] + [th.tid for th in proc.threads]:
            if os.path.exists(f"/proc/{tid}"):
                raise AlreadyExists(f"cannot restore: PID {tid} is in use")


def _special_areas(named: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """[vvar], [vvar_vclock], [vdso] of a task's bracketed areas, by image kind
    ([vsyscall] lies above TASK_SIZE and never moves)."""
    return {memory.SPECIAL[name]: area for name, area in named.items()
            if name in memory.SPECIAL and name != "[vsyscall]"}


def _read_special_areas(pid: int) -> dict[str, tuple[int, int]]:
    """_special_areas of a task, without parsing its whole maps."""
    return _special_areas(read_bracketed_areas(pid))


def _check_vdso(tree: TreeImage) -> None:
    mine = _read_special_areas(os.getpid())
    for v in (v for p in tree.processes if not p.zombie for v in p.vmas):
        if v.kind in SPECIALS:
            cur = mine.get(v.kind)
            if cur is None or cur[1] - cur[0] != v.end - v.start:
                raise ImageError(
                    f"the image's [{v.kind}] area ({v.end - v.start} bytes) does not match this "
                    "kernel's: restore on the kernel that made the image"
                )


# -------------------------------------------------------------------------- plan


class Plan:
    """Fixed fd numbers for everything the tree needs, known to the restorer and the child.

    Helper fds sit above every fd any saved process used, so arranging a process's own fds
    never clobbers them: mapped file k at base+k, file description j at base+M+j, the
    executable of process i at base+M+F+i. Every task inherits them (fork) until its end."""

    def __init__(self, tree: TreeImage) -> None:
        self.tree = tree
        top = max([f.fd for p in tree.processes for f in p.fds] + [2])
        self.base = max(top + 1, 3)
        self.nmapped = len(tree.mapped_files)
        self.nfiles = len(tree.files)
        live = [p for p in tree.processes if not p.zombie]
        self.exe_index = {p.pid: i for i, p in enumerate(live)}
        self.end = self.base + self.nmapped + self.nfiles + len(live)

    def mapped(self, k: int) -> int:
        return self.base + k

    def file(self, j: int) -> int:
        return self.base + self.nmapped + j

    def exe(self, pid: int) -> int:
        return self.base + self.nmapped + self.nfiles + self.exe_index[pid]


def _open_all(plan: Plan, opener: FileOpener) -> None:
    """In the root child: open every file of the tree and put it at its planned number."""
    tree = plan.tree
    writable_shared = {v.file_id for p in tree.processes for v in p.vmas
                       if v.shared and v.prot & lx.PROT_WRITE}
    used = {v.file_id for p in tree.processes for v in p.vmas if v.file_id >= 0}
    for mf in tree.mapped_files:
        if mf.id in used:
            fd = opener.mapped_file(mf, mf.id in writable_shared)
            os.dup2(fd, plan.mapped(mf.id))
    for rec in tree.files:
        fd = fdkinds.open_for_restore(rec, opener)
        os.dup2(fd, plan.file(rec.id))
        if fd != plan.file(rec.id):
            os.close(fd)
    fdkinds.finish_open(opener, plan.file)  # hook: epoll interest lists need every file open
    for p in tree.processes:
        if p.zombie:
            continue
        path = p.mm.exe.removesuffix(" (deleted)")
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as err:
            raise RestoreError(f"executable {path} needed by the image: {err.strerror}") from None
        if fd != plan.exe(p.pid):
            os.dup2(fd, plan.exe(p.pid))
            os.close(fd)


def _raise_nofile(need: int, ask: int) -> None:
    """Soft RLIMIT_NOFILE raised to `ask` (within the hard limit) if below `need`; with
    prlimit64 (the resource module would be imported here first, ~0.8 ms the restorer waits)."""
    limits = ctypes.create_string_buffer(16)
    lx.syscall(lx.NR["prlimit64"], 0, RLIMIT_NOFILE, 0, limits)
    soft, hard = struct.unpack("<QQ", limits.raw)
    if soft < need:
        lx.syscall(lx.NR["prlimit64"], 0, RLIMIT_NOFILE, struct.pack("<QQ", min(hard, ask), hard), 0)


def _root_child(plan: Plan, opener: FileOpener, child_setup: Callable[[], None] | None,
                report_fd: int, hold_fd: int) -> None:
    """The root task while it is still Python: caller's setup, files, fds, cwd, session;
    then it reports and blocks on hold_fd until the restorer seizes it. If the restorer dies
    first, hold_fd reads EOF and the task exits: nothing is left behind. Never returns."""
    root = plan.tree.processes[0]
    try:
        if child_setup is not None:
            child_setup()
        _raise_nofile(plan.end + 1024, plan.end + 4096)
        # everything this child holds on to moves above the planned numbers first
        opener.high = plan.end + 512
        report_fd = opener._keep(report_fd)
        hold_fd = opener._keep(hold_fd)
        opener.inherit_fds = {k: opener._keep(os.dup(v)) for k, v in opener.inherit_fds.items()}
        _open_all(plan, opener)
        for f in root.fds:
            os.dup2(plan.file(f.file_id), f.fd, inheritable=not f.cloexec)
        keep = {f.fd for f in root.fds} | set(range(plan.base, plan.end)) | {report_fd, hold_fd}
        close_fds_except(keep)
        try:
            os.chdir(root.cwd)
        except OSError:
            pass
        os.umask(root.umask)
        if root.sid == root.pid and os.getsid(0) != os.getpid():
            os.setsid()
        elif root.pgid == root.pid and os.getpgid(0) != os.getpid():
            os.setpgid(0, 0)
        signals.reset_sigactions()  # the tree inherits them: only non-defaults are then set
        os.write(report_fd, b"OK")
        os.close(report_fd)
        os.read(hold_fd, 1)  # the restorer seizes us here
        os._exit(127)  # EOF: the restorer is gone
    except BaseException as err:  # noqa: BLE001 - reported to the restorer, then exit
        msg = str(err) if isinstance(err, TorporError) else f"{type(err).__name__}: {err}"
        try:
            os.write(report_fd, msg.encode()[:4000] or b"error")
        except OSError:
            pass
    os._exit(127)


# ------------------------------------------------------------------------ restore


@record
class Built:
    """A task being rebuilt: host pid, injectors for its threads, its scratch."""

    proc: Process
    host: int
    inj: Injector
    mem_fd: int
    threads: dict[int, Injector] = factory(dict)  # vtid -> injector
    host_tids: dict[int, int] = factory(dict)  # vtid -> host tid
    plan: Plan | None = None
    lazy: bool = False
    space: object = None  # lazy restore: its userfaultfd and the pages still to copy

    def file_fd(self, file_id: int) -> int:
        """The helper fd (in this task) of saved open file description file_id."""
        return self.plan.file(file_id)


ProcessRestore = Built  # the name resource modules know it by


def restore_tree(image_path: str, *, clone_flags: int = 0,
                 child_setup: Callable[[], None] | None = None,
                 inherit_fds: dict[str, int] | None = None, lazy: bool = False,
                 caller_exits: bool = False) -> RestoreResult:
    """Rebuild the process tree of an image; returns when it runs again.

    The root task is forked with clone3(clone_flags, set_tid=[root pid]); with CLONE_NEWPID
    it is PID 1 of a new PID namespace. child_setup() runs in it first (still Python): the
    caller's chance to set up mounts, cgroup, hostname. An intermediate process forks it,
    holds it as its child while its memory is rebuilt (and reaps it if the restore fails),
    then exits, so that its parent is the caller's subreaper (a shim, conmon, torpor's
    monitor) or init, never a short-lived command (see _fork_root). The page checksums are
    good before any state is set. caller_exits: the caller exits once this returns (the
    `torpor restore` command), so a lazy page server may be its own child (it is reparented
    when the caller exits) rather than a grandchild behind a child to wait for."""
    t0 = time.monotonic()
    reader = ImageReader(image_path)
    checks: list[PageCheck] = []
    built: dict[int, Built] = {}
    child = 0
    middle: _Middle | None = None
    parents = opener = pipes = pages_map = pages_view = None
    pages_fd, own_pages_fd = -1, False
    try:
        pages_fd, size, own_pages_fd = _page_source(reader)
        pages_map = (mmap.mmap(pages_fd, size, flags=mmap.MAP_PRIVATE) if size
                     else mmap.mmap(-1, mmap.PAGESIZE))
        pages_view = memoryview(pages_map)
        # the page checksums are checked on another CPU meanwhile (xxh3 releases the GIL),
        # through the mapping the pages are copied from: while the records decode and the
        # tree is built; waited for before the tree's state is set. A lazy restore's page
        # server checks them while the tree runs.
        if not lazy:
            checks.append(PageCheck([reader], {"pages": pages_view} if size else None))
        tree = reader.record("tree", TreeImage)
        if tree.schema_version > SCHEMA_VERSION:
            raise ImageError(f"image {image_path}: schema version {tree.schema_version} is "
                             f"newer than this torpor's ({SCHEMA_VERSION})")
        cpu.check_cpu(tree.xfeatures, tree.xstate_size)
        root = tree.processes[0]
        if root.zombie:
            raise ImageError(f"image {image_path}: the root process is a zombie")
        if not clone_flags & lx.CLONE_NEWPID:
            _check_pids_free(tree)
        elif root.pid != 1:
            raise RestoreError("a new PID namespace needs an image whose root is PID 1")
        _check_vdso(tree)
        parents = _ParentImages(tree)
        if parents.readers and not lazy:
            checks.append(PageCheck(parents.readers))
        plan = Plan(tree)
        opener = FileOpener(tree, pages_view, inherit_fds or {})
        pipes = _RootPipes()
        session, group = _outer_session(root, clone_flags)
        child, middle = _fork_root(root, clone_flags, (plan, opener, child_setup), pipes,
                                   session, group, meanwhile=lambda: _import_later_steps(lazy))
        pt.seize(child, TRACE_OPTIONS)
        pt.interrupt(child)
        while True:
            status = pt.wait_stop(child)
            if pt.stop_event(status) == pt.EVENT_STOP:
                break
            pt.cont(child, os.WSTOPSIG(status))
        sources = {"pages": (pages_view, lx.addr(pages_map))}
        sources.update(parents.sources)

        def checked_and_reparented() -> None:
            # after the memory is rebuilt, before the root's state: the page checksums
            # are good (else the intermediate reaps the killed tree), and the intermediate
            # is gone, the root reparented, before its parent-death signal is set
            for check in checks:
                check.wait()
            middle.let_go()

        warnings = _build_tree(tree, plan, child, built, sources, lazy,
                               [image_path, *parents.paths],
                               before_state=checked_and_reparented, own_server=caller_exits)
        return RestoreResult(child, sum(len(p.threads) for p in tree.processes),
                             time.monotonic() - t0, warnings)
    except BaseException:
        if middle is None:
            raise  # nothing was started
        hosts = [b.host for b in built.values()] + ([child] if child else [])
        for h in hosts:
            try:
                os.kill(h, lx.SIGKILL)
            except OSError:
                pass
        middle.abort()  # it reaps the root once we, its tracer, have seen it die
        _reap_tracees(time.monotonic() + 5)
        raise
    finally:
        for check in checks:
            check.join()  # before its readers close
        for b in built.values():
            try:
                os.close(b.mem_fd)
            except OSError:
                pass
        for res in (pipes, opener):
            if res is not None:
                res.close()
        if pages_view is not None:
            pages_view.release()
        if pages_map is not None:
            try:
                pages_map.close()
            except BufferError:
                pass
        if parents is not None:
            parents.close()
        if own_pages_fd:
            os.close(pages_fd)
        reader.close()


class _RootPipes:
    """The root task reports "OK" (or an error) on `report`, then blocks reading `hold`
    until the restorer has seized it; EOF on `hold` (the restorer died) makes it exit."""

    def __init__(self) -> None:
        self.report_r, self.report_w = os.pipe2(os.O_CLOEXEC)
        self.hold_r, self.hold_w = os.pipe2(os.O_CLOEXEC)

    def in_child(self) -> None:
        """In any child: the restorer's ends are not its to hold."""
        os.close(self.report_r)
        os.close(self.hold_w)

    def wait_report(self) -> bytes:
        """In the restorer: the root task's report (read to EOF)."""
        for name in ("report_w", "hold_r"):  # the root task's ends
            os.close(getattr(self, name))
            setattr(self, name, -1)
        return _read_all(self.report_r)

    def close(self) -> None:
        for name in ("report_r", "report_w", "hold_r", "hold_w"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)


def _fork_root(root: Process, clone_flags: int, setup: tuple, pipes: _RootPipes,
               session: int, group: int, meanwhile: Callable[[], object] | None = None
               ) -> tuple[int, _Middle]:
    """The root task, forked by an intermediate process that stays its parent until told
    to go (then the root's parent is the caller's subreaper or init before the root runs
    again) or to reap it (a restore that failed leaves no zombie behind). Forked by the
    restorer itself, the root would see the short-lived restorer as its parent for a
    moment: a program that watches getppid() takes that for its parent's death. The
    intermediate stands in for the session leader when `session`, with a group-founding
    helper when `group`. Returns once the root has reported that it is ready; meanwhile()
    runs while they start (on another CPU, often)."""
    pid_r, pid_w = os.pipe2(os.O_CLOEXEC)  # intermediate -> restorer: the root's host PID
    release_r, release_w = os.pipe2(os.O_CLOEXEC)  # restorer -> intermediate: EOF = go
    try:
        middle = fork_with_pid([session]) if session else os.fork()
        if middle == 0:
            try:
                pipes.in_child()
                os.close(pid_r)
                os.close(release_w)
                if session:  # the root's session leader had exited: this process stands in
                    os.setsid()
                if group and _group_helper(group, (pipes.report_w, pid_w, release_r)):
                    os._exit(0)  # the helper that founded the group forks the root below
                root_pid = fork_with_pid([root.pid], clone_flags)
                if root_pid == 0:
                    os.close(pid_w)
                    os.close(release_r)
                    _root_child(*setup, pipes.report_w, pipes.hold_r)  # never returns
                os.write(pid_w, str(root_pid).encode())
                os.close(pid_w)
                os.close(pipes.report_w)
                if os.read(release_r, 1) == b"R":  # it failed: wait for its exit and reap it
                    os.waitpid(root_pid, 0)
            except BaseException as err:  # noqa: BLE001 - reported to the restorer
                if isinstance(err, FileExistsError):
                    err = AlreadyExists(f"cannot restore: PID {root.pid} is in use")
                os.write(pid_w, b"E" + str(err).encode()[:4000])
            os._exit(0)
        os.close(pid_w)
        os.close(release_r)
        pid_w = release_r = -1
        if meanwhile is not None:
            meanwhile()
        answer = _read_all(pid_r)
        if not answer or answer.startswith(b"E"):
            os.waitpid(middle, 0)
            raise RestoreError(answer[1:].decode(errors="replace") or "cannot fork the root task")
        held = _Middle(middle, release_w)
        release_w = -1
        msg = pipes.wait_report()
        if msg != b"OK":
            held.abort()  # the root exits by itself
            _reap(held.pid)
            raise RestoreError(msg.decode(errors="replace") or "the restored task died while setting up")
        return int(answer), held
    finally:
        for fd in (pid_r, pid_w, release_r, release_w):
            if fd >= 0:
                os.close(fd)


class _Middle:
    """The intermediate process that holds the root task as its child until it is told to
    go (EOF on `release`: it exits, the root is reparented) or to reap the root ("R": the
    restore failed; the root is killed, or exits by itself)."""

    def __init__(self, pid: int, release: int) -> None:
        self.pid, self.release = pid, release

    def let_go(self) -> None:
        if self.release >= 0:
            os.close(self.release)
            self.release = -1
            _reap(self.pid)

    def abort(self) -> None:
        """Reap the root, then exit. A root we trace is only reapable by its parent once
        we have waited for it too (see _reap_tracees), so this does not wait here."""
        if self.release >= 0:
            try:
                os.write(self.release, b"R")
            except OSError:
                pass
            os.close(self.release)
            self.release = -1


def _import_later_steps(lazy: bool) -> None:
    """The modules of later restore steps, imported while the root task starts (~1 ms)."""
    process_resources()
    if lazy:
        from torpor.engine import lazy as _  # noqa: F401


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # already collected
        pass


def _reap_tracees(deadline: float) -> None:
    """Collect every task we trace or fathered: a killed thread group is only gone once
    each of its traced threads has been waited for (and the intermediate, told to reap the
    root, exits once it has)."""
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, lx.WALL | os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.001)


class _ParentImages:
    """Page files of the images an incremental image points at (PageRun.file is their
    path), mapped like the image's own (and checked like them: `readers`, `paths`)."""

    def __init__(self, tree: TreeImage) -> None:
        self.sources: dict = {}
        self.readers: list[ImageReader] = []
        self.paths: list[str] = []
        self._keep: list = []
        wanted = {r.file for p in tree.processes for v in p.vmas for r in v.pages} - {"pages"}
        try:
            for path in sorted(wanted):
                try:
                    reader = ImageReader(path)
                except ImageError as err:
                    raise ImageError(f"parent image needed by this incremental image: {err}") from None
                self._keep.append(reader)
                self.readers.append(reader)
                self.paths.append(path)
                fd, size, own = _page_source(reader)
                m = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE) if size else mmap.mmap(-1, mmap.PAGESIZE)
                view = memoryview(m)
                self._keep.append((m, view, fd if own else -1))
                self.sources[path] = (view, lx.addr(m))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for item in self._keep:
            if isinstance(item, tuple):
                m, view, fd = item
                view.release()
                try:
                    m.close()
                except BufferError:
                    pass
                if fd >= 0:
                    os.close(fd)
            else:
                item.close()
        self._keep.clear()


def _page_source(reader: ImageReader) -> tuple[int, int, bool]:
    """An fd of the raw page data, its size, and whether the caller must close it: the page
    file itself, or (compressed) a memfd it is decompressed into."""
    size = reader.pages_size("pages")
    entry = reader.manifest.files.get("pages.img")
    if entry is None or not entry.compression:
        return reader.page_fd("pages"), size, False
    fd = os.memfd_create("torpor-pages", os.MFD_CLOEXEC)
    reader.decompress_pages_to("pages", fd)
    return fd, size, True


def _outer_session(root: Process, clone_flags: int) -> tuple[int, int]:
    """PIDs to give the intermediate (a session leader) and a group-founding helper, so that
    the root inherits its saved session and process group when their leaders are not in the
    image (e.g. a daemon whose session leader exited). 0 where nothing needs recreating: the
    root leads them itself, they are the restorer's own, or (PID taken) they cannot be."""
    if clone_flags & lx.CLONE_NEWPID:
        return 0, 0
    session = group = 0
    if root.sid not in (root.pid, os.getsid(0)) and not os.path.exists(f"/proc/{root.sid}"):
        session = root.sid
    if root.pgid not in (root.pid, root.sid) and (session or root.pgid != os.getpgid(0)):
        if not os.path.exists(f"/proc/{root.pgid}"):
            group = root.pgid
    return session, group


def _group_helper(pgid: int, close: tuple[int, ...] = ()) -> bool:
    """Fork a helper with PID pgid that founds the group and goes on to fork the root; this
    process then waits for it. True in the waiting process (which should exit), False in
    the helper. The waiting process first closes `close` (its copies of the pipes the
    restorer reads to EOF: held open here, they would hang the restore)."""
    helper = fork_with_pid([pgid])
    if helper == 0:
        os.setpgid(0, 0)
        return False
    for fd in close:
        os.close(fd)
    os.waitpid(helper, 0)
    return True


def _read_all(fd: int) -> bytes:
    out = b""
    while chunk := os.read(fd, 4096):
        out += chunk
    return out


def restore(image_path: str, lazy: bool = False, caller_exits: bool = False) -> RestoreResult:
    """Restore a host process tree (no new namespaces); caller_exits as for restore_tree."""
    return restore_tree(image_path, lazy=lazy, caller_exits=caller_exits)


# O_SUSPEND_SECCOMP: the runtime may have put a seccomp filter on the root (inherited by the
# whole tree) before the engine injects its syscalls
TRACE_OPTIONS = (pt.O_EXITKILL | pt.O_TRACECLONE | pt.O_TRACEFORK | pt.O_TRACEVFORK
                 | pt.O_SUSPEND_SECCOMP)


def _build_tree(tree: TreeImage, plan: Plan, root_host: int, built: dict[int, Built],
                sources: dict, lazy: bool = False, image_paths: list[str] | None = None,
                before_state: Callable[[], object] | None = None,
                own_server: bool = False) -> list[str]:
    warnings: list[str] = []
    root = tree.processes[0]
    mem_fd = os.open(f"/proc/{root_host}/mem", os.O_RDWR | os.O_CLOEXEC)
    ranges, named = read_layout(root_host)  # the layout the root inherited
    inj = Injector(root_host, root_host, mem_fd,
                   find_syscall_insn(root_host, mem_fd, vdso=named.get("[vdso]")))
    built[root.pid] = Built(root, root_host, inj, mem_fd)
    # Python registered an rseq area; the kernel would write to it after we unmap it
    rseq = pt.get_rseq(root_host)
    if rseq.rseq_abi_pointer:
        inj.call("rseq", rseq.rseq_abi_pointer, rseq.rseq_abi_size, RSEQ_FLAG_UNREGISTER, rseq.signature)
    # one scratch address, free in every saved layout and in ours; children inherit it
    avoid = sorted((v.start, v.end) for p in tree.processes for v in p.vmas)
    # argument pages, then the batch area (executable: the batched-syscall loop runs there)
    args_size = 4 * lx.PAGE_SIZE
    scratch_size = args_size + BATCH_AREA_SIZE
    scratch = Scratch(inj, size=args_size, batch=BATCH_AREA_SIZE,
                      at=_free_address(scratch_size, avoid + ranges))
    s = scratch.addr
    children_of: dict[int, list[Process]] = {}
    for p in tree.processes[1:]:
        children_of.setdefault(p.ppid, []).append(p)
    deferred_pgid: list[Process] = []

    def build(proc: Process) -> None:
        b = built[proc.pid]
        if proc is not root:
            _arrange_fds(b, plan, s)
            _set_session(b, s, built, deferred_pgid)
        # the root's vDSO/vvar are where `named` saw them (unregistering rseq and mapping
        # the scratch moved nothing); a child's are read again
        _rebuild_memory(b, plan, s, scratch_size, avoid,
                        _special_areas(named) if proc is root else None)
        made_zombies = False
        for child in children_of.get(proc.pid, []):
            _fork_child(b, child, s, built)
            if child.zombie:
                _make_zombie(built.pop(child.pid), s, built, deferred_pgid)
                made_zombies = True
            else:
                build(child)
        if made_zombies:
            _drop_spurious_sigchld(b, s)

    build(root)
    for proc in deferred_pgid:
        b = built.get(proc.pid)
        if b is not None:
            try:
                b.inj.call("setpgid", 0, proc.pgid)
            except OSError:
                _group_without_leader(b, s, built)
    lastcap = last_cap()
    if before_state is not None:
        before_state()
    for proc in tree.processes:
        b = built.get(proc.pid)
        if b is None:
            continue
        b.lazy = lazy
        warnings += _restore_process_state(b, plan, s, sources, lastcap)
    server = 0
    if lazy:  # every space is registered: the page server starts up while the rest is done
        from torpor.engine import lazy as lazy_pages

        spaces = [b.space for b in built.values() if b.space is not None]
        try:
            server = lazy_pages.start_server(spaces, set(), image_paths=image_paths or [],
                                             victims=[b.host for b in built.values()],
                                             own_child=own_server)
        finally:
            for sp in spaces:
                os.close(sp.fd)
    # helper fds and scratch go only now: a process sharing its parent's fd table needed them
    for proc in tree.processes:
        b = built.get(proc.pid)
        if b is None:
            continue
        if proc.files_shared_with < 0:
            b.inj.call("close_range", plan.base, 0xFFFFFFFF, 0)
        for res in process_resources():  # e.g. POSIX locks: closing any fd of a file drops them
            if hasattr(res, "restore_late"):
                warnings += res.restore_late(b, b.inj, s) or []
        b.inj.call("munmap", s, scratch_size)
        if proc.mdwe:  # refuses executable memory from now on: after the batch area is gone
            b.inj.call("prctl", lx.PR_SET_MDWE, proc.mdwe, 0, 0, 0)
    # everything is in place: registers last, then let go (leaves first)
    for proc in reversed(tree.processes):
        b = built.get(proc.pid)
        if b is None:
            continue
        size = len(pt.get_xstate(b.host))
        for th in proc.threads:
            host_tid = b.host_tids[th.tid]
            cpu.restore(host_tid, th.regs, th.xstate, size)
            pt.set_sigmask(host_tid, th.sigmask)
    try:
        for proc in reversed(tree.processes):
            b = built.get(proc.pid)
            if b is None:
                continue
            for th in proc.threads:
                pt.detach(b.host_tids[th.tid])
    finally:
        if server and not own_server:  # its parent, which leaves at once: reaped once the tree runs
            os.waitpid(server, 0)
    return warnings


def _arrange_fds(b: Built, plan: Plan, s: int) -> None:
    """A forked child has its parent's fds: close what it did not have, dup2 its own."""
    proc = b.proc
    if proc.files_shared_with >= 0:
        return  # the clone shared the table (CLONE_FILES)
    batch = b.inj.batch()  # one round trip for the whole table
    want = {f.fd: f for f in proc.fds}
    # every fd below the helpers goes (the helpers hold all the process needs), then its
    # own are made again from the helpers
    if plan.base > 0:
        batch.add("close_range", 0, plan.base - 1, 0)
    for fd, f in want.items():
        batch.add("dup2", plan.file(f.file_id), fd)
        if f.cloexec:
            batch.add("fcntl", fd, 2, 1)  # F_SETFD, FD_CLOEXEC
    batch.add("chdir", batch.data(proc.cwd.encode() + b"\0"), check=False)
    batch.add("umask", proc.umask)
    batch.run()


def _set_session(b: Built, s: int, built: dict[int, Built], deferred: list[Process]) -> None:
    proc, inj = b.proc, b.inj
    if proc.sid == proc.pid:
        inj.call("setsid")
        return
    if proc.pgid == proc.pid:
        inj.call("setpgid", 0, 0)
        return
    if inj.call("getpgid", 0) == proc.pgid:
        return
    if proc.pgid in built:
        try:
            inj.call("setpgid", 0, proc.pgid)
            return
        except OSError:
            pass
    deferred.append(proc)


def _fork_child(parent: Built, child: Process, s: int, built: dict[int, Built]) -> None:
    """The child is forked by its restored parent (so the parent links are right), with its
    PID, sharing the fd table if it did."""
    flags = lx.CLONE_FILES if child.files_shared_with == parent.proc.pid else 0
    inj = parent.inj
    host = _inject_clone3(inj, s, flags, child.exit_signal, child.pid, f"process {child.pid}")
    mem_fd = os.open(f"/proc/{host}/mem", os.O_RDWR | os.O_CLOEXEC)
    cinj = Injector(host, host, mem_fd, inj.syscall_ip)
    cinj.saved_sigmask = parent.inj.saved_sigmask
    cinj.share_batch_area(inj)  # the child inherited the scratch with the parent's memory
    built[child.pid] = Built(child, host, cinj, mem_fd)


def _group_without_leader(b: Built, s: int, built: dict[int, Built]) -> None:
    """A process group whose leader had exited: a short-lived helper with the leader's PID,
    forked by the member (so it is in the member's session), founds the group; the member
    joins it; the helper exits and the member reaps it."""
    proc = b.proc
    helper = Process(pid=proc.pgid, ppid=proc.pid, pgid=proc.pgid, sid=proc.sid, comm="helper",
                     threads=[], vmas=[], mm=proc.mm, fds=[], sigactions=[], shared_pending=[],
                     creds=proc.creds, rlimits=[], cwd="/", root="/", umask=0, personality=0,
                     zombie=True, exit_status=0)
    try:
        _fork_child(b, helper, s, built)
    except (OSError, RestoreError) as err:
        raise RestoreError(f"cannot recreate process group {proc.pgid} of process {proc.pid}: "
                           f"{err}") from None
    h = built.pop(helper.pid)
    h.inj.call("setpgid", 0, 0)
    b.inj.call("setpgid", 0, proc.pgid)
    _make_zombie(h, s, built, [], session=False)
    b.inj.call("wait4", proc.pgid, 0, 0, 0)
    _drop_spurious_sigchld(b, s)


def _inject_clone3(inj: Injector, s: int, flags: int, exit_signal: int, tid: int, what: str) -> int:
    """clone3 inside the traced task with set_tid = [tid] (its own PID namespace level). The
    new task is auto-attached; returns its PID as the restorer sees it (from the trace event;
    clone3's own result is the PID in the task's namespace)."""
    args = struct.pack("<11Q", flags, 0, 0, 0, exit_signal, 0, 0, 0, s + 256, 1, 0)
    inj.write(s + 256, struct.pack("<i", tid))
    inj.write(s + 512, args)
    inj.events.clear()
    got = inj.call("clone3", s + 512, len(args))
    if got != tid:
        raise RestoreError(f"{what} came back as {got}")
    host = next((msg for ev, msg in inj.events
                 if ev in (pt.EVENT_FORK, pt.EVENT_CLONE, pt.EVENT_VFORK)), 0)
    if not host:
        raise RestoreError(f"no trace event for the creation of {what}")
    freeze.wait_new_stop(host, what, RestoreError)
    return host


def _make_zombie(b: Built, s: int, built: dict[int, Built], deferred: list[Process],
                 session: bool = True) -> None:
    """A zombie: a task that exits at once with the saved status, reaped by nobody but its
    parent. As its tracer we collect the exit first, which hands it to the parent."""
    proc, inj = b.proc, b.inj
    if session:
        _set_session(b, s, built, deferred)
    status = proc.exit_status
    regs = inj.saved_regs.copy()
    regs.rip = inj.syscall_ip
    regs.orig_rax = (1 << 64) - 1
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (lx.SIGKILL, lx.SIGSTOP):  # those have no action to reset
            inj.write(s, bytes(32))
            inj.call("rt_sigaction", sig, s, 0, 8)
        # tgkill(getpid(), gettid(), sig) inside the task: both are its own PID
        regs.rax, regs.rdi, regs.rsi, regs.rdx = lx.NR["tgkill"], proc.pid, proc.pid, sig
        pt.set_sigmask(b.host, 0)
    else:
        regs.rax, regs.rdi = lx.NR["exit_group"], os.WEXITSTATUS(status) if os.WIFEXITED(status) else 0
    pt.set_regs(b.host, regs)
    pt.cont(b.host)
    while True:
        _, st = os.waitpid(b.host, lx.WALL)
        if os.WIFEXITED(st) or os.WIFSIGNALED(st):
            break
        # the killing signal stops it first (signal-delivery-stop): deliver it
        deliver = os.WSTOPSIG(st) if os.WIFSTOPPED(st) and pt.stop_event(st) == 0 else 0
        pt.cont(b.host, deliver if deliver != lx.SIGTRAP else 0)
    os.close(b.mem_fd)


def _drop_spurious_sigchld(b: Built, s: int) -> None:
    """Making zombies sent the parent a SIGCHLD it had not pending at checkpoint time."""
    proc = b.proc
    if not any(c for c in proc.shared_pending if int.from_bytes(c[:4], "little") == lx.SIGCHLD):
        inj = b.inj
        inj.write(s, (1 << (lx.SIGCHLD - 1)).to_bytes(8, "little") + bytes(16))
        inj.call(128, s, 0, s + 8, 8, check=False)  # rt_sigtimedwait(set, NULL, {0, 0})


def _rebuild_memory(b: Built, plan: Plan, s: int, scratch_size: int,
                    avoid: list[tuple[int, int]], cur_special: dict | None = None) -> None:
    """Replace the task's address space (Python's, or its parent's) with the saved one."""
    proc, inj, host = b.proc, b.inj, b.host
    # one batch of injected calls (one round trip): it runs from the scratch, which stays
    batch = inj.batch()
    rseq = pt.get_rseq(host)
    if rseq.rseq_abi_pointer:  # inherited from the parent across fork: before any unmap
        batch.add("rseq", rseq.rseq_abi_pointer, rseq.rseq_abi_size, RSEQ_FLAG_UNREGISTER, rseq.signature)
    if cur_special is None:
        cur_special = _read_special_areas(host)
    keep = sorted([*cur_special.values(), (s, s + scratch_size)])
    pos = lx.PAGE_SIZE
    for ks, ke in keep:
        if ks > pos:
            batch.add("munmap", pos, ks - pos)
        pos = max(pos, ke)
    if pos < TASK_SIZE:
        batch.add("munmap", pos, TASK_SIZE - pos)

    # vvar and vDSO move together to where the image had them (parked first: may overlap);
    # the vDSO holds the syscall instruction we execute, so it moves last each time
    tgt_special = {v.kind: (v.start, v.end) for v in proc.vmas if v.kind in SPECIALS}
    if "vdso" not in tgt_special:
        raise RestoreError(f"process {proc.pid}: the image has no [vdso] area")
    lo = min(a for a, _ in cur_special.values())
    hi = max(e for _, e in cur_special.values())
    park = _free_address(hi - lo, avoid + keep, start=0x200000000)
    order = sorted(cur_special, key=lambda k: k == "vdso")
    old_vdso = cur_special["vdso"][0]
    insn_offset = inj.syscall_ip - old_vdso  # where the syscall instruction is in the vDSO
    for kind in order:
        a, e = cur_special[kind]
        batch.add("mremap", a, e - a, e - a, lx.MREMAP_MAYMOVE | lx.MREMAP_FIXED, park + (a - lo))
    for kind in order:
        a, e = cur_special[kind]
        dest = tgt_special.get(kind)
        if dest is None:
            batch.add("munmap", park + (a - lo), e - a)
            continue
        batch.add("mremap", park + (a - lo), e - a, e - a, lx.MREMAP_MAYMOVE | lx.MREMAP_FIXED, dest[0])

    # mm fields, auxv and exe before the areas exist (exe_fd is EBUSY while the old exe is mapped)
    mm = proc.mm
    auxv = mm.auxv[:416]
    auxv_addr = batch.data(auxv)
    mm_map = struct.pack("<11QQII", mm.start_code, mm.end_code, mm.start_data, mm.end_data,
                         mm.start_brk, mm.brk, mm.start_stack, mm.arg_start, mm.arg_end,
                         mm.env_start, mm.env_end, auxv_addr, len(auxv), plan.exe(proc.pid))
    batch.add("prctl", lx.PR_SET_MM, lx.PR_SET_MM_MAP, batch.data(mm_map), len(mm_map), 0)
    batch.run()
    inj.syscall_ip = tgt_special["vdso"][0] + insn_offset


def _task_userfaultfd(b: Built, vmas: list, features: int) -> int:
    """A userfaultfd made inside the process (so it belongs to its address space), copied out
    with pidfd_getfd (the task's own fd closed), the areas registered for missing pages."""
    from torpor.engine.linux import uffd

    task_fd = b.inj.call("userfaultfd", os.O_CLOEXEC | os.O_NONBLOCK)
    pidfd = lx.syscall(lx.NR["pidfd_open"], b.host, 0)
    try:
        fd = lx.syscall(lx.NR["pidfd_getfd"], pidfd, task_fd, 0)
    finally:
        os.close(pidfd)
        b.inj.call("close", task_fd)
    try:
        uffd.api(fd, features)
        for v in vmas:
            uffd.register(fd, v.start, v.end - v.start)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _page_runs(vmas: list, sources: dict) -> list[list[int]]:
    """[address, bytes, source address] of the stored pages of vmas (absolute source
    addresses: pages may come from parent images' files)."""
    return [[r.vaddr, r.npages * lx.PAGE_SIZE, sources[r.file][1] + r.offset]
            for v in vmas for r in v.pages]


def _fill_by_uffd(b: Built, vmas: list, sources: dict) -> bool:
    """The pages of private anonymous areas put in with UFFDIO_COPY (see memory.fill_by_uffd);
    closing the userfaultfd unregisters the areas. False if the task may not have one (no
    CAP_SYS_PTRACE in a user namespace with vm.unprivileged_userfaultfd = 0, say) or a copy
    failed: the caller writes the pages instead (over any that went in)."""
    try:
        fd = _task_userfaultfd(b, vmas, 0)
    except OSError:
        return False
    try:
        memory.fill_by_uffd(fd, [(va, src, n) for va, n, src in _page_runs(vmas, sources)])
        return True
    except (OSError, TorporError):
        return False
    finally:
        os.close(fd)


def _register_lazy(b: Built, vmas: list, sources: dict) -> object:
    """The areas the page server fills: registered with a userfaultfd of the process, with
    the events that keep its view right (fork, mremap, munmap, MADV_DONTNEED)."""
    from torpor.engine.lazy import Space
    from torpor.engine.linux import uffd

    fd = _task_userfaultfd(b, vmas, uffd.NONCOOPERATIVE)
    space = Space(fd, _page_runs(vmas, sources))
    # memory the kernel itself writes before the page server runs (rseq registration writes
    # the thread's rseq area) is filled now, or the injected syscall would wait forever
    for th in b.proc.threads:
        if th.rseq_ptr:
            for page in {th.rseq_ptr & ~(lx.PAGE_SIZE - 1), (th.rseq_ptr + th.rseq_len - 1) & ~(lx.PAGE_SIZE - 1)}:
                i = space.find(page)
                got = space.take(i, page, page + lx.PAGE_SIZE) if i >= 0 else None
                if got:
                    uffd.copy(fd, got[0], got[2], got[1])
    return space


def _split_private_anonymous(vmas: list) -> tuple[list, list]:
    """(private anonymous areas with stored pages: those a userfaultfd can fill, by the lazy
    page server or by UFFDIO_COPY now; the other areas). One pass: a membership test against
    the first list compared records field by field, quadratic in the number of areas (150 ms
    for 3000 areas)."""
    lazy: list = []
    eager: list = []
    for v in vmas:
        (lazy if v.kind == "anon" and not v.shared and v.pages else eager).append(v)
    return lazy, eager


def _queue_thread_state(batch, th) -> None:
    """A thread's own kernel state, queued in a batch that thread runs (new threads inherit
    the creator's name, so the leader's may go before its threads are cloned)."""
    if th.robust_list:
        batch.add("set_robust_list", th.robust_list, th.robust_len or ROBUST_LIST_HEAD_SIZE)
    batch.add("set_tid_address", th.clear_child_tid)
    batch.add("prctl", lx.PR_SET_NAME, batch.data(th.name.encode()[:15] + b"\0"), 0, 0, 0)
    if th.rseq_ptr:
        batch.add("rseq", th.rseq_ptr, th.rseq_len, 0, th.rseq_sig)


def _restore_process_state(b: Built, plan: Plan, s: int, sources: dict,
                           lastcap: int) -> list[str]:
    """Areas and pages, signals, timers, limits, threads, credentials, then close helpers."""
    proc, inj, host = b.proc, b.inj, b.host
    t = TaskRestore(pid=host, proc=proc, inj=inj, mem_fd=b.mem_fd,
                    file_fds={fid: plan.mapped(fid) for fid in {v.file_id for v in proc.vmas if v.file_id >= 0}},
                    sources=sources)
    memory.restore_areas(t, proc.vmas)
    if b.lazy:
        lazy_vmas, eager_vmas = _split_private_anonymous(proc.vmas)
        memory.restore_pages(t, eager_vmas)
        if lazy_vmas:
            b.space = _register_lazy(b, lazy_vmas, sources)
    else:
        # private anonymous areas by UFFDIO_COPY (no zeroing of the pages first), the rest
        # by process_vm_writev; THP areas ("hg") keep the writes, which may fault huge pages
        by_uffd, rest = _split_private_anonymous([v for v in proc.vmas if "hg" not in v.vmflags])
        stored = sum(r.npages for v in by_uffd for r in v.pages) * lx.PAGE_SIZE
        if by_uffd and (stored < UFFD_FILL_MIN or not _fill_by_uffd(b, by_uffd, sources)):
            rest += by_uffd
        memory.restore_pages(t, rest + [v for v in proc.vmas if "hg" in v.vmflags])
    warnings: list[str] = []
    task.restore_itimers(inj, s, proc.itimers)
    # the process's own state in one round trip: actions, personality, prctls, limits
    pb = inj.batch()
    signals.queue_restore_sigactions(pb, proc.sigactions)
    pb.add("personality", proc.personality)
    if proc.pdeath_sig:
        pb.add("prctl", lx.PR_SET_PDEATHSIG, proc.pdeath_sig, 0, 0, 0)
    if proc.child_subreaper:
        pb.add("prctl", lx.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if proc.thp_disabled:
        pb.add("prctl", lx.PR_SET_THP_DISABLE, 1, 0, 0, 0)
    limits = task.queue_restore_rlimits(pb, proc.rlimits)
    _queue_thread_state(pb, proc.threads[0])  # the leader's own (it runs this batch)
    results = pb.run()
    warnings += task.settle_rlimits(inj, s, proc.rlimits, [results[i] for i in limits])

    # threads: clone3 with set_tid from inside the process; TRACECLONE stops each one
    b.threads = {proc.threads[0].tid: inj}
    b.host_tids = {proc.threads[0].tid: host}
    for th in proc.threads[1:]:
        host_tid = _inject_clone3(inj, s, THREAD_FLAGS, 0, th.tid, f"thread {th.tid}")
        b.threads[th.tid] = Injector(host, host_tid, b.mem_fd, inj.syscall_ip)
        b.threads[th.tid].share_batch_area(inj)
        b.host_tids[th.tid] = host_tid

    full_root = task.creds_are_root_full(proc.creds, lastcap)
    ignored = signals.ignored_signals(proc.sigactions)
    for i, th in enumerate(proc.threads):
        ti = b.threads[th.tid]
        if i:  # the leader's went with the process's batch
            tb = ti.batch()
            _queue_thread_state(tb, th)
            tb.run()
        signals.restore_altstack(ti, s, th.altstack_sp, th.altstack_flags, th.altstack_size)
        signals.restore_pending(ti, s, proc.pid, th.tid, th.pending, False, ignored)
    signals.restore_pending(inj, s, proc.pid, proc.pid, proc.shared_pending, True, ignored)
    b.plan = plan
    for res in process_resources():
        warnings += res.restore(b, inj, s) or []
    for th in proc.threads:
        ti = b.threads[th.tid]
        if not full_root:
            task.restore_creds(ti, s, proc.creds, lastcap)
        if proc.creds.no_new_privs:
            ti.call("prctl", lx.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    inj.call("prctl", lx.PR_SET_DUMPABLE, proc.dumpable, 0, 0, 0, check=False)
    return warnings

"""Checkpoint: freeze, call each resource's dump step, write the image, then kill or release.

Nothing is changed in the process until every check that can fail early has passed (image
path usable, all fds of known kinds); whatever fails later leaves it as it was: registers and
signal mask put back, scratch memory unmapped, detached.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

from torpor.engine import freeze
from torpor.engine.inject import Injector, Scratch, find_syscall_insn
from torpor.engine.linux import ptrace as pt
from torpor.engine.linux import sys as lx
from torpor.engine.linux.cpu import xcr0
from torpor.engine.linux.procfs import read_auxv, read_comm, read_maps, read_stat, read_status
from torpor.engine.resources import (
    cpu,
    files,
    memory,
    process_resources,
    signals,
    task,
    tracking,
)
from torpor.image.schema import (
    SCHEMA_VERSION,
    MappedFile,
    MmFields,
    PageRun,
    Process,
    Thread,
    TreeImage,
)
from torpor.image.store import ImageWriter
from torpor.log import log
from torpor.records import factory, record

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from collections.abc import Callable

    from torpor.engine import cow  # imported where the copy-on-write path is taken

SEEK_DATA, SEEK_HOLE = 3, 4


@record
class Tracking:
    """Incremental checkpoint state: whether to arm write tracking, the trackers found in the
    processes, and the pages of the parent image by process (vpid)."""

    arm: bool = False
    parent_path: str = ""
    trackers: dict = factory(dict)  # host pid -> tracker fd in it
    new_trackers: dict = factory(dict)
    parent_pages: dict = factory(dict)  # vpid -> [(vaddr, npages, offset, file)]
    vpid: dict = factory(dict)  # host pid -> vpid
    injector: object = None


def load_parent(parent_path: str) -> dict:
    """Stored pages of a parent image by vpid, each run naming the image that holds it."""
    from torpor.image.store import ImageReader

    parent_path = os.path.abspath(parent_path)
    with ImageReader(parent_path) as reader:
        parent = reader.record("tree", TreeImage)
    out = {}
    for p in parent.processes:
        out[p.pid] = sorted((r.vaddr, r.npages, r.offset, parent_path if r.file == "pages" else r.file)
                            for v in p.vmas for r in v.pages)
    return out


@record
class DumpContext:
    writer: ImageWriter
    pid: int = 0
    mem_fd: int = -1
    files: list = factory(list)
    fd_owner: dict = factory(dict)
    # (st_dev, st_ino) -> [(pid, fd, file id)]: one entry per open file description saved, so
    # that a new fd is compared (kcmp) only with descriptions of the same file
    descriptions: dict = factory(dict)
    mapped_files: dict = factory(dict)
    pipes: dict = factory(dict)
    external: Callable[[int, int, str], str | None] | None = None
    # pages stored per host pid: sorted (vaddr, npages, offset); and the parent of the process
    # being dumped, whose stored pages a child may share copy-on-write
    stored: dict = factory(dict)
    tree_mode: bool = False  # pages copied after every process is planned (copy_planned)
    planned: dict = factory(dict)
    keep_sharing: bool = False  # --leave-running: do not unshare copy-on-write pages
    snapshot: bool = False  # --leave-running: read memory from a forked snapshot, unfrozen
    snapshots: dict = factory(dict)  # host pid -> snapshot pid
    cow: cow.Copier | None = None  # --leave-running: large areas moved out, copied unfrozen
    premaps: dict = factory(dict)  # host pid -> smaps read before the freeze
    file_locks: bool = False  # --file-locks: save held file locks (else refuse them)
    tracking: Tracking | None = None  # --track-mem / --parent-path
    dirty: dict = factory(dict)  # host pid -> {area start: written ranges}
    _bufs: list = factory(list)

    def __post_init__(self) -> None:
        self.pages = self.writer.page_file("pages")

    def buffer(self, index: int = 0) -> tuple[mmap.mmap, int]:
        """Copy buffer number index (the page copy uses two, alternately)."""
        while len(self._bufs) <= index:
            self._bufs.append(mmap.mmap(-1, memory.CHUNK, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS))
        buf = self._bufs[index]
        return buf, lx.addr(buf)

    def close(self) -> None:
        for buf in self._bufs:
            try:
                buf.close()
            except BufferError:
                pass

    def save_file_content(self, fd: int, size: int) -> list[PageRun]:
        """Copy the data regions of a file (holes skipped) into the page file."""
        runs: list[PageRun] = []
        buf, _ = self.buffer()
        view = memoryview(buf)
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, SEEK_DATA)
                end = os.lseek(fd, start, SEEK_HOLE)
            except OSError:  # ENXIO: no data after pos
                break
            end = min(end, size)
            while start < end:
                n = os.preadv(fd, [view[: min(len(view), end - start)]], start)
                if n <= 0:
                    break
                off = self.pages.write(view[:n])
                runs.append(PageRun(start, n, off))  # (file offset, byte length, page offset)
                start += n
            pos = end
        return runs

    def save_object(self, fd: int, path: str, kind: str, deleted: bool) -> MappedFile:
        st = os.fstat(fd)
        key = ("obj", st.st_dev, st.st_ino)
        if key in self.mapped_files:
            return self.mapped_files[key]
        mf = MappedFile(id=len(self.mapped_files), path=path, dev=st.st_dev, inode=st.st_ino,
                        size=st.st_size, deleted=deleted, kind=kind)
        if kind == "memfd":
            mf.memfd_name = path.removeprefix("/memfd:")
            try:
                import fcntl

                mf.seals = fcntl.fcntl(fd, 1034)  # F_GET_SEALS
            except OSError:
                mf.seals = 0
        mf.content = self.save_file_content(fd, st.st_size)
        self.mapped_files[key] = mf
        return mf

    def file_object(self, path: str, dev: tuple[int, int], inode: int) -> MappedFile:
        key = ("path", path, dev, inode)
        if key not in self.mapped_files:
            try:
                size = os.stat(path).st_size
            except OSError:
                size = 0
            self.mapped_files[key] = MappedFile(id=len(self.mapped_files), path=path,
                                                dev=os.makedev(*dev), inode=inode, size=size)
        return self.mapped_files[key]

    def save_ghost(self, fd: int, st: os.stat_result, path: str) -> int:
        return self.save_object(fd, path, "file", True).id


SNAPSHOT_FLAGS = lx.CLONE_FILES | lx.CLONE_FS  # shared tables: no fd reference counts change


def _fork_snapshot(inj: Injector, s: int) -> int:
    """A copy-on-write snapshot of the process's memory: a child forked inside it that never
    runs (it stays in its first ptrace stop). Its memory is read after the process has been
    let go, so the process is frozen only while its small state is read. exit_signal 0: its
    death sends the process no SIGCHLD and plain wait() never reports it. Returns its PID, or
    0 when it cannot be made (e.g. a pids limit): then memory is read while frozen."""
    pt.set_options(inj.tid, freeze.SEIZE_OPTIONS | pt.O_TRACECLONE | pt.O_TRACEFORK | pt.O_TRACEVFORK)
    try:
        args = struct.pack("<11Q", SNAPSHOT_FLAGS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        inj.write(s + 512, args)
        inj.events.clear()
        try:
            inj.call("clone3", s + 512, len(args))
        except OSError:
            return 0
        snap = next((msg for ev, msg in inj.events
                     if ev in (pt.EVENT_CLONE, pt.EVENT_FORK, pt.EVENT_VFORK)), 0)
        if snap:
            freeze.wait_new_stop(snap)
            # should torpor die, the snapshot dies too: let go, it would run on as a second
            # copy of the application (the process itself is never traced with EXITKILL)
            pt.set_options(snap, freeze.SEIZE_OPTIONS | pt.O_EXITKILL)
        return snap
    finally:
        pt.set_options(inj.tid, freeze.SEIZE_OPTIONS)


def _discard_snapshot(inj: Injector, snap: int) -> None:
    """Kill a snapshot while its process is stopped, and have the process reap it."""
    vsnap = _ns_ids(snap)[0]
    os.kill(snap, 9)
    os.waitpid(snap, lx.WALL)  # as its tracer; hands the zombie to its parent
    inj.call("wait4", vsnap, 0, lx.WALL, 0, check=False)


def drop_snapshots(ctx: DumpContext, tree: freeze.FrozenTree) -> None:
    """Kill the snapshots, then have each process reap its own and unmap what the
    copy-on-write copy left in it (its agent's area: a brief second stop)."""
    for pid, snap in ctx.snapshots.items():
        leftovers = ctx.cow.leftovers(pid) if ctx.cow is not None else []
        vsnap = 0
        try:
            vsnap = _ns_ids(snap)[0]  # wait4 inside the process takes its namespace's PID
            os.kill(snap, 9)
            os.waitpid(snap, lx.WALL)  # as its tracer; hands the zombie to its parent
        except OSError:
            vsnap = 0
            if not leftovers:
                continue
        try:
            pt.seize(pid, freeze.SEIZE_OPTIONS)
            pt.interrupt(pid)
            freeze.wait_interrupt_stop(pid)
        except OSError:
            continue
        try:
            mem_fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
            try:
                inj = Injector(pid, pid, mem_fd, find_syscall_insn(pid, mem_fd))
                try:
                    if vsnap:
                        inj.call("wait4", vsnap, 0, lx.WALL, 0, check=False)
                    for name, *args in leftovers:
                        inj.call(name, *args, check=False)
                finally:
                    inj.finish()
            finally:
                os.close(mem_fd)
        finally:
            pt.detach(pid)
    ctx.snapshots.clear()


def _snapshot(ctx: DumpContext, pid: int, leader: Injector, s: int, maps, status: dict,
              fdlist) -> None:
    """Fork the snapshot; large anonymous areas are first moved out of the way (engine/cow.py)
    so that the fork does not copy their page tables. maps were read without their flags
    where the process was pre-read (ctx.premaps): the flags then come from the snapshot, or
    from the process's smaps read here when the snapshot cannot stand for it."""
    from torpor.engine import cow

    pre = ctx.premaps.get(pid)
    if pre is not None:
        if (ctx.cow is not None and status.get("Seccomp", "0").strip() == "0"
                and cow.fast_ok(status, fdlist, pre) and _snapshot_fast(ctx, pid, leader, s, maps)):
            return
        t = time.monotonic()
        cow.refresh(maps, pid)
        log.debug("process %d: smaps read while frozen (%.1f ms)", pid, (time.monotonic() - t) * 1000)
    proc = None
    # a seccomp filter might kill the process for a syscall the fork snapshot does not need
    if ctx.cow is not None and status.get("Seccomp", "0").strip() == "0":
        areas = cow.candidates(maps)
        if areas:
            proc = cow.move_out(leader, pid, areas)
    try:
        moved = {a.start for a in proc.areas} if proc else set()
        snap = 0
        # the snapshot would lack DONTFORK / WIPEONFORK pages: then memory is read frozen
        if not any(("dc" in e.vmflags or "wf" in e.vmflags) and e.start not in moved for e in maps):
            snap = _fork_snapshot(leader, s)
        if snap:
            if proc and not cow.arm(leader, proc, s):
                # the areas are back; the snapshot was forked without them: fork it again
                proc = None
                _discard_snapshot(leader, snap)
                snap = _fork_snapshot(leader, s)
            if snap:
                ctx.snapshots[pid] = snap
        elif proc:
            cow.move_back_injected(leader, proc)
            proc = None
    except BaseException:
        if proc and proc.areas:
            cow.move_back_injected(leader, proc)
        raise
    if proc and proc.areas:
        ctx.cow.add(proc)


def _snapshot_fast(ctx: DumpContext, pid: int, leader: Injector, s: int, maps) -> bool:
    """_snapshot without the process's smaps (engine/cow.py preread): move the candidates
    chosen from the pre-read out, fork, and take every area's flags from the snapshot's
    smaps (cow.confirm). False, with everything undone, where the snapshot cannot stand for
    the process (a DONTFORK or WIPEONFORK area, a line changed) or cannot be forked."""
    from torpor.engine import cow

    t = time.monotonic()
    areas = cow.candidates(maps)
    proc = cow.move_out(leader, pid, areas) if areas else None
    snap = 0
    try:
        snap = _fork_snapshot(leader, s)
        if not snap or not cow.confirm(maps, read_maps(snap), proc):
            log.debug("process %d: the snapshot cannot stand for it (%s)", pid,
                      "no snapshot" if not snap else "areas differ")
            if snap:
                _discard_snapshot(leader, snap)
                snap = 0
            if proc:
                cow.move_back_injected(leader, proc)
            return False
        if proc and not cow.arm(leader, proc, s):
            # the areas are back; the snapshot was forked without them: fork it again
            proc = None
            _discard_snapshot(leader, snap)
            snap = _fork_snapshot(leader, s)  # 0: the memory is read while frozen
        if snap:
            ctx.snapshots[pid] = snap
            snap = 0
    except BaseException:
        if snap:
            _discard_snapshot(leader, snap)
        if proc and proc.areas:
            cow.move_back_injected(leader, proc)
        raise
    if proc and proc.areas:
        ctx.cow.add(proc)
    log.debug("process %d: %d area(s) moved out, snapshot forked (%.1f ms)", pid,
              len(proc.areas) if proc else 0, (time.monotonic() - t) * 1000)
    return True


def _cow_pages(ctx: DumpContext, pid: int, vmas: list) -> None:
    """Page runs of the moved-out areas, at the offsets reserved for them."""
    proc = ctx.cow.procs.get(pid) if ctx.cow is not None else None
    if proc is None:
        return
    by_start = {v.start: v for v in vmas}
    for a in proc.areas:
        v = by_start[a.start]
        v.pages = [PageRun(p, n // lx.PAGE_SIZE, off) for p, n, off in a.pieces(a.start, a.end)]


def _mm_fields(pid: int, brk: int) -> MmFields:
    f = read_stat(pid)
    exe = os.readlink(f"/proc/{pid}/exe")
    return MmFields(
        start_code=int(f[26]), end_code=int(f[27]), start_stack=int(f[28]),
        start_data=int(f[45]), end_data=int(f[46]), start_brk=int(f[47]), brk=brk,
        arg_start=int(f[48]), arg_end=int(f[49]), env_start=int(f[50]), env_end=int(f[51]),
        auxv=read_auxv(pid), exe=exe,
    )


DUMP_BATCH_SIZE = 4 * lx.PAGE_SIZE  # room for every query of a process (~3 KiB of answers)


def _dump_scratch(leader: Injector) -> Scratch:
    """The scratch area the dump's injected calls use, with an executable batch area; without
    one if the task may not map it (PR_SET_MDWE refuses writable+executable memory)."""
    try:
        return Scratch(leader, batch=DUMP_BATCH_SIZE)
    except PermissionError:
        return Scratch(leader)


def _batch(inj: Injector, scratch: Scratch):
    """A Batch in inj's thread, or calls injected one by one where no batch area could be
    mapped."""
    if inj.batch_area is not None:
        return inj.batch()
    from torpor.engine.batch import SerialBatch

    return SerialBatch(inj, scratch.addr, scratch.size)


def dump_process(ctx: DumpContext, pid: int, tids: list[int],
                 fdlist: list[tuple[int, str, os.stat_result]]) -> Process:
    ctx.pid = pid
    ctx.mem_fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
    try:
        # before the scratch area exists; without flags (no page table walk) where the
        # process was pre-read: _snapshot completes them
        pre = ctx.premaps.get(pid)
        maps = read_maps(pid, with_flags=pre is None)
        if pre is not None:
            from torpor.engine import cow as cow_mod

            cow_mod.adopt(maps, pre)
        stat = read_stat(pid)
        status = read_status(pid)
        threads: list[Thread] = []
        for tid in tids:
            regs = pt.get_regs(tid)
            raw_regs, xstate = cpu.dump(tid, regs)
            rseq = pt.get_rseq(tid)
            robust, robust_len = pt.get_robust_list(tid)
            tstat = read_stat(pid, tid)
            threads.append(Thread(
                tid=tid, regs=raw_regs, xstate=xstate, sigmask=pt.get_sigmask(tid),
                name=read_comm(pid, tid), pending=signals.dump_pending(tid, shared=False),
                rseq_ptr=rseq.rseq_abi_pointer, rseq_len=rseq.rseq_abi_size,
                rseq_sig=rseq.signature, robust_list=robust, robust_len=robust_len,
                state=tstat[3], in_syscall=regs.orig_rax if regs.orig_rax < (1 << 63) else -1,
            ))
        shared_pending = signals.dump_pending(pid, shared=True)
        syscall_ip = find_syscall_insn(pid, ctx.mem_fd, maps)
        injectors = [Injector(pid, tid, ctx.mem_fd, syscall_ip) for tid in tids]
        leader = injectors[0]
        scratch = None
        try:
            scratch = _dump_scratch(leader)
            s = scratch.addr
            # the queries of the process and of its leader thread: one round trip
            batch = _batch(leader, scratch)
            sigaction_answers = signals.queue_sigactions(batch, status)
            itimer_answers = task.queue_itimers(batch)
            pdeath_answer = task.queue_prctl_get(batch, lx.PR_GET_PDEATHSIG)
            subreaper_answer = task.queue_prctl_get(batch, lx.PR_GET_CHILD_SUBREAPER)
            i_dumpable = batch.add("prctl", lx.PR_GET_DUMPABLE, 0, 0, 0, 0)
            i_thp = batch.add("prctl", lx.PR_GET_THP_DISABLE, 0, 0, 0, 0)
            i_securebits = batch.add("prctl", lx.PR_GET_SECUREBITS, 0, 0, 0, 0)
            i_brk = batch.add("brk", 0)
            i_mdwe = batch.add("prctl", lx.PR_GET_MDWE, 0, 0, 0, 0, check=False)  # EINVAL < 6.3
            altstack_answer = signals.queue_altstack(batch)
            tid_address_answer = task.queue_prctl_get(batch, lx.PR_GET_TID_ADDRESS)
            results = batch.run()
            sigactions, itimers = sigaction_answers(), itimer_answers()
            pdeath, subreaper = pdeath_answer(), bool(subreaper_answer())
            dumpable, thp = results[i_dumpable], bool(results[i_thp])
            securebits, brk, mdwe = results[i_securebits], results[i_brk], max(results[i_mdwe], 0)
            per_thread = [(altstack_answer(), tid_address_answer())]
            for inj in injectors[1:]:  # the same per-thread queries in each other thread
                inj.share_batch_area(leader)
                batch = _batch(inj, scratch)
                altstack_answer = signals.queue_altstack(batch)
                tid_address_answer = task.queue_prctl_get(batch, lx.PR_GET_TID_ADDRESS)
                batch.run()
                per_thread.append((altstack_answer(), tid_address_answer()))
            for th, (altstack, tid_address) in zip(threads, per_thread, strict=True):
                th.altstack_sp, th.altstack_flags, th.altstack_size = altstack
                th.clear_child_tid = tid_address
            rlimits = task.dump_rlimits(leader, s)
            extra: dict = {}
            for res in process_resources():
                extra.update(res.dump(ctx, pid, leader, s))
            if ctx.tracking is not None and ctx.tracking.arm and pid not in ctx.tracking.trackers:
                ctx.tracking.injector = leader
                ctx.tracking.new_trackers[pid] = tracking.start(leader, pid, tracking.areas_of_maps(maps))
            if ctx.snapshot:
                _snapshot(ctx, pid, leader, s, maps, status, fdlist)
            elif pre is not None:
                cow_mod.refresh(maps, pid)
        finally:
            if scratch is not None:
                scratch.unmap()
            for inj in injectors:
                inj.finish()
        creds = task.dump_creds(pid, status)  # the tree is frozen: status is current
        creds.securebits = securebits
        vmas = memory.dump(ctx, maps)  # a copy-on-write area's pages: _cow_pages, later
        fds = files.dump(ctx, pid, fdlist)
        cwd, root = task.read_cwd_root(pid)
        mm = _mm_fields(pid, brk)
        return Process(
            pid=pid, ppid=int(stat[4]), pgid=int(stat[5]), sid=int(stat[6]), comm=stat[2],
            threads=threads, vmas=vmas, mm=mm, fds=fds, sigactions=sigactions,
            shared_pending=shared_pending, creds=creds, rlimits=rlimits,
            cwd=cwd, root=root, umask=int(status.get("Umask", "0022"), 8),
            personality=task.read_personality(pid), pdeath_sig=pdeath, dumpable=dumpable,
            child_subreaper=subreaper, itimers=itimers, thp_disabled=thp, mdwe=mdwe,
            exit_signal=int(stat[38]), **extra,
        )
    finally:
        os.close(ctx.mem_fd)


def _ns_ids(pid: int, tid: int | None = None) -> tuple[int, int, int]:
    """(pid or tid, pgid, sid) as seen inside the task's own PID namespace."""
    st = read_status(pid, tid)
    last = lambda key: int(st[key].split()[-1])  # noqa: E731 - innermost namespace
    return last("NSpid"), last("NSpgid"), last("NSsid")


def _zombie(pid: int, vpid_of: dict[int, int]) -> Process:
    f = read_stat(pid)
    vpid, vpgid, vsid = _ns_ids(pid)
    return Process(
        pid=vpid, ppid=vpid_of.get(int(f[4]), 0), pgid=vpgid, sid=vsid, comm=f[2], threads=[],
        vmas=[], mm=MmFields(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b"", ""), fds=[], sigactions=[],
        shared_pending=[], creds=task.dump_creds(pid), rlimits=[], cwd="/", root="/", umask=0o22,
        personality=0, zombie=True, exit_status=int(f[52]), exit_signal=int(f[38]), host_pid=pid,
    )


@record
class CheckpointResult:
    pid: int
    image_path: str
    processes: int
    threads: int
    pages_bytes: int
    frozen_seconds: float
    total_seconds: float
    cow_blocks: int = 0  # 2 MiB blocks saved by the copy-on-write copier while the tree ran
    cow_copied_back: int = 0  # of their runs, given back by UFFDIO_COPY instead of moved


KCMP_FILES = 2


def checkpoint_tree(
    root_pid: int,
    image_path: str,
    *,
    leave_running: bool = False,
    freezer: str | None = None,
    meta: dict | None = None,
    on_frozen: Callable[[ImageWriter], None] | None = None,
    external: Callable[[int, int, str], str | None] | None = None,
    compress: str | None = None,
    file_locks: bool = False,
    track_mem: bool = False,
    parent_path: str | None = None,
    sync: bool = False,
) -> CheckpointResult:
    """Checkpoint root_pid and all its descendants into a new image at image_path.

    freezer: a freezer cgroup directory holding the tree (containers); on_frozen(writer) runs
    while the tree is stopped, for the caller's own files; external(pid, fd, link) may name
    an fd that restore will be handed by its caller instead of recreating it. sync: return only
    once the image is on disk (fsync); without it the image is in the page cache, and restore
    still refuses one torn by a crash, by its checksums."""
    t0 = time.monotonic()
    if root_pid == os.getpid():
        raise freeze.FreezeError("torpor cannot checkpoint itself")
    # refuses a used path before any process is touched
    writer = ImageWriter(image_path, compress=compress, sync=sync)
    tree = None
    ctx = None
    released = False
    t_thawed = 0.0
    premaps: dict = {}
    try:
        if leave_running and not compress and not (track_mem or parent_path):
            from torpor.engine import cow  # imported only here: threads, queue, uffd (~5 ms)

            if cow.enabled():
                premaps = cow.preread(root_pid)  # smaps walk every page: not while frozen
        tree = freeze.seize_tree(root_pid, freezer)
        t_frozen = time.monotonic()
        live = [p for p in tree.order if p not in tree.zombies]
        if os.getpid() in live:
            raise freeze.FreezeError("torpor cannot checkpoint a tree that contains itself")
        fdlists = {p: files.scan(p, external) for p in live}  # unknown kinds fail here
        # a tree frozen before the checkpoint (a paused container) stays frozen: no snapshot
        # (it could not even die in a frozen cgroup), its memory is read as it stands
        ctx = DumpContext(writer, external=external, tree_mode=True, keep_sharing=leave_running,
                          snapshot=leave_running and not tree.was_frozen, file_locks=file_locks)
        if ctx.snapshot and not compress and not (track_mem or parent_path) and cow.enabled():
            ctx.cow = cow.Copier(ctx.pages)
            ctx.premaps = premaps
        vpid_of = {p: _ns_ids(p)[0] for p in tree.order}
        if track_mem or parent_path:
            ctx.tracking = Tracking(arm=track_mem, vpid=vpid_of)
            for p in live:
                fd = tracking.find_tracker(p)
                if fd is not None:
                    ctx.tracking.trackers[p] = fd
            if parent_path:
                ctx.tracking.parent_path = os.path.abspath(parent_path)
                ctx.tracking.parent_pages = load_parent(parent_path)
        procs: list[Process] = []
        for p in tree.order:
            if p in tree.zombies:
                procs.append(_zombie(p, vpid_of))
                continue
            proc = dump_process(ctx, p, tree.tids[p], fdlists[p])
            proc.pid, proc.pgid, proc.sid = _ns_ids(p)
            proc.ppid = vpid_of.get(int(read_stat(p)[4]), 0)
            proc.host_pid = p
            for th, tid in zip(proc.threads, tree.tids[p], strict=True):
                th.tid = _ns_ids(p, tid)[0]
            for other in procs:  # a shared fd table (CLONE_FILES) is recreated by the clone
                if not other.zombie and other.host_pid and _kcmp(other.host_pid, p, KCMP_FILES):
                    proc.files_shared_with = other.pid
                    break
            procs.append(proc)
        parents = {p: int(read_stat(p)[4]) for p in live}
        if on_frozen is not None:  # the caller's own state, consistent with the memory
            on_frozen(writer)
        if ctx.snapshot and len(ctx.snapshots) == len(live):
            freeze.release(tree)  # every process has a snapshot: they run on from here
            t_thawed = time.monotonic()
            released = True
        if ctx.cow is not None and ctx.cow.procs and released:
            ctx.cow.start()  # saves the moved-out areas, moves them back, serves faults
        for p in live:  # parents before children: a child may point at its parent's pages
            ppid = parents[p]
            memory.copy_planned(ctx, p, ppid if ppid in ctx.planned else None,
                                source=ctx.snapshots.get(p, p))
        if ctx.cow is not None and ctx.cow.procs:
            ctx.cow.finish()
            for proc in procs:  # where the moved-out areas' pages went in the page file
                _cow_pages(ctx, proc.host_pid, proc.vmas)
        xstate = procs[0].threads[0].xstate
        image = TreeImage(
            schema_version=SCHEMA_VERSION, root_pid=procs[0].pid, processes=procs,
            files=ctx.files, mapped_files=sorted(ctx.mapped_files.values(), key=lambda m: m.id),
            xfeatures=pt.xstate_features(xstate) or xcr0(), xstate_size=len(xstate),
        )
        writer.put_record("tree", image)
        extra_meta = {}
        if parent_path:
            extra_meta["parent"] = os.path.abspath(parent_path)
        writer.commit({"kind": "process-tree", "root_pid": root_pid, "xfeatures": image.xfeatures,
                       **extra_meta, **(meta or {})})
    except BaseException:
        try:
            if ctx is not None and ctx.cow is not None and ctx.cow.procs:
                ctx.cow.finish(abort=True)  # every block back before the tree may run
            writer.abort()
        finally:
            if tree is not None and not released:
                freeze.release(tree)
            if ctx:
                if tree is not None:
                    drop_snapshots(ctx, tree)
                ctx.close()
        raise
    ctx.close()
    if leave_running:
        if not released:
            freeze.release(tree)
            t_thawed = time.monotonic()
        drop_snapshots(ctx, tree)
    else:
        freeze.kill(tree)
        t_thawed = time.monotonic()
    t_end = time.monotonic()
    cow_stats = ctx.cow.stats if ctx.cow is not None else {}
    return CheckpointResult(root_pid, image_path, len(tree.order), len(tree.all_tids()),
                            ctx.pages.size, t_thawed - t_frozen, t_end - t0,
                            cow_stats.get("blocks", 0), cow_stats.get("copied_back", 0))


def _kcmp(pid1: int, pid2: int, kind: int) -> bool:
    try:
        return lx.syscall(lx.NR["kcmp"], pid1, pid2, kind, 0, 0) == 0
    except OSError:
        return False


def checkpoint(pid: int, image_path: str, leave_running: bool = False,
               meta: dict | None = None, compress: str | None = None,
               file_locks: bool = False, track_mem: bool = False,
               parent_path: str | None = None, sync: bool = False) -> CheckpointResult:
    """Checkpoint a host process and its descendants."""
    return checkpoint_tree(pid, image_path, leave_running=leave_running, meta=meta,
                           compress=compress, file_locks=file_locks, track_mem=track_mem,
                           parent_path=parent_path, sync=sync)

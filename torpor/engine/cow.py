"""Copy-on-write checkpoints of large anonymous areas (`checkpoint --leave-running`).

Forking a snapshot copies the page tables of the whole process (~70 ms for 2 GiB), and
reading its smaps walks them (~20 ms). Instead, smaps is read before the freeze (preread);
while the process is stopped only /proc/PID/maps is read (no walk), and each large private
anonymous area (chosen from the pre-read's unchanged lines: no page is looked at while
frozen) is moved by an injected mremap(MREMAP_DONTUNMAP) to a "shadow" address with the same
offset modulo 2 MiB: the page tables move whole, no page is copied, the old range stays
mapped but empty, and the shadow is MADV_DONTFORK (an application fork must not inherit
it). The snapshot of the small areas is forked, and its smaps (none of the moved pages to
walk) gives every area's flags (confirm); where it cannot stand for the process (an area
DONTFORK or WIPEONFORK, a line changed, locked memory, a userfaultfd) the move is undone and
the process's smaps read while frozen, as for processes too small to pre-read. Then the
task gets a userfaultfd (shared with torpor through pidfd_getfd; events FORK, REMAP,
REMOVE, UNMAP, feature MOVE) with the old ranges registered for missing-page faults, and an
agent thread (engine/agent.py): the kernel runs UFFDIO_MOVE only for a caller in the
userfaultfd's own address space. The process is let go.

This module's copier (one thread, a second writing the page file) then saves each 2 MiB
block (its present pages found by a PAGEMAP_SCAN of that block, placed in room reserved for
the area's resident size) and has the agent move it back; a fault on a block not yet back
has that block saved and moved first, with a buffer of its own when the sweep waits for the
writer. A fork during the copy hands over
the child's userfaultfd: the child misses the same blocks, and gets them by UFFDIO_COPY from
the saved data before the parent's block moves back. MADV_DONTNEED/munmap of the old range
(REMOVE/UNMAP) make the copier save those pages but never move them back; an mremap of it
(REMAP) is followed. When every block is back the agent unmaps the empty shadows, closes the
task's userfaultfd and ends; a second brief stop (dump.drop_snapshots) reaps the snapshot
and unmaps the agent's two pages.

Failure must never cost the application its memory: if saving fails, every block is still
moved back (or copied back, when UFFDIO_MOVE refuses a page) and only then is the error
raised. Should torpor itself die (SIGKILL, OOM) during the copy, the agent's will, kept up to
date before each block moves, puts back every block still in the shadows and closes the
userfaultfd; the snapshot dies with torpor. An area whose mremap fails (ENOMEM: overcommit, RLIMIT_AS), a process where
userfaultfd(2) is refused, areas already registered with a userfaultfd (the --track-mem
tracker), locked, read-only or holding pages shared with another process keep the fork
snapshot.

On by default; TORPOR_COW=0 keeps the plain fork snapshot (bench memory, 3 runs each, same
session: frozen ~10 / ~15 ms at 512 MiB / 2 GiB against ~30 / ~80 ms for the fork;
docs/performance.md).
"""

from __future__ import annotations

import bisect
import errno
import mmap
import os
import queue
import select
import sys
import threading
from collections import deque

from torpor.engine.agent import AREA_SIZE as AGENT_AREA_SIZE
from torpor.engine.agent import WILL_MAX, Agent, steal_fd
from torpor.engine.lazy import Space
from torpor.engine.linux import sys as lx
from torpor.engine.linux import uffd, vm
from torpor.engine.linux.pagemap import PAGE_IS_PFNZERO, PAGE_IS_PRESENT, PAGE_IS_SWAPPED, PageMap
from torpor.engine.linux.procfs import read_maps
from torpor.engine.linux.sys import PAGE_SIZE
from torpor.errors import TorporError
from torpor.records import factory, record

BLOCK = 2 << 20  # the unit of save-and-move-back (a PMD: the kernel moves it whole)
MAX_AREAS = 8  # per process: the agent's will (engine/agent.py) ends with a call for each
MIN_PRESENT = 1 << 20  # areas with less than this in pages stay in the fork snapshot
# VmFlags that keep an area in the snapshot: locked, already registered with a userfaultfd,
# stack, hugetlb, pfn/io/mixed maps, shadow stack
EXCLUDED_FLAGS = {"lo", "um", "uw", "ui", "gd", "ht", "pf", "io", "mm", "ss"}
SWITCH_INTERVAL = 0.0002  # s, while the copier thread runs
BUFFERS = 8  # blocks read and not yet written, for the sweep
FAULT_BUFFERS = 24  # more, for blocks a fault needs while the sweep's wait on the writer


def enabled() -> bool:
    return os.environ.get("TORPOR_COW", "1") != "0"  # TORPOR_COW=0: the fork snapshot only


class CowError(TorporError):
    pass


@record
class Area:
    """One area moved out to a shadow. Its present pages are found block by block, when the
    block is saved (a scan of the whole shadow first would keep the process's first fault
    waiting ~10 ns a page), and placed in the page file in the order blocks are saved, in
    space reserved for the area's resident size (more is reserved if that runs out)."""

    start: int
    end: int
    dontfork: bool
    resident: int = 0  # bytes, from smaps: the first reservation
    shadow: int = 0
    room: list[list[int]] = factory(list)  # [offset, length] reserved, unused
    saved: dict[int, list[tuple[int, int, int]]] = factory(dict)

    @property
    def length(self) -> int:
        return self.end - self.start

    def place(self, present: list[tuple[int, int]], reserve) -> list[tuple[int, int, int]]:
        """Page file offsets for PRESENT runs (addr, length) of one block: (addr, length,
        offset) pieces, split where the reserved room runs out."""
        out = []
        for addr, n in present:
            while n > 0:
                if not self.room:
                    self.room.append([reserve(max(n, BLOCK)), max(n, BLOCK)])
                r = self.room[0]
                k = min(n, r[1])
                if out and out[-1][0] + out[-1][1] == addr and out[-1][2] + out[-1][1] == r[0]:
                    out[-1] = (out[-1][0], out[-1][1] + k, out[-1][2])
                else:
                    out.append((addr, k, r[0]))
                r[0] += k
                r[1] -= k
                if not r[1]:
                    self.room.pop(0)
                addr += k
                n -= k
        return out

    def pieces(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """Saved present pages in old-range [lo, hi): (addr, length, file offset)."""
        out = []
        for p in sorted(p for ps in self.saved.values() for p in ps):
            a, n, off = p
            s, e = max(a, lo), min(a + n, hi)
            if s < e:
                out.append((s, e - s, off + (s - a)))
        return out


@record
class Proc:
    pid: int
    fd: int  # the userfaultfd, in torpor
    areas: list[Area] = factory(list)
    task_fd: int = -1  # the same userfaultfd, in the task (the agent's UFFDIO_MOVE uses it)
    agent: object = None  # engine/agent.py's Agent, planted in the task
    pagemap: object = None  # a PageMap of the task, to find the shadows' present pages
    leftovers: list[tuple[int, int]] = factory(list)  # to unmap, stopped

    def area_of_shadow(self, addr: int) -> Area | None:
        for a in self.areas:
            if a.shadow <= addr < a.shadow + a.length:
                return a
        return None


class CowSpace(Space):
    """Pending ranges [vaddr, length, shadow address] of one address space: the process
    that owns the shadow (blocks are moved back) or a child forked during the copy (blocks
    are copied in)."""

    def __init__(self, fd: int, runs: list[list[int]], owner: Proc, mover: bool) -> None:
        super().__init__(fd, runs)
        self.owner, self.mover = owner, mover

    def take_src(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """Remove and return the pending parts whose shadow address is in [lo, hi)."""
        inside, self.runs = self.cut(lo, hi, by_source=True)
        self.runs.sort()
        return [(va, ln, src) for va, ln, src in inside]


# ------------------------------------------------------------------ frozen: choose, move out


def candidates(maps) -> list[Area]:
    """Areas of the frozen process worth moving out, from its smaps (already read: no page
    is looked at while it is stopped): private anonymous, writable, not excluded by their
    flags, >= MIN_PRESENT resident, none of it mapped by another process too (UFFDIO_MOVE
    moves only exclusive pages; copying shared ones back would unshare them)."""
    out: list[Area] = []
    for e in maps:
        if (e.inode or e.shared or e.perms[1] != "w" or e.vmflags & EXCLUDED_FLAGS
                or (e.path and not e.path.startswith("[anon:"))
                or e.rss < MIN_PRESENT or e.rss_shared):
            continue
        out.append(Area(e.start, e.end, "dc" in e.vmflags, e.rss))
    # the largest ones, as many as the agent's will can give back (the others: the snapshot)
    return sorted(out, key=lambda a: a.length, reverse=True)[:MAX_AREAS]


PREREAD_MIN = 32 << 20  # processes with less resident are read exactly while frozen (cheap)
# VmFlags the snapshot cannot be trusted to show as its process has them: fork clears the
# lock flags, and a userfaultfd's flags unless it asked for fork events
UNINHERITED = {"lo", "lf", "um", "uw", "ui"}
UFFD_LINK = "anon_inode:[userfaultfd]"


def preread(root: int) -> dict[int, list]:
    """Before the freeze: the smaps of root and of its descendants holding at least
    PREREAD_MIN. Reading smaps walks every page table entry (~20 ms at 2 GiB), so it is not
    done while the process is stopped: there /proc/PID/maps (no walk) is read instead, the
    areas to move out are chosen from this earlier reading of the same lines, and every
    area's flags are then taken from the snapshot's smaps (confirm), which holds none of
    the moved-out pages. Processes missing here are read whole while frozen."""
    out: dict[int, list] = {}
    todo, seen = [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm") as f:
                resident = int(f.read().split()[1]) * PAGE_SIZE
            if resident >= PREREAD_MIN:
                out[pid] = read_maps(pid)
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return out


def _line(e) -> tuple:
    return (e.start, e.end, e.perms, e.pgoff, e.dev, e.inode, e.path)


def adopt(maps, pre) -> None:
    """Frozen, from /proc/PID/maps (no flags): each area whose line is unchanged since the
    pre-read takes its flags and resident sizes from it, tentatively (they choose the
    candidates; confirm() replaces the flags with the snapshot's)."""
    by_line = {_line(e): e for e in pre}
    for e in maps:
        p = by_line.get(_line(e))
        if p is not None:
            e.vmflags, e.rss, e.rss_shared = set(p.vmflags), p.rss, p.rss_shared


def fast_ok(status: dict, fdlist, pre) -> bool:
    """Whether the snapshot's smaps can stand for the process's: nothing locked (fork
    clears the lock flags), no userfaultfd in the process or registered (fork may clear
    their flags)."""
    try:
        if int(status.get("VmLck", "0").split()[0]) != 0:
            return False
    except ValueError:
        return False
    if any(link == UFFD_LINK for _, link, _ in fdlist):
        return False
    return not any(e.vmflags & UNINHERITED for e in pre)


def confirm(maps, child_maps, proc: Proc | None) -> bool:
    """Frozen, the snapshot forked: every area of the process must be in the snapshot with
    the same line (one missing is DONTFORK: the snapshot lacks its pages; or merged with the
    scratch area), none WIPEONFORK (the snapshot has zeros there) nor with flags fork does
    not copy; a moved-out area must have the flags it was chosen with (mremap DONTUNMAP
    clears "ac" on the range left behind). Then maps take the snapshot's flags: they are the
    process's, read with none of the moved-out pages to walk. False: the caller undoes the
    move and reads the process's smaps."""
    by_line = {_line(c): c for c in child_maps}
    moved = {a.start for a in proc.areas} if proc else set()
    for a in proc.areas if proc else []:
        # the range left behind keeps the area's DONTFORK, which the pre-read may not have
        # seen: the move back must know it (it gives the others DOFORK)
        a.dontfork = not any(c.start == a.start and c.end == a.end for c in child_maps)
    flags = []
    for e in maps:
        c = by_line.get(_line(e))
        if c is None or "wf" in c.vmflags or c.vmflags & UNINHERITED:
            return False
        if e.start in moved and c.vmflags - {"ac"} != e.vmflags - {"ac"}:
            return False
        flags.append(c.vmflags)
    for e, f in zip(maps, flags, strict=True):
        if e.start not in moved:
            e.vmflags = f
    return True


def refresh(maps, pid: int) -> None:
    """Exact flags and resident sizes for maps (read without them) from the process's smaps,
    now; an area merged with the scratch area mapped since takes the merged area's."""
    fresh = read_maps(pid)
    starts = [f.start for f in fresh]
    for e in maps:
        i = bisect.bisect_right(starts, e.start) - 1
        if i >= 0 and e.start < fresh[i].end:
            f = fresh[i]
            e.vmflags, e.rss, e.rss_shared = f.vmflags, f.rss, f.rss_shared


def move_out(inj, pid: int, areas: list[Area]) -> Proc | None:
    """While frozen, before the snapshot fork (which then copies none of their page tables):
    move each area's pages to its shadow. Areas that cannot be moved stay as they are (the
    snapshot will hold them). None if nothing was moved."""
    proc = Proc(pid, -1)
    for a in areas:
        n = a.length
        res = inj.call("mmap", 0, n + BLOCK, lx.PROT_NONE,
                       lx.MAP_PRIVATE | lx.MAP_ANONYMOUS | lx.MAP_NORESERVE, -1, 0, check=False)
        if -4096 < res < 0:
            continue
        shadow = res + (a.start - res) % BLOCK  # same offset in its 2 MiB as the area
        if shadow > res:
            inj.call("munmap", res, shadow - res, check=False)
        if res + n + BLOCK > shadow + n:
            inj.call("munmap", shadow + n, res + n + BLOCK - shadow - n, check=False)
        got = inj.call("mremap", a.start, n, n,
                       lx.MREMAP_MAYMOVE | lx.MREMAP_FIXED | lx.MREMAP_DONTUNMAP, shadow, check=False)
        if got != shadow:  # ENOMEM (commit charge, RLIMIT_AS, map count): keep it in the snapshot
            inj.call("munmap", shadow, n, check=False)
            continue
        a.shadow = shadow
        inj.call("madvise", shadow, n, lx.MADV_DONTFORK, check=False)
        proc.areas.append(a)
    return proc if proc.areas else None


def arm(inj, proc: Proc, scratch: int) -> bool:
    """Still frozen, after the snapshot fork (so that the snapshot holds none of what follows,
    and that fork did not wait on a FORK event): a userfaultfd in the task, shared with torpor,
    the old ranges registered for missing faults, and an agent thread to run UFFDIO_MOVE in
    the task (engine/agent.py). False, with every area moved back and nothing left in the
    task, where any of it is refused (e.g. vm.unprivileged_userfaultfd = 0, a pids limit)."""
    task_fd = inj.call("userfaultfd", os.O_CLOEXEC | os.O_NONBLOCK, check=False)
    if -4096 < task_fd < 0:
        move_back_injected(inj, proc)
        return False
    try:
        proc.fd = steal_fd(proc.pid, task_fd)
        uffd.api(proc.fd, uffd.NONCOOPERATIVE | uffd.FEATURE_MOVE)
        for a in proc.areas:  # all or none: the caller then forks its snapshot again, whole
            uffd.register(proc.fd, a.start, a.length)
        proc.agent = Agent.plant(inj, scratch)
        if proc.agent is None:
            raise OSError("no agent")
        proc.task_fd = task_fd
        set_will(proc, [[a.start, a.length, a.shadow] for a in proc.areas])
    except BaseException as err:
        # both ends closed first: the kernel unregisters the ranges, and the mremap back
        # then sends no UNMAP event that nobody would read (the task would wait forever)
        if proc.fd >= 0:
            os.close(proc.fd)
            proc.fd = -1
        inj.call("close", task_fd, check=False)
        move_back_injected(inj, proc)
        if not isinstance(err, OSError):
            raise
        return False
    return True


def set_will(proc: Proc, pending: list[list[int]]) -> None:
    """What proc's agent does should torpor die now: move the PENDING runs [old address,
    length, shadow address] back, unmap the shadows, close the task's userfaultfd (which
    wakes every thread waiting on a fault). Too scattered to fit, there is no will: then
    faults wait instead of finding zeros where pages were not given back."""
    agent = proc.agent
    tail = [("munmap", a.shadow, a.length) for a in proc.areas] + [("close", proc.task_fd)]
    if len(pending) + len(tail) > WILL_MAX:
        calls, data = [], b""
    else:
        calls = [("ioctl", proc.task_fd, uffd.UFFDIO_MOVE, agent.will_data + i * uffd.MOVE_SIZE)
                 for i in range(len(pending))] + tail
        data = b"".join(uffd.move_args(va, src, ln) for va, ln, src in pending)
    try:
        agent.set_will(calls, data)
    except OSError:
        pass  # the process is gone


def move_back_injected(inj, proc: Proc, areas: list[Area] | None = None) -> None:
    """Undo move_out while still frozen (no snapshot after all, or arming failed): mremap
    each shadow back over its old range."""
    for a in list(areas if areas is not None else proc.areas):
        n = a.length
        inj.call("mremap", a.shadow, n, n, lx.MREMAP_MAYMOVE | lx.MREMAP_FIXED, a.start)
        if not a.dontfork:
            inj.call("madvise", a.start, n, lx.MADV_DOFORK, check=False)
        proc.areas.remove(a)


# ---------------------------------------------------------------------------- the copier


class Copier:
    """Saves the moved-out areas of every process of the tree and moves them back, serving
    faults and events meanwhile (run() in one thread)."""

    def __init__(self, pages) -> None:
        self.pages = pages  # the image's PageFile: its raw fd is taken once an area is added
        self.page_fd = -1
        self.finished = False
        self.procs: dict[int, Proc] = {}
        self.spaces: dict[int, CowSpace] = {}
        self.done: set[tuple[int, int]] = set()
        self.faults: deque = deque()
        self.poller = select.poll()
        self.aborting = False
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.stats = {"blocks": 0, "faults": 0, "forks": 0, "copied_back": 0}
        self._bufs = [mmap.mmap(-1, BLOCK, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
                      for _ in range(BUFFERS)]
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(BUFFERS):
            self._free.put(i)
        self._wake_r = self._wake_w = -1  # run(): the writer wakes the copier when it frees a buffer
        self._writes: queue.SimpleQueue = queue.SimpleQueue()
        self._write_error: list[BaseException] = []
        self._writer: threading.Thread | None = None
        self._cv = threading.Condition()
        self._inflight = 0
        self.prepared = False
        self._switch = 0.005

    def add(self, proc: Proc) -> None:
        """A process whose areas were moved out and armed (still frozen): serve it."""
        self.procs[proc.pid] = proc
        runs = [[a.start, a.length, a.shadow] for a in proc.areas]
        self._add_space(CowSpace(proc.fd, runs, proc, True))

    def prepare(self) -> None:
        """Once the tree runs again: reserve each area's resident size in the page file (its
        pages are found block by block as they are saved: the copier serves faults at once)."""
        if self.prepared:
            return
        self.prepared = True
        if self.page_fd < 0:
            self.page_fd = self.pages.fd
        for proc in self.procs.values():
            proc.pagemap = PageMap(proc.pid)
            for a in proc.areas:
                if a.resident:
                    a.room = [[self.pages.reserve(a.resident), a.resident]]

    def _present(self, proc: Proc, a: Area, bs: int, be: int) -> list[tuple[int, int]]:
        """Present pages (old addresses) of shadow [bs, be): nothing touches a shadow, so they
        hold still."""
        delta = a.shadow - a.start
        out: list[tuple[int, int]] = []
        for s, t, cat in proc.pagemap.regions(bs, be):
            if cat & PAGE_IS_PFNZERO or not cat & (PAGE_IS_PRESENT | PAGE_IS_SWAPPED):
                continue
            if out and out[-1][0] + out[-1][1] == s - delta:
                out[-1] = (out[-1][0], out[-1][1] + t - s)
            else:
                out.append((s - delta, t - s))
        return out

    def leftovers(self, pid: int) -> list[tuple]:
        """Injected calls (name, args...) the process's second brief stop must make: the
        agent's area once its thread is gone, and whatever the agent could not do itself."""
        proc = self.procs.get(pid)
        return proc.leftovers if proc else []

    def _add_space(self, space: CowSpace) -> None:
        self.spaces[space.fd] = space
        self.poller.register(space.fd, select.POLLIN)

    # -- threads
    def start(self) -> None:
        self.prepare()
        # the dump's own thread runs Python meanwhile: a fault's waiting on the GIL, at each
        # syscall the copier makes for it, must not take the default 5 ms switch interval
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.thread = threading.Thread(target=self.run, name="torpor-cow", daemon=True)
        self.thread.start()

    def finish(self, abort: bool = False) -> None:
        """Wait for every block to be back; raise what went wrong (after moving back)."""
        if abort:
            self.aborting = True
        if self.finished and self.thread is None:
            return
        if self.thread is None:
            self.prepare()
            self.run()
        else:
            self.thread.join()
            self.thread = None
            sys.setswitchinterval(self._switch)
        if self.error is not None and not abort:
            raise CowError(f"copy-on-write checkpoint failed: {self.error}") from self.error

    def _write_loop(self) -> None:
        while (item := self._writes.get()) is not None:
            idx, pieces = item
            try:
                if not self._write_error:
                    groups: list[tuple[int, list]] = []  # (offset, views) of consecutive pieces
                    for view, off in pieces:
                        if groups and groups[-1][0] + sum(len(v) for v in groups[-1][1]) == off:
                            groups[-1][1].append(view)
                        else:
                            groups.append((off, [view]))
                    for pos, views in groups:
                        while views:
                            n = os.pwritev(self.page_fd, views, pos)
                            pos += n
                            while views and n >= len(views[0]):
                                n -= len(views[0])
                                views = views[1:]
                            if views and n:
                                views = [views[0][n:]] + views[1:]
            except BaseException as err:  # noqa: BLE001 - reported by the copier
                self._write_error.append(err)
            self._free.put(idx)
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass  # the pipe is full: the copier has wake-ups enough
            with self._cv:
                self._inflight -= 1
                self._cv.notify_all()

    # -- the loop
    def run(self) -> None:
        self.finished = True
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.poller.register(self._wake_r, select.POLLIN)
        self._writer = threading.Thread(target=self._write_loop, name="torpor-cow-writer", daemon=True)
        self._writer.start()
        try:
            try:
                for proc in list(self.procs.values()):
                    for a in list(proc.areas):
                        b = a.shadow - a.shadow % BLOCK
                        while b < a.shadow + a.length:
                            self._serve()
                            self._wait_buffer()
                            self._block(proc, a, max(b, a.shadow))
                            b += BLOCK
                self._serve()
            except BaseException as err:  # noqa: BLE001 - every block must still go back
                self.error = self.error or err
                self.aborting = True
                self._give_back_all()
        finally:
            self._writes.put(None)
            self._writer.join()
            if self._write_error and self.error is None:
                self.error = self._write_error[0]
            self._retire()
            self._close()

    def _retire(self) -> None:
        """Every block is back: each agent unmaps its (now empty) shadows and closes the task's
        userfaultfd while the process runs, then ends; what it could not do is left for the
        second brief stop, with its own area."""
        for proc in self.procs.values():
            agent = proc.agent
            todo = [("munmap", a.shadow, a.length) for a in proc.areas]
            if proc.task_fd >= 0:
                todo.append(("close", proc.task_fd))
            if agent is not None:
                try:
                    agent.clear_will()  # nothing to give back any more
                    while todo:
                        agent.call(*todo[0])
                        todo.pop(0)
                except OSError:
                    pass
                if agent.stop():  # its thread is gone: its code may be unmapped
                    todo.append(("munmap", agent.area, AGENT_AREA_SIZE))
            proc.leftovers = todo

    def _give_back_all(self) -> None:
        """Abort: move every pending range back without saving, trying every block."""
        for proc in list(self.procs.values()):
            for a in list(proc.areas):
                b = a.shadow - a.shadow % BLOCK
                while b < a.shadow + a.length:
                    try:
                        self._serve()
                        self._block(proc, a, max(b, a.shadow))
                    except BaseException as err:  # noqa: BLE001 - go on with the others
                        self.error = self.error or err
                    b += BLOCK

    def _close(self) -> None:
        for fd in list(self.spaces):
            try:
                self.poller.unregister(fd)
            except (KeyError, ValueError):
                pass
            os.close(fd)  # the kernel unregisters the ranges
        self.spaces.clear()
        for proc in self.procs.values():
            if proc.pagemap is not None:
                proc.pagemap.close()
                proc.pagemap = None
        for buf in self._bufs:
            try:
                buf.close()
            except BufferError:
                pass
        if self._wake_r >= 0:
            self.poller.unregister(self._wake_r)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    # -- events and faults
    def _pump(self) -> None:
        """Read every pending message; faults are queued, other events applied at once (the
        application waits until they are read)."""
        for fd, ev in self.poller.poll(0):
            space = self.spaces.get(fd)
            if space is None:
                continue
            if ev & (select.POLLERR | select.POLLNVAL):
                continue
            for event, args in uffd.read_events(fd):
                if event == uffd.EVENT_PAGEFAULT:
                    self.faults.append((fd, args[1]))
                elif event == uffd.EVENT_FORK:
                    self.stats["forks"] += 1
                    self._add_space(CowSpace(args[0], [list(r) for r in space.runs], space.owner, False))
                elif event == uffd.EVENT_REMAP:
                    space.move(*args)
                elif event in (uffd.EVENT_REMOVE, uffd.EVENT_UNMAP):
                    space.drop(*args)

    def _serve(self) -> None:
        self._pump()
        while self.faults:
            fd, addr = self.faults.popleft()
            space = self.spaces.get(fd)
            if space is not None:
                self._fault(space, addr)
            self._pump()

    def _fault(self, space: CowSpace, addr: int) -> None:
        self.stats["faults"] += 1
        page = addr & ~(PAGE_SIZE - 1)
        i = space.find(page)
        if i >= 0:
            va, _, src = space.runs[i]
            src += page - va
            a = space.owner.area_of_shadow(src)
            if a is not None:
                self._block(space.owner, a, max(src - src % BLOCK, a.shadow), urgent=True)
            if space.find(page) >= 0:  # cannot happen: never leave a thread waiting
                space.drop(page, page + PAGE_SIZE)
        if space.find(page) < 0:
            uffd.zeropage(space.fd, page, PAGE_SIZE)  # never present, or dropped: zeros
            uffd.wake(space.fd, page, PAGE_SIZE)

    # -- one block: save it, then hand it to every space that misses it
    def _wait_buffer(self) -> None:
        """Until the writer frees a buffer for the sweep's next block, serve faults (with
        buffers of their own): a fault must not wait for the page file."""
        while self._free.empty():
            self.poller.poll()
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass
            self._serve()

    def _take(self, urgent: bool) -> int:
        """A free buffer's index; for a fault (urgent) a new buffer rather than a wait for the
        writer, up to FAULT_BUFFERS more."""
        if urgent and self._free.empty() and len(self._bufs) < BUFFERS + FAULT_BUFFERS:
            self._bufs.append(mmap.mmap(-1, BLOCK, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS))
            return len(self._bufs) - 1
        return self._free.get()

    def _block(self, proc: Proc, a: Area, bs: int, urgent: bool = False) -> None:
        be = min(bs - bs % BLOCK + BLOCK, a.shadow + a.length)
        lo = bs - a.shadow + a.start
        key = (proc.pid, bs)
        if key in self.done:
            pieces = a.saved.get(lo, [])
        else:  # old addresses, with their place in the page file
            pieces = a.saved[lo] = a.place(self._present(proc, a, bs, be), self.pages.reserve)
        idx = self._take(urgent)
        buf = self._bufs[idx]
        base = lx.addr(buf)
        queued = False
        try:
            data = bool(pieces)
            if key not in self.done:
                if pieces:
                    data = self._read(proc.pid, a, pieces, lo, base, buf)
                    if not self.aborting and not self._write_error:
                        view = memoryview(buf)
                        with self._cv:
                            self._inflight += 1
                        self._writes.put((idx, [(view[p - lo : p - lo + n], off) for p, n, off in pieces]))
                        queued = True
                self.done.add(key)
                self.stats["blocks"] += 1
            elif pieces:
                data = self._reload(pieces, lo, buf)
            self._deliver(proc, bs, be, a, pieces if data else [], base)
        finally:
            if not queued:
                self._free.put(idx)

    def _read(self, pid: int, a: Area, pieces, lo: int, base: int, buf) -> bool:
        delta = a.shadow - a.start
        local = [(base + p - lo, n) for p, n, _ in pieces]
        remote = [(p + delta, n) for p, n, _ in pieces]
        total = sum(n for _, n in local)
        try:
            got = vm.readv(pid, local, remote)
        except OSError as err:
            got = -err.errno
        if got == total:
            return True
        if self.aborting:
            return False
        raise CowError(f"process {pid}: cannot read its memory at {remote[0][0]:#x} "
                       f"({os.strerror(-got) if got < 0 else 'short read'})")

    def _reload(self, pieces, lo: int, buf) -> bool:
        """A block already saved is needed again (a child still misses part of it): read it
        back from the page file."""
        if self.aborting:
            return False
        with self._cv:
            self._cv.wait_for(lambda: self._inflight == 0)
        view = memoryview(buf)
        for p, n, off in pieces:
            os.preadv(self.page_fd, [view[p - lo : p - lo + n]], off)
        return True

    def _deliver(self, proc: Proc, bs: int, be: int, a: Area, pieces, base: int) -> None:
        lo = bs - a.shadow + a.start
        while True:
            retry = False
            for space in [s for s in self.spaces.values() if s.owner is proc]:
                taken = space.take_src(bs, be)
                if space.mover and proc.agent is not None and proc.agent.alive:
                    # should torpor die from here on: the runs being moved go first in the will,
                    # each on its own (one already moved fails alone with EEXIST), then the rest
                    set_will(proc, [[va, ln, src] for va, ln, src in taken] + space.runs)
                for va, ln, src in taken:
                    rest = self._put(space, va, ln, src, a, pieces, lo, base)
                    if rest is not None:
                        space.put_back(*rest)
                        retry = True
            if not retry:
                return
            self._pump()  # EAGAIN: an event (fork, mremap, ...) must be read first

    def _put(self, space: CowSpace, va: int, ln: int, src: int, a: Area, pieces, lo: int,
             base: int) -> tuple[int, int, int] | None:
        """Move (owner) or copy (child) [va, va + ln) <- shadow src. Returns what is left to
        do after EAGAIN, else None."""
        done = 0
        if space.mover:
            while done < ln:
                n = _move(space.owner, va + done, src + done, ln - done)
                if n > 0:
                    done += n
                elif n == -errno.EAGAIN:
                    return va + done, ln - done, src + done
                elif n == -errno.EEXIST:
                    done += PAGE_SIZE  # the page is there already: keep it
                elif n == -errno.ESRCH:
                    return None  # the process is gone
                else:  # EBUSY (a shared page), EINVAL (mprotected meanwhile), ENOENT: copy it
                    break
            if done >= ln:
                return None
            self.stats["copied_back"] += 1
        return self._copy(space, va + done, ln - done, src + done, a, pieces, lo, base)

    def _copy(self, space: CowSpace, va: int, ln: int, src: int, a: Area, pieces, lo: int,
              base: int) -> tuple[int, int, int] | None:
        """UFFDIO_COPY the present pages of [src, src + ln) from the block buffer (holes
        stay missing: a fault there gets a zero page)."""
        delta = a.shadow - a.start
        for p, n, _ in pieces:
            s, e = max(p + delta, src), min(p + delta + n, src + ln)
            if s >= e:
                continue
            pos = s
            while pos < e:
                got = uffd.copy(space.fd, va + (pos - src), base + (pos - delta - lo), e - pos)
                if got > 0:
                    pos += got
                elif got == -errno.EEXIST:
                    pos += PAGE_SIZE
                elif got == -errno.EAGAIN:
                    return va + (pos - src), src + ln - pos, pos
                else:
                    break  # gone: unmapped, or the process exited
        return None


def _move(proc: Proc, dst: int, src: int, length: int) -> int:
    """UFFDIO_MOVE run by the process's agent (the kernel refuses it from another address
    space); uffd.move's answer: bytes moved, or -errno when none were."""
    agent = proc.agent
    try:
        res, back = agent.call("ioctl", proc.task_fd, uffd.UFFDIO_MOVE, agent.payload,
                               payload=uffd.move_args(dst, src, length))
    except OSError:
        return -errno.ESRCH  # the agent, or the process, is gone
    moved = uffd.moved(back)
    return moved if moved > 0 or res >= 0 else res

"""Memory areas (VMAs) and their pages.

Dump: classify each area; store the pages that differ from what the area's backing would give
(private anonymous pages that are present or swapped, copy-on-write copies in private file
mappings; never the shared zero page); save the content of objects that cannot be reopened
(shared anonymous memory, memfds, deleted files) once per object.

Restore: map every area at its address (writable while its pages go in), then put the stored
pages in: UFFDIO_COPY into private anonymous areas (fill_by_uffd, with a userfaultfd the
restorer makes in the task), process_vm_writev into other writable ones, /proc/PID/mem for the
rest; then each area gets its saved protection.
"""

from __future__ import annotations

import os

from torpor.engine.linux import vm
from torpor.engine.linux.pagemap import (
    PAGE_IS_FILE,
    PAGE_IS_PFNZERO,
    PAGE_IS_PRESENT,
    PAGE_IS_SWAPPED,
    PageMap,
)
from torpor.engine.linux.procfs import MapsEntry
from torpor.engine.linux.sys import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_GROWSDOWN,
    MAP_NORESERVE,
    MAP_PRIVATE,
    MAP_SHARED,
    PAGE_SIZE,
    PROT_WRITE,
)
from torpor.errors import TorporError
from torpor.image.schema import MappedFile, PageRun, Vma

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from collections.abc import Callable

    from torpor.engine.dump import DumpContext
    from torpor.engine.restore import TaskRestore

SPECIAL = {"[vdso]": "vdso", "[vvar]": "vvar", "[vvar_vclock]": "vvar_vclock", "[vsyscall]": "vsyscall"}
DELETED = " (deleted)"
# madvise advice for VmFlags that a plain mmap does not give back
MADV_FOR_FLAG = {"dd": 16, "dc": 10, "wf": 18, "hg": 14, "nh": 15, "mg": 12}  # DONTDUMP, DONTFORK, WIPEONFORK, HUGEPAGE, NOHUGEPAGE, MERGEABLE
_MADV_FLAGS = frozenset(MADV_FOR_FLAG)
# bytes per copy buffer (two alternate): small enough that both stay in the CPU's last-level
# cache, so what process_vm_readv puts there is written to the page file from the cache, not
# read back from RAM. 1 GiB from a child to a file (bench-like, medians of 5-9): 64 MiB
# buffers 80% of a plain write of the same memory on ext4, 89% on tmpfs; 4 MiB 85%, 100%.
CHUNK = 4 << 20
BATCH = 1 << 30  # bytes per process_vm_writev call on restore


def _is_shmem_path(path: str) -> bool:
    return path.startswith(("/dev/zero", "/memfd:", "/SYSV", "/dev/shm/")) or path.startswith("/memfd")


def classify(e: MapsEntry) -> str:
    if e.path in SPECIAL:
        return SPECIAL[e.path]
    if e.inode == 0:
        return "anon"
    if e.path.startswith(("/dev/zero", "/SYSV")) or e.path.startswith("/memfd:"):
        return "shmem"
    return "file"


# ---------------------------------------------------------------------------------- dump


def _save_object(ctx: DumpContext, e: MapsEntry, kind: str) -> MappedFile:
    """The object behind a shared-memory area or a deleted file, content saved once."""
    fd = os.open(f"/proc/{ctx.pid}/map_files/{e.start:x}-{e.end:x}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return ctx.save_object(fd, e.path.removesuffix(DELETED), kind, e.deleted)
    finally:
        os.close(fd)


def _file_object(ctx: DumpContext, e: MapsEntry) -> MappedFile:
    if e.deleted:
        return _save_object(ctx, e, "file")
    return ctx.file_object(e.path, e.dev, e.inode)


def dump(ctx: DumpContext, maps: list[MapsEntry]) -> list[Vma]:
    """Records for every area of ctx.pid. Which pages to store is decided by _plan_pages,
    now or (when a forked snapshot holds the memory) after the process was let go."""
    vmas: list[Vma] = []
    for e in maps:
        kind = classify(e)
        v = Vma(start=e.start, end=e.end, prot=e.prot, shared=e.shared, kind=kind,
                pgoff=e.pgoff, path=e.path, vmflags=sorted(e.vmflags))
        vmas.append(v)
        if kind == "shmem":
            obj_kind = "memfd" if e.path.startswith("/memfd:") else "shmem"
            v.file_id = _save_object(ctx, e, obj_kind).id
        elif kind == "file":
            v.file_id = _file_object(ctx, e).id
    if ctx.tracking is not None:
        _track(ctx, vmas)
    if ctx.pid in ctx.snapshots:
        ctx.planned[ctx.pid] = (vmas, None, None)
        return vmas
    runs = _plan_pages(ctx.pid, vmas)
    if ctx.tree_mode:
        # pages are copied later, for the whole tree (copy_planned): first capture which
        # physical page backs each page, since reading with process_vm_readv unshares pages
        # shared copy-on-write (GUP pinning does), and sharing is what lets a child's page
        # point at its parent's copy
        ctx.planned[ctx.pid] = (vmas, runs, _pagemap_entries(ctx.pid, runs))
        return vmas
    _copy_pages(ctx, runs)
    return vmas


def _plan_pages(pid: int, vmas: list[Vma]) -> list[tuple[Vma, int, int]]:
    """Runs (vma, addr, length) of the pages to store: present or swapped private anonymous
    pages (not the zero page), copy-on-write copies in private file and shmem mappings."""
    runs: list[tuple[Vma, int, int]] = []
    pm = PageMap(pid)
    try:
        for v in vmas:
            if v.kind in SPECIAL.values() or v.shared:
                continue  # shared areas: the content lives in the object
            for start, end, cat in pm.regions(v.start, v.end):
                if cat & PAGE_IS_PFNZERO:
                    continue
                if v.kind == "anon":
                    keep = cat & (PAGE_IS_PRESENT | PAGE_IS_SWAPPED)
                else:
                    keep = (cat & PAGE_IS_PRESENT and not cat & PAGE_IS_FILE) or cat & PAGE_IS_SWAPPED
                if keep:
                    runs.append((v, start, end - start))
    finally:
        pm.close()
    return runs


def _pagemap_entries(pid: int, runs: list[tuple[Vma, int, int]]) -> list[bytes]:
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return [os.pread(fd, n // PAGE_SIZE * 8, a // PAGE_SIZE * 8) for _, a, n in runs]
    finally:
        os.close(fd)


def copy_planned(ctx: DumpContext, pid: int, parent: int | None, source: int | None = None) -> None:
    """Copy the pages planned for pid (tree mode), pointing at the parent's copy where the
    page was shared copy-on-write with it at freeze time. source: the process to read the
    pages from (a snapshot forked from pid, or pid itself)."""
    vmas, runs, entries = ctx.planned[pid]
    if runs is None:  # planned from the snapshot, which holds the memory as it was
        runs = _plan_pages(source, vmas)
        entries = _pagemap_entries(source, runs)
        ctx.planned[pid] = (vmas, runs, entries)
    if ctx.keep_sharing:
        # the tree runs on: pages it shares copy-on-write are read through /proc/PID/mem,
        # which does not pin them (a pin would unshare them and double their memory)
        groups = _split_by_sharing(runs, entries)
    else:
        groups = [(runs, entries, False)]
    ctx.pid = source or pid
    ctx.mem_fd = os.open(f"/proc/{ctx.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for g_runs, g_entries, via_mem in groups:
            if parent is not None and parent in ctx.planned:
                g_runs = _share_with_parent(ctx, g_runs, g_entries, parent)
            if pid in ctx.dirty:
                g_runs = _refer_to_parent_image(ctx, pid, g_runs)
            _copy_pages(ctx, g_runs, via_mem=via_mem)
    finally:
        os.close(ctx.mem_fd)
    ctx.stored[pid] = sorted((r.vaddr, r.npages, r.offset) for v in vmas for r in v.pages
                             if r.file == "pages")


def _track(ctx: DumpContext, vmas: list[Vma]) -> None:
    """Incremental checkpoints (still frozen): which tracked pages were written since the
    parent image (re-arming the tracking), and arming it where asked and not yet armed."""
    from torpor.engine.resources import tracking

    pid = ctx.pid
    areas = tracking.tracked_areas(vmas)
    tracker = ctx.tracking.trackers.get(pid)
    if tracker is not None:
        written = tracking.written(pid, areas)
        if ctx.tracking.parent_pages.get(ctx.tracking.vpid.get(pid)) is not None:
            ctx.dirty[pid] = written


def _refer_to_parent_image(ctx: DumpContext, pid: int, runs: list[tuple[Vma, int, int]]
                           ) -> list[tuple[Vma, int, int]]:
    """Pages of tracked areas not written since the parent image point at their copy there
    (or at the image that copy points at); the rest is copied."""
    import bisect

    written = ctx.dirty[pid]
    parent = ctx.tracking.parent_pages[ctx.tracking.vpid[pid]]
    starts = [r[0] for r in parent]
    out: list[tuple[Vma, int, int]] = []
    for v, addr, length in runs:
        dirty = written.get(v.start)
        if dirty is None:  # an area that was not tracked: all of it is copied
            out.append((v, addr, length))
            continue
        dirty_starts = [ds for ds, _ in dirty]
        a = addr
        while a < addr + length:
            k = bisect.bisect_right(dirty_starts, a) - 1
            page_dirty = k >= 0 and a < dirty[k][1]
            ref = None
            if not page_dirty:
                k = bisect.bisect_right(starts, a) - 1
                if k >= 0:
                    pv, pn, po, pf = parent[k]
                    if a < pv + pn * PAGE_SIZE:
                        ref = (po + (a - pv), pf)
            if ref is None:
                if out and out[-1][0] is v and out[-1][1] + out[-1][2] == a:
                    out[-1] = (v, out[-1][1], out[-1][2] + PAGE_SIZE)
                else:
                    out.append((v, a, PAGE_SIZE))
            else:
                off, f = ref
                prev = v.pages[-1] if v.pages else None
                if (prev and prev.file == f and prev.vaddr + prev.npages * PAGE_SIZE == a
                        and prev.offset + prev.npages * PAGE_SIZE == off):
                    prev.npages += 1
                else:
                    v.pages.append(PageRun(a, 1, off, f))
            a += PAGE_SIZE
    return out


def _share_with_parent(ctx: DumpContext, runs: list[tuple[Vma, int, int]], entries: list[bytes],
                       parent: int) -> list[tuple[Vma, int, int]]:
    """Pages a child shared copy-on-write with its parent (same physical page in both, as
    /proc/PID/pagemap shows to root) point at the parent's copy in the page file instead of
    being stored again. Returns the runs that still need copying."""
    import array
    import bisect

    parent_runs = ctx.stored.get(parent) or []
    if not parent_runs:
        return runs
    # the parent's pagemap at freeze time, by virtual page
    p_vmas, p_runs, p_entries = ctx.planned[parent]
    p_pfn: dict[int, int] = {}
    for (_, a, _n), raw in zip(p_runs, p_entries, strict=True):
        for i, e in enumerate(array.array("Q", raw)):
            if e >> 63:
                p_pfn[a // PAGE_SIZE + i] = e
    starts = [r[0] for r in parent_runs]
    out: list[tuple[Vma, int, int]] = []
    for (v, addr, length), raw in zip(runs, entries, strict=True):
        ents = array.array("Q", raw)
        copy_from = None
        for i, e in enumerate(ents):
            a = addr + i * PAGE_SIZE
            off = None
            if e >> 63 and p_pfn.get(a // PAGE_SIZE) == e:
                k = bisect.bisect_right(starts, a) - 1
                if k >= 0:
                    pv, pn, po = parent_runs[k]
                    if a < pv + pn * PAGE_SIZE:
                        off = po + (a - pv)
            if off is None:
                if copy_from is None:
                    copy_from = a
                continue
            if copy_from is not None:
                out.append((v, copy_from, a - copy_from))
                copy_from = None
            prev = v.pages[-1] if v.pages else None
            if prev and prev.vaddr + prev.npages * PAGE_SIZE == a and prev.offset + prev.npages * PAGE_SIZE == off:
                prev.npages += 1
            else:
                v.pages.append(PageRun(a, 1, off))
        if copy_from is not None:
            out.append((v, copy_from, addr + length - copy_from))
    return out


# pagemap entry byte 7 (bits 56-63) -> bit 56, "page exclusively mapped": translate() makes the
# per-page flags one bytes object, and find() walks it run by run in C
_EXCLUSIVE = bytes(b & 1 for b in range(256))


def _split_by_sharing(runs: list[tuple[Vma, int, int]], entries: list[bytes]) -> list:
    """[(runs, entries, via_mem)]: pages mapped exclusively (pagemap bit 56), read with
    process_vm_readv, and the others, read through /proc/PID/mem."""
    out: dict[bool, tuple[list, list]] = {True: ([], []), False: ([], [])}
    for (v, addr, _length), raw in zip(runs, entries, strict=True):
        exclusive = raw[7::8].translate(_EXCLUSIVE)
        n, start = len(exclusive), 0
        while start < n:
            kind = exclusive[start]
            end = exclusive.find(b"\x00" if kind else b"\x01", start)
            if end < 0:
                end = n
            rs, es = out[bool(kind)]
            rs.append((v, addr + start * PAGE_SIZE, (end - start) * PAGE_SIZE))
            es.append(raw[start * 8 : end * 8])
            start = end
    return [(out[True][0], out[True][1], False), (out[False][0], out[False][1], True)]


def _copy_pages(ctx: DumpContext, runs: list[tuple[Vma, int, int]], via_mem: bool = False) -> None:
    """Copy runs into the page file: batches of up to CHUNK bytes are read (process_vm_readv,
    or /proc/PID/mem reads) into one of two buffers while a writer thread appends the other
    to the page file, so reading and writing overlap (both release the GIL)."""
    import queue
    import threading

    buffers = [ctx.buffer(0), ctx.buffer(1)]
    views = [memoryview(b) for b, _ in buffers]
    free: queue.SimpleQueue = queue.SimpleQueue()
    for i in range(len(buffers)):
        free.put(i)
    filled: queue.SimpleQueue = queue.SimpleQueue()
    failure: list[BaseException] = []
    expected = ctx.pages.size

    def writer() -> None:
        while (item := filled.get()) is not None:
            idx, size, offset = item
            try:
                if not failure:
                    got = ctx.pages.write(views[idx][:size])
                    if got != offset:
                        raise OSError(5, f"page file offset {got} where {offset} was expected")
            except BaseException as err:  # noqa: BLE001 - handed to the reading thread
                failure.append(err)
            free.put(idx)

    thread = threading.Thread(target=writer, name="torpor-page-writer", daemon=True)
    thread.start()
    batch: list[tuple[Vma, int, int]] = []
    size = 0

    def flush() -> None:
        nonlocal batch, size, expected
        if not batch:
            return
        idx = free.get()
        if failure:
            raise failure[0]
        view = views[idx]
        if via_mem:
            pos = 0
            for _, a, n in batch:
                got = 0
                while got < n:
                    k = os.preadv(ctx.mem_fd, [view[pos + got : pos + n]], a + got)
                    if k <= 0:
                        raise OSError(5, f"cannot read memory of {ctx.pid} at {a + got:#x}")
                    got += k
                pos += n
        else:
            vm.read_runs_into(ctx.pid, ctx.mem_fd, [(a, n) for _, a, n in batch], buffers[idx][1], view)
        base = expected
        filled.put((idx, size, base))
        expected += size
        pos = 0
        for v, a, n in batch:
            prev = v.pages[-1] if v.pages else None
            if prev and prev.vaddr + prev.npages * PAGE_SIZE == a and prev.offset + prev.npages * PAGE_SIZE == base + pos:
                prev.npages += n // PAGE_SIZE
            else:
                v.pages.append(PageRun(a, n // PAGE_SIZE, base + pos))
            pos += n
        batch, size = [], 0

    try:
        for v, a, n in runs:
            while n:
                take = min(n, CHUNK - size)
                batch.append((v, a, take))
                size += take
                a, n = a + take, n - take
                if size == CHUNK or len(batch) >= vm.IOV_MAX:
                    flush()
        flush()
    finally:
        filled.put(None)
        thread.join()
    if failure:
        raise failure[0]


# ------------------------------------------------------------------------------- restore


def mmap_flags(v: Vma) -> int:
    flags = MAP_FIXED | (MAP_SHARED if v.shared else MAP_PRIVATE)
    if v.kind == "anon":
        flags |= MAP_ANONYMOUS
    if "gd" in v.vmflags:
        flags |= MAP_GROWSDOWN
    if "nr" in v.vmflags:
        flags |= MAP_NORESERVE
    return flags


def _was_writable(v: Vma) -> bool:
    """A private area that is not writable now but was (accountable: "ac"), e.g. a RELRO
    segment the loader relocated and then made read-only."""
    return not v.shared and not v.prot & PROT_WRITE and "ac" in v.vmflags


def restore_areas(t: TaskRestore, vmas: list[Vma]) -> None:
    """Map every area (except the vDSO/vvar, moved separately) at its address: one batch of
    injected syscalls when the task has a batch area (one round trip for all of them).

    An area that was writable once is mapped writable and given its saved protection by
    restore_pages once its pages are in, as the loader did: the kernel then accounts it
    ("ac") as before, and its pages go in with process_vm_writev rather than one
    /proc/PID/mem write per run."""
    inj = t.inj
    batch = inj.batch() if inj.batch_area is not None else None
    call = batch.add if batch is not None else inj.call
    special = set(SPECIAL.values())
    for v in vmas:
        if v.kind in special:
            continue
        length = v.end - v.start
        prot = v.prot
        if _was_writable(v):
            prot |= PROT_WRITE
            t.reprotect.append(v)
        if v.kind == "anon":
            call("mmap", v.start, length, prot, mmap_flags(v), -1, 0)
        else:
            fd = t.file_fds.get(v.file_id)
            if fd is None:
                raise TorporError(f"process {t.pid}: no file for mapping {v.path or 'anonymous'} at {v.start:#x}")
            call("mmap", v.start, length, prot, mmap_flags(v) & ~MAP_ANONYMOUS, fd, v.pgoff)
        if not _MADV_FLAGS.isdisjoint(v.vmflags):
            for flag, advice in MADV_FOR_FLAG.items():
                if flag in v.vmflags:
                    call("madvise", v.start, length, advice, check=False)
    if batch is not None:
        batch.run()


PARALLEL_MIN = 16 << 20  # restore_pages splits the copy between threads above this size


def restore_pages(t: TaskRestore, vmas: list[Vma]) -> None:
    """Write stored pages into the mapped areas (from this image's page file, or from a
    parent image's for pages an incremental image did not store again).

    Writable areas are filled with process_vm_writev: the copy is bounded by allocating the
    task's fresh pages, so above PARALLEL_MIN it is split into one contiguous share per CPU
    (at most 4), written by as many threads (the syscall releases the GIL)."""
    runs: list[tuple[int, int, int]] = []  # (remote address, local address, bytes)
    opened = {id(v) for v in t.reprotect}  # mapped writable for now by restore_areas
    for v in vmas:
        writable = bool(v.prot & PROT_WRITE) or id(v) in opened
        for r in v.pages:
            n = r.npages * PAGE_SIZE
            src, src_addr = t.sources[r.file]
            if writable:
                runs.append((r.vaddr, src_addr + r.offset, n))
            else:
                data = src[r.offset : r.offset + n]
                off = 0
                while off < n:
                    off += os.pwrite(t.mem_fd, data[off:], r.vaddr + off)
    _write_parallel(runs, lambda share: _write_runs(t.pid, share))
    _reprotect(t, t.reprotect)


def _reprotect(t: TaskRestore, vmas: list[Vma]) -> None:
    """The saved protection of every area restore_areas mapped writable (one batch); a
    lazy restore's areas too (the page server fills read-only areas as well)."""
    if not vmas:
        return
    inj = t.inj
    batch = inj.batch() if inj.batch_area is not None else None
    for v in vmas:
        if batch is not None:
            batch.add("mprotect", v.start, v.end - v.start, v.prot)
        else:
            inj.call("mprotect", v.start, v.end - v.start, v.prot)
    if batch is not None:
        batch.run()
    t.reprotect.clear()


def fill_by_uffd(fd: int, runs: list[tuple[int, int, int]]) -> None:
    """Put runs [(remote, local, bytes)] into areas registered with userfaultfd `fd` by
    UFFDIO_COPY: the kernel allocates each page and copies into it, where process_vm_writev
    first has a zeroed page faulted in (256 MiB here: 2796 against 2128 MiB/s a thread).
    Split between threads as restore_pages' writes are."""
    _write_parallel(runs, lambda share: _copy_runs(fd, share), align=PAGE_SIZE)


def _copy_runs(fd: int, runs: list[tuple[int, int, int]]) -> None:
    from torpor.engine.linux import uffd

    for a, src, n in runs:
        done = 0
        while done < n:
            got = uffd.copy(fd, a + done, src + done, n - done)
            if got <= 0:  # a page there already, or the area gone: neither may happen here
                raise TorporError(f"cannot put restored memory at {a + done:#x}: UFFDIO_COPY "
                                  f"failed ({os.strerror(-got) if got < 0 else 'no progress'})")
            done += got


def _write_parallel(runs: list[tuple[int, int, int]],
                    write: Callable[[list[tuple[int, int, int]]], None], align: int = 1) -> None:
    """Runs [(remote, local, bytes)] put in by write(share), split into one contiguous share
    per CPU (at most 4) above PARALLEL_MIN bytes, at multiples of align."""
    total = sum(n for _, _, n in runs)
    if not total:
        return
    workers = max(1, min(4, len(os.sched_getaffinity(0)))) if total >= PARALLEL_MIN else 1
    share = -(-total // workers // align) * align  # UFFDIO_COPY takes whole pages only
    shares: list[list[tuple[int, int, int]]] = [[]]
    filled = 0
    for a, src, n in runs:
        while n:
            if filled >= share and len(shares) < workers:
                shares.append([])
                filled = 0
            take = min(n, share - filled) if len(shares) < workers else n
            shares[-1].append((a, src, take))
            filled += take
            a, src, n = a + take, src + take, n - take
    if len(shares) == 1:
        write(shares[0])
        return
    from torpor.image.workers import Workers  # not concurrent.futures: +5 ms of imports

    pool = Workers(len(shares) - 1, "torpor-pages")
    try:
        jobs = [pool.submit(write, sh) for sh in shares[1:]]
        write(shares[0])  # this thread writes a share too
        for job in jobs:
            job.result()
    finally:
        pool.shutdown()  # no writer may outlive a failed restore


def _write_runs(pid: int, runs: list[tuple[int, int, int]]) -> None:
    """process_vm_writev of runs [(remote, local, bytes)], in calls of at most IOV_MAX
    iovecs and BATCH bytes (one call moves at most MAX_RW_COUNT, 2 GiB - 4 KiB)."""
    wv: list[tuple[int, int]] = []
    local: list[tuple[int, int]] = []
    pending = 0

    def flush() -> None:
        nonlocal pending
        if not wv:
            return
        done = vm.writev(pid, local, wv)
        if done != pending:
            raise TorporError(f"process {pid}: short write of restored memory ({done} of {pending} bytes)")
        wv.clear()
        local.clear()
        pending = 0

    for a, src, n in runs:
        for off in range(0, n, BATCH):
            m = min(BATCH, n - off)
            wv.append((a + off, m))
            local.append((src + off, m))
            pending += m
            if len(wv) >= vm.IOV_MAX or pending >= BATCH:
                flush()
    flush()

"""Lazy restore: serve a restored process's memory on demand through userfaultfd.

The restore registers each private anonymous area that has stored pages for missing-page
faults (the userfaultfd is created inside the process by an injected syscall and copied out
with pidfd_getfd), lets the process run at once, and leaves this server behind: it answers
faults with UFFDIO_COPY from the image (a window around the faulting page), streams every
other page in the background, and exits once all pages are in. Non-cooperative events keep
its view right: a fork hands it the child's userfaultfd (the child still misses the same
pages), mremap moves pending pages, munmap and MADV_DONTNEED drop them (a later fault there
gets a zero page, as the kernel would give).

If the server died early, the kernel would fill the missing pages with zeros: it runs in its
own session, ignores SIGHUP/SIGINT, and holds no terminal.
"""

from __future__ import annotations

import bisect
import os
import select
import sys

from torpor.engine.linux import sys as lx
from torpor.engine.linux import uffd
from torpor.engine.linux.procfs import close_fds_except
from torpor.engine.linux.sys import PAGE_SIZE

FAULT_WINDOW = 16 * PAGE_SIZE  # pages copied around a faulting page
STREAM_CHUNK = 2 << 20  # bytes copied per background step


class Space:
    """One address space being filled: its userfaultfd and the pages still to copy, as
    sorted, non-overlapping [vaddr, length, source address] runs (the source is the page
    data mapped in this process, inherited from the restorer)."""

    def __init__(self, fd: int, runs: list[list[int]]) -> None:
        self.fd = fd
        self.runs = sorted(runs)

    def find(self, addr: int) -> int:
        i = bisect.bisect_right([r[0] for r in self.runs], addr) - 1
        if i >= 0 and addr < self.runs[i][0] + self.runs[i][1]:
            return i
        return -1

    def take(self, i: int, start: int, end: int) -> tuple[int, int, int] | None:
        """Remove [start, end) from run i; return (vaddr, length, source address) removed."""
        va, ln, off = self.runs[i]
        start, end = max(start, va), min(end, va + ln)
        if start >= end:
            return None
        pieces = []
        if start > va:
            pieces.append([va, start - va, off])
        if end < va + ln:
            pieces.append([end, va + ln - end, off + (end - va)])
        self.runs[i : i + 1] = pieces
        return start, end - start, off + (start - va)

    def put_back(self, vaddr: int, length: int, src: int) -> None:
        bisect.insort(self.runs, [vaddr, length, src])

    def cut(self, lo: int, hi: int, by_source: bool = False) -> tuple[list, list]:
        """The runs split at [lo, hi) of their address (or of their source address): the
        pieces inside and those outside, each in the runs' order."""
        inside, outside = [], []
        for va, ln, src in self.runs:
            base = src if by_source else va
            s, e = max(base, lo), min(base + ln, hi)
            if s >= e:
                outside.append([va, ln, src])
                continue
            if base < s:
                outside.append([va, s - base, src])
            inside.append([va + (s - base), e - s, src + (s - base)])
            if e < base + ln:
                outside.append([va + (e - base), base + ln - e, src + (e - base)])
        return inside, outside

    def drop(self, start: int, end: int) -> None:
        self.runs = self.cut(start, end)[1]

    def move(self, old: int, new: int, length: int) -> None:
        """The process mremapped [old, old + length) to new: pending pages there follow (a
        run only partly inside is split: its inside part moves, the rest stays)."""
        inside, outside = self.cut(old, old + length)
        self.runs = sorted(outside + [[va + (new - old), ln, src] for va, ln, src in inside])


class Server:
    def __init__(self, spaces: list[Space]) -> None:
        self.spaces = {s.fd: s for s in spaces}

    def _copy(self, space: Space, vaddr: int, length: int, src: int) -> None:
        done = 0
        while done < length:
            n = uffd.copy(space.fd, vaddr + done, src + done, length - done)
            if n == -17:  # EEXIST on the first page: already there, skip it
                done += PAGE_SIZE
            elif n == -11:
                # EAGAIN: the address space is changing (a fork, mremap or munmap event is
                # pending). The rest goes back to the pending runs: after the event a forked
                # child must still find these pages missing, and they must not be lost
                space.put_back(vaddr + done, length - done, src + done)
                return
            elif n < 0:
                return  # unmapped meanwhile, or the process is gone
            else:
                done += n

    def _fault(self, space: Space, addr: int) -> None:
        page = addr & ~(PAGE_SIZE - 1)
        i = space.find(page)
        if i < 0:
            uffd.zeropage(space.fd, page, PAGE_SIZE)  # never stored, or dropped: zeros
            return
        start = max(space.runs[i][0], page - FAULT_WINDOW // 2)
        got = space.take(i, start, start + FAULT_WINDOW)
        if got:
            self._copy(space, *got)

    def _events(self, space: Space) -> None:
        for event, args in uffd.read_events(space.fd):
            if event == uffd.EVENT_PAGEFAULT:
                self._fault(space, args[1])
            elif event == uffd.EVENT_FORK:
                child = Space(args[0], [list(r) for r in space.runs])
                self.spaces[child.fd] = child
            elif event == uffd.EVENT_REMAP:
                space.move(*args)
            elif event in (uffd.EVENT_REMOVE, uffd.EVENT_UNMAP):
                space.drop(*args)

    def run(self) -> None:
        poller = select.poll()
        registered: set[int] = set()
        while True:
            for fd in self.spaces:
                if fd not in registered:
                    poller.register(fd, select.POLLIN)
                    registered.add(fd)
            busy = [s for s in self.spaces.values() if s.runs]
            if not busy:
                return
            for fd, ev in poller.poll(0):
                if ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                    self.spaces[fd].runs = []  # the process has gone
                    continue
                self._events(self.spaces[fd])
            for space in busy:  # background: the next chunk of each space
                if space.runs:
                    got = space.take(0, space.runs[0][0], space.runs[0][0] + STREAM_CHUNK)
                    if got:
                        self._copy(space, *got)


def _verify_in_background(image_paths: list[str], victims: list[int]):
    """A lazy restore starts before the page checksums are checked; they are checked here,
    on a thread alongside serving. A damaged page file kills the restored tree rather than
    let it run on wrong memory."""
    from torpor.image.store import PageCheck

    def kill(_err: BaseException) -> None:
        for pid in victims:
            try:
                os.kill(pid, lx.SIGKILL)
            except OSError:
                pass

    return PageCheck(image_paths, on_error=kill)


def start_server(spaces: list[Space], keep_fds: set[int], image_paths: list[str] | None = None,
                 victims: list[int] | None = None, own_child: bool = False) -> int:
    """Fork the server (detached, in its own session); returns the PID of the child to reap.
    The server proper is a grandchild (the child leaves at once), or with own_child the
    child itself, for a caller about to exit (the server is reparented then). The caller
    closes its own copies of the userfaultfds afterwards."""
    pid = os.fork()
    if pid:
        return pid
    try:
        if not own_child and os.fork():
            os._exit(0)
        os.setsid()  # its own session: no terminal's hangup reaches it (it opens no tty)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        keep = keep_fds | {0, 1, 2} | {s.fd for s in spaces}
        close_fds_except(keep)
        # the signal module's own core: `signal` would import enum first (~5 ms during which
        # the restored process's faults wait)
        import _signal

        _signal.signal(lx.SIGHUP, _signal.SIG_IGN)
        _signal.signal(lx.SIGINT, _signal.SIG_IGN)
        # the checker thread hashes in 8 MiB steps (~1.5 ms each): a fault waits for the GIL
        # at most about one step, not the default 5 ms switch interval on top
        sys.setswitchinterval(0.0002)
        verifier = _verify_in_background(image_paths, victims or []) if image_paths else None
        server = Server(spaces)
        server.run()
        for fd in list(server.spaces):  # every page is in: let the kernel handle faults again
            os.close(fd)
        if verifier is not None:
            verifier.join()
    finally:
        os._exit(0)

"""Which pages of an area hold data: PAGEMAP_SCAN (6.7+), with /proc/PID/pagemap as fallback."""

from __future__ import annotations

import ctypes
import fcntl
import os

from torpor.engine.linux.sys import PAGE_SIZE

PAGE_IS_WPALLOWED = 1 << 0
PAGE_IS_WRITTEN = 1 << 1
PAGE_IS_FILE = 1 << 2
PAGE_IS_PRESENT = 1 << 3
PAGE_IS_SWAPPED = 1 << 4
PAGE_IS_PFNZERO = 1 << 5
PAGE_IS_HUGE = 1 << 6
ALL_CATEGORIES = (1 << 7) - 1

PM_SCAN_WP_MATCHING = 1 << 0
PM_SCAN_CHECK_WPASYNC = 1 << 1


class PageRegion(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64), ("categories", ctypes.c_uint64)]


class PmScanArg(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("start", ctypes.c_uint64),
        ("end", ctypes.c_uint64),
        ("walk_end", ctypes.c_uint64),
        ("vec", ctypes.c_uint64),
        ("vec_len", ctypes.c_uint64),
        ("max_pages", ctypes.c_uint64),
        ("category_inverted", ctypes.c_uint64),
        ("category_mask", ctypes.c_uint64),
        ("category_anyof_mask", ctypes.c_uint64),
        ("return_mask", ctypes.c_uint64),
    ]


PAGEMAP_SCAN = (3 << 30) | (ctypes.sizeof(PmScanArg) << 16) | (ord("f") << 8) | 16

_VEC_LEN = 4096
_scan_ok: bool | None = None


class PageMap:
    """/proc/PID/pagemap of one process."""

    def __init__(self, pid: int) -> None:
        self.fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        self._vec = (PageRegion * _VEC_LEN)()

    def close(self) -> None:
        os.close(self.fd)

    def regions(
        self, start: int, end: int, anyof: int = PAGE_IS_PRESENT | PAGE_IS_SWAPPED, flags: int = 0
    ) -> list[tuple[int, int, int]]:
        """Runs (start, end, categories) in [start, end) having any category in `anyof`;
        categories reported: file, present, swapped, pfnzero."""
        global _scan_ok
        if _scan_ok is not False:
            try:
                return self._scan(start, end, anyof, flags)
            except OSError:
                if _scan_ok:
                    raise
                _scan_ok = False
        return self._read(start, end, anyof)

    def _scan(self, start: int, end: int, anyof: int, flags: int) -> list[tuple[int, int, int]]:
        global _scan_ok
        out: list[tuple[int, int, int]] = []
        ret_mask = PAGE_IS_FILE | PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO | PAGE_IS_WRITTEN
        while start < end:
            arg = PmScanArg(
                size=ctypes.sizeof(PmScanArg), flags=flags, start=start, end=end,
                vec=ctypes.addressof(self._vec), vec_len=_VEC_LEN,
                category_anyof_mask=anyof, return_mask=ret_mask,
            )
            n = fcntl.ioctl(self.fd, PAGEMAP_SCAN, arg)
            _scan_ok = True
            vec = self._vec
            for i in range(n):
                r = vec[i]
                # with the vector full, walk_end may lie before the end of the last region
                # returned: the next call reports those pages again (seen: 515 pages twice
                # in a 128 MiB area, which made engine/cow.py plan them twice)
                lo = max(r.start, out[-1][1]) if out else r.start
                if lo < r.end:
                    out.append((lo, r.end, r.categories))
            if arg.walk_end >= end or arg.walk_end <= start:
                break
            start = arg.walk_end
        return out

    def _read(self, start: int, end: int, anyof: int) -> list[tuple[int, int, int]]:
        """Fallback: decode pagemap entries (slow in Python, kept for old kernels)."""
        npages = (end - start) // PAGE_SIZE
        raw = os.pread(self.fd, npages * 8, start // PAGE_SIZE * 8)
        ents = memoryview(raw).cast("Q")
        out: list[tuple[int, int, int]] = []
        for i, e in enumerate(ents):
            cat = 0
            if e >> 63 & 1:
                cat |= PAGE_IS_PRESENT
            if e >> 62 & 1:
                cat |= PAGE_IS_SWAPPED
            if e >> 61 & 1:
                cat |= PAGE_IS_FILE
            if not cat & anyof:
                continue
            a = start + i * PAGE_SIZE
            if out and out[-1][1] == a and out[-1][2] == cat:
                out[-1] = (out[-1][0], a + PAGE_SIZE, cat)
            else:
                out.append((a, a + PAGE_SIZE, cat))
        return out

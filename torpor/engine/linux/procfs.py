"""Readers for /proc/PID files."""

from __future__ import annotations

import os


class MapsEntry:
    """One line of /proc/PID/maps (and its VmFlags from smaps, when read)."""

    __slots__ = ("start", "end", "perms", "pgoff", "dev", "inode", "path", "vmflags", "rss",
                 "rss_shared")

    def __init__(self, start: int, end: int, perms: str, pgoff: int, dev: tuple[int, int],
                 inode: int, path: str, vmflags: set[str] | None = None) -> None:
        self.start, self.end, self.perms, self.pgoff = start, end, perms, pgoff
        self.dev, self.inode = dev, inode
        self.path = path  # "" for anonymous, "[heap]", "/usr/lib/x.so", "/memfd:x (deleted)"
        self.vmflags = vmflags if vmflags is not None else set()
        # from smaps: bytes resident, and of those mapped by another process too (0 from maps)
        self.rss = self.rss_shared = 0

    def __repr__(self) -> str:
        return f"MapsEntry({self.start:#x}-{self.end:#x} {self.perms} {self.path!r})"

    @property
    def shared(self) -> bool:
        return self.perms[3] == "s"

    @property
    def prot(self) -> int:
        return (
            (1 if self.perms[0] == "r" else 0)
            | (2 if self.perms[1] == "w" else 0)
            | (4 if self.perms[2] == "x" else 0)
        )

    @property
    def deleted(self) -> bool:
        return self.path.endswith(" (deleted)")


def _parse_maps_line(line: str) -> MapsEntry:
    parts = line.split(None, 5)
    lo, hi = parts[0].split("-")
    major, minor = parts[3].split(":")
    return MapsEntry(
        start=int(lo, 16),
        end=int(hi, 16),
        perms=parts[1],
        pgoff=int(parts[2], 16),
        dev=(int(major, 16), int(minor, 16)),
        inode=int(parts[4]),
        path=parts[5].rstrip("\n") if len(parts) > 5 else "",
    )


def read_maps(pid: int, with_flags: bool = True) -> list[MapsEntry]:
    """VMAs of pid; with_flags reads smaps for VmFlags (growsdown, dontfork, ...)."""
    if not with_flags:
        with open(f"/proc/{pid}/maps") as f:
            return [_parse_maps_line(line) for line in f]
    out: list[MapsEntry] = []
    with open(f"/proc/{pid}/smaps") as f:
        text = f.read()
    # ~25 lines an area: only the area's own line (it starts with its lowercase-hex address;
    # every field line starts with a capital), Rss, Shared_* and VmFlags are looked at
    for line in text.split("\n"):
        c = line[:1]
        if c and (c <= "9" or "a" <= c <= "f"):
            out.append(_parse_maps_line(line))
        elif c == "V" and line.startswith("VmFlags:"):
            out[-1].vmflags = set(line.split()[1:])
        elif c == "R" and line.startswith("Rss:"):
            out[-1].rss = int(line.split()[1]) * 1024
        elif c == "S" and line.startswith("Shared_"):  # Shared_Clean, _Dirty, _Hugetlb
            out[-1].rss_shared += int(line.split()[1]) * 1024
    return out


def read_bracketed_areas(pid: int) -> dict[str, tuple[int, int]]:
    """(start, end) of the areas of /proc/PID/maps named in brackets ([vdso], [vvar], [stack],
    [heap], [anon:x]) by name; only their lines are parsed (a Python's maps has ~400 lines)."""
    with open(f"/proc/{pid}/maps", "rb") as f:
        data = f.read()
    out: dict[str, tuple[int, int]] = {}
    for line in data.split(b"\n"):
        name = _bracketed_name(line)
        if name:
            out[name] = _range(line)
    return out


def _bracketed_name(line: bytes) -> str | None:
    """The [name] of a maps line naming its area so, else None (a file's path starts with /,
    so a file named "x [vdso]" is not taken for one)."""
    if line.endswith(b"]"):
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith(b"["):
            return parts[5].decode()
    return None


def _range(line: bytes) -> tuple[int, int]:
    lo, _, rest = line.partition(b"-")
    return int(lo, 16), int(rest[: rest.index(b" ")], 16)


def read_layout(pid: int) -> tuple[list[tuple[int, int]], dict[str, tuple[int, int]]]:
    """Every area's (start, end), and the bracketed ones by name as read_bracketed_areas
    gives them: what a search for free address space needs, at a fraction of read_maps'
    cost (it parses every field of every line)."""
    with open(f"/proc/{pid}/maps", "rb") as f:
        data = f.read()
    ranges: list[tuple[int, int]] = []
    named: dict[str, tuple[int, int]] = {}
    for line in data.split(b"\n"):
        if not line:
            continue
        area = _range(line)
        ranges.append(area)
        name = _bracketed_name(line)
        if name:
            named[name] = area
    return ranges, named


def read_stat(pid: int, tid: int | None = None) -> list[str]:
    """Fields of /proc/PID/stat, 1-based as in proc(5): fields[1] is pid, fields[2] comm."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    with open(path, "rb") as f:
        raw = f.read().decode("utf-8", "surrogateescape")
    lpar, rpar = raw.index("("), raw.rindex(")")
    return ["", raw[:lpar].strip(), raw[lpar + 1 : rpar], *raw[rpar + 2 :].split()]


def read_status(pid: int, tid: int | None = None) -> dict[str, str]:
    path = f"/proc/{pid}/task/{tid}/status" if tid else f"/proc/{pid}/status"
    out: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def list_tids(pid: int) -> list[int]:
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))


def read_fdinfo(pid: int, fd: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    return out


def read_auxv(pid: int) -> bytes:
    with open(f"/proc/{pid}/auxv", "rb") as f:
        return f.read()


def read_comm(pid: int, tid: int | None = None) -> str:
    path = f"/proc/{pid}/task/{tid}/comm" if tid else f"/proc/{pid}/comm"
    with open(path, "rb") as f:
        return f.read().rstrip(b"\n").decode("utf-8", "surrogateescape")


def start_time(pid: int) -> int:
    """Start time in clock ticks (field 22): tells a PID from its reuse."""
    return int(read_stat(pid)[22])


def children(pid: int, tids: list[int] | None = None) -> list[int]:
    """Direct children of the threads of pid (all of them by default; CONFIG_PROC_CHILDREN)."""
    out: list[int] = []
    for tid in list_tids(pid) if tids is None else tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            pass
    return out


def last_cap(default: int = 40) -> int:
    """The highest capability number this kernel knows (default when /proc is not there)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return default


def close_fds_except(keep: set[int]) -> None:
    """Close every fd of this process that is not in keep."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass

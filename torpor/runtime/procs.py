"""Process identity from /proc: a PID plus its start time names one process, even after the
PID is reused. Import-light (os only)."""

from __future__ import annotations


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state letter, start time in clock ticks, ppid) or None if there is no such process."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2:].split()
    return rest[0].decode(), int(rest[19]), int(rest[1])


def start_time(pid: int) -> int:
    st = proc_stat(pid)
    return st[1] if st else 0


def alive(pid: int, start: int = 0) -> bool:
    """True if pid runs (not a zombie) and, when start is given, is the same process."""
    st = proc_stat(pid)
    if st is None or st[0] in ("Z", "X", "x"):
        return False
    return not start or st[1] == start


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return ""
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")

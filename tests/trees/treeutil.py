"""Helpers for process-tree tests: the tree under a root as /proc shows it, the tree an image
holds, checkpoint/restore of a whole tree, and cleanup of every process a test started or
restored (killed by PID, only while it still is the same process, reaped by us as subreaper).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from helpers import checkpoint, proc_stat, start_time, torpor

# pid -> (ppid, pgid, sid)
View = dict[int, tuple[int, int, int]]


def reap_all() -> None:
    """Reap every zombie child of ours (orphans re-parented to pytest, the subreaper)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def all_stats() -> dict[int, list[str]]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def descendants(root: int, stats: dict[int, list[str]] | None = None) -> list[int]:
    """ROOT and all its descendants (by parent links in /proc), sorted."""
    stats = stats if stats is not None else all_stats()
    children: dict[int, list[int]] = {}
    for pid, st in stats.items():
        children.setdefault(int(st[3]), []).append(pid)
    out, todo = [], [root] if root in stats else []
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return sorted(out)


def tree_view(root: int, with_state: bool = False) -> dict[int, tuple]:
    """pid -> (ppid, pgid, sid[, state]) of ROOT and its descendants."""
    stats = all_stats()
    out: dict[int, tuple] = {}
    for pid in descendants(root, stats):
        st = stats[pid]
        rec = (int(st[3]), int(st[4]), int(st[5]))
        out[pid] = (*rec, st[2]) if with_state else rec
    return out


def image_tree(image: Path) -> list[dict]:
    """The processes an image holds (pid, ppid, pgid, sid, comm, zombie, exit_status, ...)."""
    res = torpor("image", "show", image, "--format", "json")
    return json.loads(res.stdout)["tree"]["processes"]


def image_json(image: Path) -> dict:
    """The whole tree record of an image (processes, files, ...)."""
    res = torpor("image", "show", image, "--format", "json")
    return json.loads(res.stdout)["tree"]


def pipe_bytes_in_flight(image: Path) -> int:
    """Bytes saved in the image's pipes (each pipe counted once)."""
    per_inode = {}
    for f in image_json(image)["files"]:
        if "data_len" in f:
            per_inode[f["inode"]] = f["data_len"]
    return sum(per_inode.values())


def image_view(image: Path) -> View:
    return {p["pid"]: (p["ppid"], p["pgid"], p["sid"]) for p in image_tree(image)}


def compare_views(expected: View, actual: dict[int, tuple], root: int, what: str) -> list[str]:
    """Differences in ppid/pgid/sid for PIDs present in both (the root's parent is ignored:
    it is the restorer's subreaper or init after a restore)."""
    out = []
    for pid in sorted(set(expected) & set(actual)):
        e, a = expected[pid], tuple(actual[pid][:3])
        if pid == root:
            e, a = e[1:], a[1:]
        if e != a:
            out.append(f"{what}: pid {pid}: expected (ppid,pgid,sid)={expected[pid]}, got {actual[pid][:3]}")
    return out


class Tracker:
    """Every PID a test started or restored, with its start time: kill_all() SIGKILLs those
    that are still the same process and waits until every one of their PIDs is free."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.known: dict[int, int | None] = {}

    def add(self, pids: Iterable[int]) -> None:
        for pid in pids:
            t = start_time(pid)
            if t is not None:
                self.known[pid] = t

    def add_tree(self, root: int) -> list[int]:
        pids = descendants(root)
        self.add(pids)
        return pids

    def start(self, argv: Sequence[object], out: str = "out.log", append: bool = True,
              **kw) -> subprocess.Popen:
        """Start ARGV in its own session; stdin /dev/null, stdout+stderr to LOGDIR/OUT
        (opened with O_APPEND unless APPEND is false)."""
        log = self.logdir / out
        with open(log, "ab" if append else "wb") as lf:
            p = subprocess.Popen(
                [str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                start_new_session=True, close_fds=True, **kw,
            )  # fmt: skip
        self.add([p.pid])
        return p

    def ours(self, pid: int) -> bool:
        return pid in self.known and start_time(pid) == self.known[pid] is not None

    def kill_all(self, timeout: float = 10.0) -> None:
        for pid in list(self.known):
            # refresh: children forked since registration (same session) are ours too
            if self.ours(pid):
                self.add(descendants(pid))
        for pid in list(self.known):
            if self.ours(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        wait_pids_free(self.known, timeout)
        self.known.clear()


def wait_pids_free(pids: Iterable[int], timeout: float = 10.0) -> None:
    """Wait until none of PIDS exists any more (reaping our zombie children meanwhile)."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        reap_all()
        left = [p for p in pids if os.path.exists(f"/proc/{p}")]
        if not left:
            return
        if time.monotonic() > deadline:
            info = {p: (st and st[1:6]) for p in left[:5] for st in [proc_stat(p)]}
            raise AssertionError(f"pids still exist after {timeout}s: {info}")
        time.sleep(0.01)


def checkpoint_tree(tracker: Tracker, root: int, image: Path, *extra: object) -> View:
    """Checkpoint ROOT's tree (killing it unless --leave-running is in EXTRA); return the tree
    the image holds. Without --leave-running, wait until all its PIDs are free again."""
    tracker.add_tree(root)
    checkpoint(root, image, *extra)
    view = image_view(image)
    assert root in view, f"image has no root {root}: {sorted(view)}"
    if "--leave-running" not in extra:
        wait_pids_free(view, timeout=10)
    return view


def restore_tree(tracker: Tracker, image: Path, root: int, timeout: float = 20.0) -> dict[int, tuple]:
    """Restore IMAGE; it must come back as ROOT with ROOT's parent pytest (subreaper) or init.
    Returns the tree /proc shows right after (pid -> (ppid, pgid, sid, state))."""
    busy = [p for p in image_view(image) if os.path.exists(f"/proc/{p}")]
    assert not busy, f"pids of the image in use before restore: {busy}"
    try:
        res = torpor("restore", "--image-path", image, timeout=timeout)
        words = res.stdout.split()
        assert words and words[-1].isdigit(), f"restore printed no pid: {res.stdout!r} {res.stderr!r}"
        new = int(words[-1])
    except AssertionError as e:
        now = {p: (st and st[1:6]) for p in image_view(image) for st in [proc_stat(p)] if st}
        raise AssertionError(f"{e}\nimage pids: {sorted(image_view(image))}; "
                             f"of them existing now: {now}") from None
    finally:
        # also half-restored processes are ours to clean up
        tracker.add(p for p in image_view(image) if os.path.exists(f"/proc/{p}"))
    assert new == root, f"restored as pid {new}, expected {root}"
    st = proc_stat(root)
    assert st is not None, "the restored root is gone"
    assert int(st[3]) in (1, os.getpid()), f"restored root has parent {st[3]}, not init/pytest"
    view = tree_view(root, with_state=True)
    tracker.add(view)
    return view


def assert_tree_like(image: View, after: dict[int, tuple], root: int, what: str) -> None:
    diffs = compare_views(image, after, root, what)
    assert not diffs, "\n".join(diffs)


def assert_all_back(image: View, after: dict[int, tuple], root: int) -> None:
    """Every live process of the image is back (right after restore) with the same links."""
    missing = sorted(set(image) - set(after))
    assert not missing, f"not restored: {missing}; image {image}; after {after}"
    assert_tree_like(image, after, root, "after restore")


def assert_running_untraced(pids: Iterable[int]) -> None:
    """Each of PIDS runs freely: alive, not stopped, no tracer attached to any thread."""
    for pid in pids:
        st = proc_stat(pid)
        assert st is not None and st[2] not in ("Z", "X", "t", "T"), f"pid {pid}: state {st and st[2]}"
        for tid in os.listdir(f"/proc/{pid}/task"):
            s = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            tracer = [ln for ln in s.splitlines() if ln.startswith("TracerPid:")][0].split()[1]
            assert tracer == "0", f"pid {pid} thread {tid} traced by {tracer}"


def kcmp_file(pid1: int, fd1: int, pid2: int, fd2: int) -> int:
    """kcmp(KCMP_FILE): 0 if both fds refer to one open file description."""
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.syscall(312, pid1, pid2, 0, fd1, fd2)  # SYS_kcmp on x86_64, KCMP_FILE = 0
    if r < 0:
        raise OSError(ctypes.get_errno(), f"kcmp({pid1}, {pid2}, {fd1}, {fd2})")
    return r


def read_ints(path: Path) -> list[int]:
    """Integer lines of PATH (complete lines only)."""
    try:
        data = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [int(x) for x in data.split("\n")[:-1] if x.strip()]

"""Helpers for tests that run real processes: compiling workloads, starting and cleaning up
processes (also ones that are not our children, e.g. restored ones), waiting for output,
running the torpor CLI and comparing what /proc shows of a process.

Only PIDs a test started or restored are ever signalled, and only while they still are the
same process (checked by start time).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = REPO / "tests" / "programs"
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
CFLAGS = ["-O2", "-static", "-pthread", "-Wall"]


# --------------------------------------------------------------------------- compiling


def compile_c(name: str, outdir: Path, extra: Sequence[str] = ()) -> Path:
    """Compile tests/programs/NAME.c statically into OUTDIR/NAME; return the binary's path."""
    src = PROGRAMS / f"{name}.c"
    out = outdir / name
    cmd = ["gcc", *CFLAGS, *extra, "-o", str(out), str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"compiling {src} failed:\n{res.stderr}")
    return out


# --------------------------------------------------------------------------- /proc


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat (index 0 = pid, 1 = comm, 2 = state, ...), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    head, _, rest = data.rpartition(")")
    pid_s, _, comm = head.partition(" (")
    return [pid_s, comm, *rest.split()]


def start_time(pid: int) -> int | None:
    st = proc_stat(pid)
    return int(st[21]) if st else None


def alive(pid: int) -> bool:
    """True if PID exists and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[2] not in ("Z", "X")


def status(pid: int, tid: int | None = None) -> dict[str, str]:
    p = f"/proc/{pid}/task/{tid}/status" if tid else f"/proc/{pid}/status"
    out = {}
    with open(p) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def tids(pid: int) -> list[int]:
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))


def free_pid() -> int:
    """A PID that no process uses right now (from the top of the range, seldom handed out)."""
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    for pid in range(pid_max - 1, 300, -1):
        if not os.path.exists(f"/proc/{pid}"):
            return pid
    raise RuntimeError("no free pid")


def _reap(pid: int) -> None:
    """Reap PID if it is our zombie child (a restored process when we are a subreaper)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until PID no longer exists at all (reaped, so the PID is free again)."""
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}"):
        _reap(pid)
        if time.monotonic() > deadline:
            st = proc_stat(pid)
            raise AssertionError(f"pid {pid} still exists after {timeout}s (stat: {st and st[:5]})")
        time.sleep(0.01)


def maps(pid: int) -> list[str]:
    """/proc/PID/maps without the device and inode columns."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            path = parts[5].strip() if len(parts) > 5 else ""
            out.append(f"{parts[0]} {parts[1]} {parts[2]} {path}")
    return out


def fds(pid: int) -> dict[int, dict[str, str]]:
    """Every fd: link target, flags (octal), and pos unless the fd is O_APPEND."""
    out: dict[int, dict[str, str]] = {}
    base = f"/proc/{pid}/fd"
    for name in os.listdir(base):
        fd = int(name)
        try:
            target = os.readlink(f"{base}/{name}")
            info = dict(
                line.split(":\t", 1) for line in Path(f"/proc/{pid}/fdinfo/{name}").read_text().splitlines() if ":\t" in line
            )
        except FileNotFoundError:
            continue
        flags = int(info.get("flags", "0"), 8)
        rec = {"target": target, "flags": oct(flags)}
        if not flags & os.O_APPEND:
            rec["pos"] = info.get("pos", "?").strip()
        out[fd] = rec
    return out


SNAPSHOT_STATUS = (
    "Name", "Umask", "Tgid", "Pid", "Uid", "Gid", "Groups", "NStgid", "NSpid", "Threads",
    "SigBlk", "SigIgn", "SigCgt", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
    "NoNewPrivs", "Seccomp",
)  # fmt: skip


def snapshot(pid: int) -> dict[str, object]:
    """What /proc shows of PID that a checkpoint/restore must keep identical (while the
    process only makes progress of its own: no fd position moves, no mapping changes)."""
    st = proc_stat(pid)
    assert st is not None, f"pid {pid} is gone"
    s = status(pid)
    snap: dict[str, object] = {f"status.{k}": s.get(k) for k in SNAPSHOT_STATUS}
    snap["exe"] = os.readlink(f"/proc/{pid}/exe")
    snap["cwd"] = os.readlink(f"/proc/{pid}/cwd")
    snap["root"] = os.readlink(f"/proc/{pid}/root")
    snap["comm"] = Path(f"/proc/{pid}/comm").read_text().strip()
    snap["cmdline"] = Path(f"/proc/{pid}/cmdline").read_bytes()
    snap["environ"] = Path(f"/proc/{pid}/environ").read_bytes()
    snap["auxv"] = Path(f"/proc/{pid}/auxv").read_bytes()
    snap["personality"] = Path(f"/proc/{pid}/personality").read_text().strip()
    snap["limits"] = Path(f"/proc/{pid}/limits").read_text()
    # stat: flags? no. startcode endcode startstack (25-27); 44-50: start_data .. env_end
    snap["stat.mm"] = [st[i] for i in (25, 26, 27, 44, 45, 46, 47, 48, 49, 50)]
    snap["stat.sigignore_catch"] = [st[32], st[33]]
    snap["stat.exit_signal"] = st[37]
    snap["stat.rt_priority_policy"] = [st[17], st[18], st[39], st[40]]
    snap["maps"] = maps(pid)
    snap["fds"] = fds(pid)
    tasks = {}
    for tid in tids(pid):
        ts = status(pid, tid)
        tasks[tid] = {
            "comm": Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip(),
            "SigBlk": ts.get("SigBlk"),
        }
    snap["tasks"] = tasks
    return snap


def diff_snapshots(before: dict, after: dict, ignore: Sequence[str] = ()) -> list[str]:
    out = []
    for k in sorted(set(before) | set(after)):
        if k in ignore:
            continue
        b, a = before.get(k), after.get(k)
        if b == a:
            continue
        if k == "maps":
            bs, as_ = set(b or []), set(a or [])
            out.append(f"maps: only before: {sorted(bs - as_)}; only after: {sorted(as_ - bs)}")
        elif isinstance(b, dict) and isinstance(a, dict):
            for kk in sorted(set(b) | set(a), key=str):
                if b.get(kk) != a.get(kk):
                    out.append(f"{k}[{kk}]: before {b.get(kk)!r}, after {a.get(kk)!r}")
        else:
            out.append(f"{k}: before {b!r}, after {a!r}")
    return out


def assert_same_process_view(before: dict, after: dict, ignore: Sequence[str] = ()) -> None:
    d = diff_snapshots(before, after, ignore)
    assert not d, "the restored process differs:\n  " + "\n  ".join(d)


# --------------------------------------------------------------------------- processes


class Procs:
    """The processes one test started or restored; kill() them all at the end."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.popens: dict[int, subprocess.Popen] = {}
        self.known: dict[int, int | None] = {}  # pid -> start time when registered

    def start(self, argv: Sequence[object], cwd: Path | None = None, name: str | None = None) -> subprocess.Popen:
        """Start a workload in its own session; stdin /dev/null, stdout+stderr to a log file."""
        argv = [str(a) for a in argv]
        log = self.logdir / f"{name or Path(argv[0]).name}.log"
        with open(log, "ab") as lf:
            p = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf, cwd=cwd,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
        self.popens[p.pid] = p
        self.known[p.pid] = start_time(p.pid)
        return p

    def adopt(self, pid: int) -> None:
        """Track a process we did not fork (a restored one)."""
        self.known[pid] = start_time(pid)

    def is_ours(self, pid: int) -> bool:
        return pid in self.known and start_time(pid) == self.known[pid] is not None

    def kill(self, pid: int) -> None:
        if self.is_ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.reap(pid, timeout=5)

    def reap(self, pid: int, timeout: float = 10.0) -> None:
        """Wait until PID is gone and its PID released (reaping it if it is our child)."""
        p = self.popens.get(pid)
        if p is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=timeout)
        wait_gone(pid, timeout)

    def cleanup(self) -> None:
        errors = []
        for pid in list(self.known):
            try:
                self.kill(pid)
            except AssertionError as e:  # pragma: no cover - reported, not hidden
                errors.append(str(e))
        self.known.clear()
        self.popens.clear()
        if errors:
            raise AssertionError("cleanup: " + "; ".join(errors))


@contextlib.contextmanager
def start_program(argv: Sequence[object], logdir: Path, cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """Start a workload; SIGKILL and reap it on exit, whatever happened."""
    procs = Procs(logdir)
    p = procs.start(argv, cwd=cwd)
    try:
        yield p
    finally:
        procs.cleanup()


# --------------------------------------------------------------------------- output files


def read_lines(path: Path) -> list[str]:
    """Complete lines of PATH (a last line without newline is still being written)."""
    try:
        data = Path(path).read_text()
    except FileNotFoundError:
        return []
    lines = data.split("\n")
    return lines[:-1]


def wait_until(cond: Callable[[], object], timeout: float, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def wait_for_lines(path: Path, n: int, timeout: float = 10.0, match: str | None = None) -> list[str]:
    """Wait until PATH has at least N complete lines (matching regex MATCH, if given)."""
    rx = re.compile(match) if match else None

    def enough() -> list[str] | None:
        lines = read_lines(path)
        sel = [ln for ln in lines if rx.search(ln)] if rx else lines
        return lines if len(sel) >= n else None

    try:
        return wait_until(enough, timeout, f"{n} lines in {path}")  # type: ignore[return-value]
    except AssertionError as e:
        tail = read_lines(path)[-5:]
        raise AssertionError(f"{e}; last lines: {tail}") from None


def assert_consecutive(values: Sequence[int], start: int = 1, what: str = "sequence") -> None:
    """VALUES must be start, start+1, ... (no gap, no repeat)."""
    for i, v in enumerate(values):
        if v != start + i:
            ctx = list(values[max(0, i - 3) : i + 3])
            raise AssertionError(f"{what}: expected {start + i} at index {i}, got {v} (around: {ctx})")


# --------------------------------------------------------------------------- torpor CLI


def torpor(*args: object, check: bool = True, timeout: float = 40.0, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python3 -m torpor ARGS` from the repository root (or CWD, with the repository on
    PYTHONPATH).

    stdout/stderr go through temporary files, not pipes: a restored process that wrongly
    inherited a pipe would otherwise make this wait for EOF forever."""
    argv = [sys.executable, "-m", "torpor", *[str(a) for a in args]]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        rc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd or REPO, env=env,
            timeout=timeout, close_fds=True,
        ).returncode  # fmt: skip
        out.seek(0)
        err.seek(0)
        res = subprocess.CompletedProcess(argv, rc, out.read().decode(errors="replace"), err.read().decode(errors="replace"))
    if check and rc != 0:
        raise AssertionError(f"torpor {' '.join(map(str, args))} failed (exit {rc}):\n{res.stderr}{res.stdout}")
    return res


def assert_clean_error(res: subprocess.CompletedProcess, what: str) -> None:
    """A refusal: non-zero exit and a one-line `torpor: ...` message on stderr."""
    assert res.returncode != 0, f"{what}: expected failure, got exit 0; stdout={res.stdout!r}"
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("torpor: "), (
        f"{what}: expected one line `torpor: ...` on stderr, got {res.stderr!r}"
    )


def checkpoint(pid: int, image: Path, *extra: object, check: bool = True) -> subprocess.CompletedProcess:
    return torpor("checkpoint", "--pid", pid, "--image-path", image, *extra, check=check)


def restore(image: Path, procs: Procs | None = None) -> int:
    """Restore IMAGE; return the PID printed on stdout (tracked by PROCS for cleanup)."""
    res = torpor("restore", "--image-path", image)
    words = res.stdout.split()
    assert words and words[-1].isdigit(), f"restore printed no pid: {res.stdout!r} {res.stderr!r}"
    pid = int(words[-1])
    if procs is not None:
        procs.adopt(pid)
    return pid


def errno_name(e: int) -> str:
    return errno.errorcode.get(e, str(e))


# ------------------------------------------------------- conftest building blocks (host tests)


def needs_root(folder: str):
    """A pytest_collection_modifyitems hook skipping the tests under `folder` without root."""

    def pytest_collection_modifyitems(items) -> None:
        import pytest

        for item in items:
            if folder in str(item.fspath) and os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="needs root"))

    return pytest_collection_modifyitems


def subreaper_fixture():
    """A module-scoped autouse fixture making pytest a child subreaper: killed and restored
    processes are re-parented to it and reaped at once (init here reaps orphans only every
    ~2 s, and a zombie keeps its PID taken, which a restore needs free). Off after the module."""
    import contextlib
    import ctypes

    import pytest

    @pytest.fixture(scope="module", autouse=True)
    def subreaper():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        try:
            yield
        finally:
            libc.prctl(36, 0, 0, 0, 0)
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass

    return subreaper

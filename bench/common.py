"""Shared helpers of the benchmark suite: timing, statistics, result records, processes.

Every result is one JSON object (a `Result`): printed as one line on stdout, collected into
bench/results/latest.json, summarised on stderr. Failures are results too (`error` set)."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30
REPO = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "programs"
RESULTS: list[dict] = []


def now() -> float:
    return time.monotonic()


def emit(bench: str, metric: str, values: list[float] | None = None, unit: str = "",
         error: str | None = None, **extra) -> dict:
    """Record one result: median and min-max of VALUES (one per run), or an error."""
    rec: dict = {"bench": bench, "metric": metric, "unit": unit}
    vals = [v for v in (values or []) if v is not None]
    if vals:
        rec.update(median=_r(statistics.median(vals)), min=_r(min(vals)), max=_r(max(vals)),
                   n=len(vals), runs=[_r(v) for v in vals])
    if error:
        rec["error"] = error
    rec.update(extra)
    RESULTS.append(rec)
    print(json.dumps(rec), flush=True)
    return rec


def _r(x: float) -> float:
    return round(x, 3) if abs(x) < 100 else round(x, 1)


def log(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def become_subreaper() -> None:
    """Restored processes are reparented to us (not to a slow PID 1) and reaped here."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "PR_SET_CHILD_SUBREAPER")


def reap_zombies() -> None:
    """Reap every exited child (call only while no subprocess.run is in flight)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                out += kids
                todo += kids
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            pass
    return out


def kill_tree(pid: int | None) -> None:
    """SIGKILL PID and its descendants (by PID), then reap what is ours."""
    if not pid:
        return
    for p in [pid, *descendants(pid)]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_gone(pid)
    reap_zombies()


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Reap PID if it is our child; else wait until /proc/PID disappears."""
    end = now() + timeout
    while now() < end:
        try:
            r, _ = os.waitpid(pid, os.WNOHANG)
            if r == pid:
                return
        except ChildProcessError:
            if not os.path.exists(f"/proc/{pid}"):
                return
        time.sleep(0.002)


def wait_file(path: Path, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> float:
    """Poll (every 0.5 ms) until PATH exists; return the monotonic time it was seen."""
    end = now() + timeout
    while True:
        if path.exists():
            return now()
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} before ready")
        if now() > end:
            raise TimeoutError(f"{path} not created within {timeout}s")
        time.sleep(0.0005)


def spawn(argv: list[str], cwd: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, close_fds=True, cwd=cwd,
                            start_new_session=True)


class CmdResult:
    def __init__(self, rc: int, out: str, err: str, secs: float, t0: float, t1: float):
        self.rc, self.out, self.err, self.secs, self.t0, self.t1 = rc, out, err, secs, t0, t1

    def ok(self) -> bool:
        return self.rc == 0

    def why(self) -> str:
        lines = [ln for ln in (self.err + self.out).splitlines() if ln.strip()]
        return f"exit {self.rc}: " + (lines[-1] if lines else "(no output)")


def run_cmd(argv: list[str], timeout: float = 300.0) -> CmdResult:
    """Run a command, wall-timed; output through files (a restored process that inherited a
    pipe would make a pipe reader wait forever)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        # a blocking wait, the timeout enforced by a timer: a timed wait polls with sleeps
        # growing to 50 ms, which would add up to 50 ms to the measured time
        t0 = now()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                             cwd=REPO, env=env, close_fds=True)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            p.kill()

        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            rc = p.wait()
        finally:
            timer.cancel()
        t1 = now()
        if expired.is_set():
            rc = -errno.ETIMEDOUT
        out.seek(0)
        err.seek(0)
        return CmdResult(rc, out.read().decode(errors="replace"),
                         err.read().decode(errors="replace"), t1 - t0, t0, t1)


def torpor_argv() -> list[str]:
    """How users and containerd start torpor: the installed `torpor` script beside this
    interpreter (no runpy: `python -m` costs ~6 ms more), else `python -m torpor`."""
    script = Path(sys.executable).parent / "torpor"
    return [str(script)] if script.exists() else [sys.executable, "-m", "torpor"]


def precompile() -> None:
    """Byte-compile torpor first: with PYTHONDONTWRITEBYTECODE (or a read-only checkout) every
    command would compile its stale modules again, which no installed torpor does."""
    import compileall

    import torpor

    compileall.compile_dir(os.path.dirname(torpor.__file__), quiet=1)


def torpor(*args: object, timeout: float = 300.0) -> CmdResult:
    return run_cmd([*torpor_argv(), *[str(a) for a in args]], timeout=timeout)


def restored_pid(res: CmdResult) -> int | None:
    words = res.out.split()
    return int(words[-1]) if res.ok() and words and words[-1].isdigit() else None


def dir_size(path: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of every file under PATH."""
    app = alloc = 0
    for root, _, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(root, f))
            app += st.st_size
            alloc += st.st_blocks * 512
    return app, alloc


_built: dict[str, Path] = {}


def build_c(name: str, outdir: Path) -> Path:
    if name not in _built:
        out = outdir / name
        cmd = ["gcc", "-O2", "-static", "-Wall", "-o", str(out), str(PROGRAMS / f"{name}.c")]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"gcc {name}.c failed:\n{res.stderr}")
        _built[name] = out
    return _built[name]


def rotate(items: list, r: int) -> list:
    """Interleaving: run r takes the items in an order rotated by r."""
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


def drop_pages(path: Path) -> None:
    """Remove an image directory (frees its page cache)."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)

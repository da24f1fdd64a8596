"""The per-container monitor of standalone `torpor run -d` (conmon-like).

    torpor run -d ──fork──> (exits) ──fork──> monitor (setsid, child subreaper)
                                                 │ stdout+stderr pipe (or pty master)
                                                 └─> stage 1 ──> init (reparented to monitor)

The monitor creates the container through a `spawn` callable (normally Container.create;
restore can pass its own), so the init is its child: it copies the container's output into
<state dir>/container.log, reaps the init and writes <state dir>/exit.json
({"exit_code", "signal", "finished"}), then exits. It never sits between a containerd shim or
conmon and an init: those callers use `create`, which leaves no torpor process behind.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable

from torpor.errors import TorporError
from torpor.runtime.state import write_json_atomic

# spawn(stdio, pty, monitor_pid) -> Container; runs inside the monitor
Spawn = Callable[..., object]


def start(spawn: Spawn, terminal: bool = False) -> int:
    """Fork the monitor, let it run spawn(); returns the monitor's PID or raises its error."""
    r, w = os.pipe2(os.O_CLOEXEC)
    mid = os.fork()
    if mid == 0:
        code = 0
        try:
            os.close(r)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            _monitor_main(spawn, w, terminal)
        except BaseException as err:  # noqa: BLE001
            try:
                os.write(w, f"ERR {err}".replace("\n", " ").encode()[:4000])
            except OSError:
                pass
            code = 1
        os._exit(code)
    os.close(w)
    os.waitpid(mid, 0)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode(errors="replace")
    if msg.startswith("OK "):
        return int(msg[3:])
    if msg.startswith("ERR "):
        raise TorporError(msg[4:])
    raise TorporError("the container monitor exited during set-up")


def _monitor_main(spawn: Spawn, report: int, terminal: bool) -> None:
    from torpor.runtime import linux as L

    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    if report > 3:
        os.closerange(3, report)
    os.closerange(report + 1, 1 << 20)
    L.set_child_subreaper()
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    pty = None
    stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    if terminal:
        from torpor.runtime.console import open_pty

        pty = open_pty()
        out_r = pty[0]
        container = spawn(stdio=None, pty=pty, monitor_pid=os.getpid())
        os.close(pty[1])
    else:
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        container = spawn(stdio=(stdin, out_w, out_w), pty=None, monitor_pid=os.getpid())
        os.close(out_w)
    os.close(stdin)
    os.write(report, f"OK {os.getpid()}".encode())
    os.close(report)
    _loop(container, out_r, wake_r)


def _loop(container, out_r: int, wake_r: int) -> None:
    d = container.dir
    init = container.init_pid
    log = open(os.path.join(d, "container.log"), "ab", buffering=0)  # noqa: SIM115
    diag = os.path.join(d, "monitor.log")
    exited_at = 0.0
    out_open = True
    while True:
        fds = [wake_r] + ([out_r] if out_open else [])
        timeout = 0.2 if exited_at else 5.0
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            ready = []
        if wake_r in ready:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
        if out_open and out_r in ready:
            try:
                data = os.read(out_r, 65536)
            except OSError:  # EIO from a pty whose slave side closed
                data = b""
            if data:
                try:
                    log.write(data)
                except OSError:
                    pass
            else:
                out_open = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
                if not exited_at and not _alive(init):
                    exited_at = time.monotonic()
                    _record(d, None, diag)
                break
            if pid == 0:
                break
            if pid == init:
                exited_at = time.monotonic()
                _record(d, status, diag)
        if exited_at and (not out_open or time.monotonic() - exited_at > 2.0):
            break
    log.close()


def _alive(pid: int) -> bool:
    from torpor.runtime.procs import alive

    return alive(pid)


def _record(d: str, status: int | None, diag: str) -> None:
    if status is None:
        rec = {"exit_code": None, "signal": None, "finished": time.time()}
    else:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        code = 128 + sig if sig else os.WEXITSTATUS(status)
        rec = {"exit_code": code, "signal": sig, "finished": time.time()}
    if os.path.isdir(d):
        try:
            write_json_atomic(os.path.join(d, "exit.json"), rec, 0o644)
        except OSError as err:
            try:
                with open(diag, "a") as f:
                    f.write(f"cannot write exit.json: {err}\n")
            except OSError:
                pass

"""Checkpoint/restore steps for the socket tests."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from helpers import PYTHON, Procs, checkpoint, proc_stat, read_lines, restore, wait_for_lines

PROGRAMS = Path(__file__).resolve().parent / "programs"


def start(procs: Procs, name: str, *args: object) -> int:
    return procs.start([PYTHON, PROGRAMS / f"{name}.py", *args], name=name).pid


def checkpoint_kill(procs: Procs, pid: int, image: Path) -> None:
    checkpoint(pid, image)
    st = proc_stat(pid)
    assert st is None or st[2] in ("Z", "X"), f"pid {pid} still runs after checkpoint"
    procs.reap(pid, timeout=5)


def restore_same(procs: Procs, image: Path, pid: int) -> None:
    try:
        new = restore(image, procs)
    except BaseException:
        if os.path.exists(f"/proc/{pid}"):
            procs.adopt(pid)
        raise
    assert new == pid, f"restored as pid {new}, expected {pid}"


def free_port(family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> int:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_lines(path: Path, pattern: str, n: int = 1, timeout: float = 10.0) -> list[str]:
    return wait_for_lines(path, n, timeout, match=pattern)


def lines(path: Path) -> list[str]:
    return read_lines(path)


def connect_retry(family: int, addr: tuple, timeout: float = 10.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(addr)
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)

"""terminal: true — the restored processes get a new pty with the same termios and window
size, as their controlling terminal (Docker cannot do this)."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios
import time

from torpor.runtime.console import recv_fd

from .helpers import wait_count

TTY_COUNTER = ("stty cols 123 rows 45 -echo; i=0; while true; do echo $i; i=$(expr $i + 1); "
               "sleep 0.2; done")


def _tty_of(pid: int):
    fd = os.open(f"/proc/{pid}/fd/0", os.O_RDWR | os.O_NOCTTY)
    try:
        attrs = termios.tcgetattr(fd)
        ws = struct.unpack("4H", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    finally:
        os.close(fd)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return bool(attrs[3] & termios.ECHO), ws[:2], int(fields[4])  # echo, (rows, cols), tty_nr


def test_terminal_under_monitor(rt):
    cid = rt.id("tty")
    rt("run", "-d", "-t", cid, "--", "sh", "-c", TTY_COUNTER)
    wait_count(rt, cid, 3)
    pid = rt.state(cid)["pid"]
    before = _tty_of(pid)
    assert before[:2] == (False, (45, 123)) and before[2] != 0
    rt("checkpoint", "create", cid, "t")
    n = len([x for x in rt.logs(cid).split() if x.isdigit()])
    rt("start", "--checkpoint", "t", cid)
    new = rt.wait_status(cid, "running")["pid"]
    after = _tty_of(new)
    assert after[:2] == before[:2] and after[2] != 0  # controlling terminal again
    wait_count(rt, cid, n + 3)
    nums = [int(x) for x in rt.logs(cid).split() if x.isdigit()]
    assert nums == list(range(len(nums)))


def _accept_pty(srv):
    conn, _ = srv.accept()
    fd, name = recv_fd(conn)
    conn.close()
    return fd


def _read_numbers(fd, want: int, timeout: float = 10) -> list[int]:
    os.set_blocking(fd, False)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            out += os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(0.05)
        except OSError:
            break
        nums = [int(x) for x in out.split() if x.isdigit()]
        if len(nums) >= want:
            return nums
    return [int(x) for x in out.split() if x.isdigit()]


def test_terminal_console_socket_detach(rt, bundle, tmp_path):
    b = bundle(["sh", "-c", TTY_COUNTER], terminal=True)
    cid = rt.id("ttyshim")
    img = str(tmp_path / "img")
    path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(2)
    fds = []
    try:
        rt("create", "--bundle", b, "--console-socket", path, cid)
        fds.append(_accept_pty(srv))
        rt("start", cid)
        first = _read_numbers(fds[0], 3)
        assert first[:3] == [0, 1, 2]
        rt("checkpoint", "--image-path", img, cid)
        first += _read_numbers(fds[0], 10**6, timeout=0.3)
        r = rt("restore", "--image-path", img, "--detach", "--bundle", b, cid, check=False)
        assert r.rc == 1 and "--console-socket" in r.err
        rt("restore", "--image-path", img, "--detach", "--console-socket", path, "--bundle", b,
           cid)
        fds.append(_accept_pty(srv))
        s = rt.state(cid)
        assert s["status"] == "running"
        assert _tty_of(s["pid"])[:2] == (False, (45, 123))
        nums = _read_numbers(fds[1], 3)
        assert nums[:3] == [first[-1] + 1, first[-1] + 2, first[-1] + 3], (first, nums)
    finally:
        for fd in fds:
            os.close(fd)
        srv.close()

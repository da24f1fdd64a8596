"""--console-socket: the pty master arrives over SCM_RIGHTS, as runc sends it."""

from __future__ import annotations

import os
import socket
import time

from torpor.runtime.console import recv_fd


def test_console_socket(rt, bundle, tmp_path):
    path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    cid = rt.id()
    b = bundle(["sh", "-c", "tty; test -t 0 && echo isatty; ls -l /dev/console | cut -c1"],
               terminal=True)
    try:
        rt("create", "--bundle", b, "--console-socket", path, cid)
        conn, _ = srv.accept()
        fd, name = recv_fd(conn)
        conn.close()
        assert name.startswith("/dev/pts/")
        rt("start", cid)
        out = b""
        deadline = time.monotonic() + 10
        while b"isatty" not in out and time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(fd)
        text = out.decode()
        assert "isatty" in text, text
        assert "/dev/" in text
    finally:
        srv.close()


def test_exec_tty_console_socket(rt, tmp_path):
    cid = rt.id()
    rt("run", "-d", cid, "--", "sleep", "100")
    path = str(tmp_path / "exec.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    try:
        rt("exec", "-d", "-t", "--console-socket", path, cid, "--", "sh", "-c",
           "test -t 1 && echo exec-tty; sleep 0.5")
        conn, _ = srv.accept()
        fd, name = recv_fd(conn)
        conn.close()
        assert name.startswith("/dev/pts/")
        out = b""
        deadline = time.monotonic() + 10
        while b"exec-tty" not in out and time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(fd)
        assert b"exec-tty" in out
    finally:
        srv.close()

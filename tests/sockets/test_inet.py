"""TCP and UDP: an asyncio server keeps serving (and counting) after restore; a UDP server
on IPv6 ::1; an established connection is refused and the process keeps running."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from helpers import Procs, assert_clean_error, checkpoint, proc_stat
from sockutil import checkpoint_kill, connect_retry, free_port, restore_same, start, wait_lines


def _ask(port: int, line: str) -> str:
    with connect_retry(socket.AF_INET, ("127.0.0.1", port)) as c:
        c.sendall(line.encode() + b"\n")
        data = b""
        while chunk := c.recv(100):
            data += chunk
        return data.decode().strip()


def _listener_fd(pid: int, port: int) -> tuple[int, str]:
    """(fd, inode) of pid's TCP listener on port (found through /proc/PID/net/tcp)."""
    inode = None
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == port and f[3] == "0A":
            inode = f[9]
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        if str(fd.readlink()) == f"socket:[{inode}]":
            return int(fd.name), inode or ""
    raise AssertionError(f"no listener on port {port} in {pid}")


def test_asyncio_server_keeps_serving(procs: Procs, tmp_path: Path) -> None:
    port, out, image = free_port(), tmp_path / "out", tmp_path / "img"
    pid = start(procs, "aioserver", "127.0.0.1", port, out)
    wait_lines(out, "^listening")
    assert [_ask(port, f"req {i}") for i in range(1, 4)] == [f"count {i} req {i}" for i in range(1, 4)]
    fd, _ = _listener_fd(pid, port)
    checkpoint_kill(procs, pid, image)
    restore_same(procs, image, pid)
    assert _ask(port, "after") == "count 4 after"
    assert _ask(port, "again") == "count 5 again"
    # the listener came back with its options and backlog
    assert _listener_fd(pid, port)[0] == fd
    s = socket.socket(fileno=_steal(pid, fd))
    try:
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        ti = s.getsockopt(socket.IPPROTO_TCP, 11, 104)
        assert int.from_bytes(ti[28:32], "little") == 77  # backlog
    finally:
        s.close()


def _steal(pid: int, fd: int) -> int:
    from torpor.engine.linux.sockdiag import pidfd_getfd

    return pidfd_getfd(pid, fd)


def test_udp6_server(procs: Procs, tmp_path: Path) -> None:
    port, out, image = free_port(socket.AF_INET6, socket.SOCK_DGRAM), tmp_path / "out", tmp_path / "img"
    pid = start(procs, "udp6", port, out)
    wait_lines(out, "^bound")

    def ask(msg: bytes) -> bytes:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as c:
            c.settimeout(5)
            c.sendto(msg, ("::1", port))
            return c.recv(2000)

    assert ask(b"one") == b"n=1 one"
    checkpoint_kill(procs, pid, image)
    restore_same(procs, image, pid)
    assert ask(b"two") == b"n=2 two"
    with open(f"/proc/{pid}/net/udp6") as f:
        assert any(f":{port:04X} " in ln for ln in f), "no UDP socket on the port after restore"


def test_established_tcp_refused(procs: Procs, tmp_path: Path) -> None:
    port, out = free_port(), tmp_path / "out"
    pid = start(procs, "holdconn", port, out)
    wait_lines(out, "^listening")
    with connect_retry(socket.AF_INET, ("127.0.0.1", port)) as held:
        wait_lines(out, "^accepted")
        fd = int(next(ln for ln in out.read_text().splitlines() if ln.startswith("accepted")).split()[1])
        client = held.getsockname()
        res = checkpoint(pid, tmp_path / "img", check=False)
        assert_clean_error(res, "established TCP connection")
        msg = res.stderr
        assert f"process {pid} fd {fd}" in msg, msg
        assert f"127.0.0.1:{port}" in msg and f"127.0.0.1:{client[1]}" in msg, msg
        assert re.search(r"established", msg), msg
        st = proc_stat(pid)
        assert st is not None and st[2] in ("S", "R"), st
        assert not (tmp_path / "img" / "manifest.json").exists()
        with connect_retry(socket.AF_INET, ("127.0.0.1", port)) as c:
            assert c.recv(100) == b"still here\n"


def test_idle_sockets(procs: Procs, tmp_path: Path) -> None:
    """Unbound TCP and UDP sockets and a bound TCP socket that listens only after restore."""
    port, out, go, image = free_port(), tmp_path / "out", tmp_path / "go", tmp_path / "img"
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
        u.bind(("::1", 0))
        u.settimeout(10)
        pid = start(procs, "idle", port, u.getsockname()[1], out, go)
        wait_lines(out, "^ready")
        checkpoint_kill(procs, pid, image)
        restore_same(procs, image, pid)
        go.touch()
        assert u.recv(100) == b"from the idle udp socket"
    wait_lines(out, "^listening keepalive=1")
    with connect_retry(socket.AF_INET, ("127.0.0.1", port)) as c:
        assert c.recv(100) == b"late listener\n"
    wait_lines(out, "^done")

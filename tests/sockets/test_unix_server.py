"""A unix server bound to a path with a listening backlog and connections queued but not
accepted at the checkpoint; an abstract-name listener; a peer outside the tree is refused."""

from __future__ import annotations

import os
import socket
import stat
import uuid
from pathlib import Path

from helpers import Procs, assert_clean_error, checkpoint, proc_stat
from sockutil import PROGRAMS, checkpoint_kill, lines, restore_same, start, wait_lines


def test_unix_server_with_queued_connections(procs: Procs, tmp_path: Path) -> None:
    path, out, go, image = tmp_path / "srv.sock", tmp_path / "out", tmp_path / "go", tmp_path / "img"
    abstract = f"torpor-test-{uuid.uuid4().hex}"
    pid = start(procs, "userver", path, abstract, out, go)
    wait_lines(out, r"^ready")
    children = [int(x) for x in next(ln for ln in lines(out) if ln.startswith("children")).split()[1:]]
    for c in children:
        procs.adopt(c)
    checkpoint_kill(procs, pid, image)
    for c in children:
        procs.reap(c, timeout=5)
    restore_same(procs, image, pid)
    for c in children:
        procs.adopt(c)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    go.touch()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(10)
        c.connect(str(path))
        c.sendall(b"hello from the test\n")
        assert c.recv(100) == b"welcome 3 to hello from the test\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as c:
        c.settimeout(10)
        c.connect("\0" + abstract)
        c.send(b"ping")
        assert c.recv(100) == b"abstract got ping"
    wait_lines(out, r"^server done", timeout=20)
    got = lines(out)
    for i in range(2):
        assert f"server {i + 1} hello from client {i}" in got, got
        assert f"client {i} got welcome {i + 1} to hello from client {i}" in got, got


def test_unix_peer_outside_tree_refused(procs: Procs, tmp_path: Path) -> None:
    """A process connected to a unix server outside the checkpointed tree (like journald's
    socket) is refused with the process, the fd and the peer's name; it keeps running."""
    path = tmp_path / "outside.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(str(path))
        srv.listen(1)
        p = procs.start(["python3", "-c",
                         "import socket, time, sys\n"
                         "c = socket.socket(socket.AF_UNIX)\n"
                         "c.connect(sys.argv[1])\n"
                         "print('connected', c.fileno(), flush=True)\n"
                         "time.sleep(600)\n", path], name="client")
        conn, _ = srv.accept()
        with conn:
            res = checkpoint(p.pid, tmp_path / "img", check=False)
            assert_clean_error(res, "peer outside the tree")
            assert f"process {p.pid} fd 3" in res.stderr, res.stderr
            assert str(path) in res.stderr and "outside the checkpointed tree" in res.stderr
            st = proc_stat(p.pid)
            assert st is not None and st[2] in ("S", "R"), st
    assert PROGRAMS.is_dir()

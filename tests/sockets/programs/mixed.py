"""Unix sockets made the usual ways inside one tree: a stream connection the server accepted
from its child (data queued both ways), and a dgram "log" server bound to a path whose path
was then unlinked, with the child's dgram socket connected to it one way and datagrams
queued. After GO both sides read what was queued and the child sends one more datagram."""

import os
import socket
import sys
import time

d, out, go = sys.argv[1:4]
spath, dpath = os.path.join(d, "stream.sock"), os.path.join(d, "log.sock")


def log(msg: str) -> None:
    with open(out, "a") as f:
        f.write(msg + "\n")


def wait_go() -> None:
    parent = os.getppid()
    while not os.path.exists(go):
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.02)


srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(spath)
srv.listen(1)
dsrv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
dsrv.bind(dpath)
r, w = os.pipe()
child = os.fork()
if child == 0:
    os.close(r)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(spath)
    lg = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    lg.connect(dpath)
    lg.send(b"log 1")
    lg.send(b"log 2")
    c.sendall(b"to server")
    os.close(w)
    wait_go()
    log(f"child got {c.recv(100).decode()}")
    lg.send(b"log 3")
    os._exit(0)
os.close(w)
os.read(r, 1)
conn, _ = srv.accept()
conn.sendall(b"to child")
os.unlink(dpath)
log(f"child {child}")
log(f"ready {conn.getsockname()!r}")
wait_go()
log(f"server got {conn.recv(100).decode()}")
log("server logs " + " | ".join(dsrv.recv(100).decode() for _ in range(3)))
log(f"server name {conn.getsockname()!r} {os.path.exists(dpath)}")
os.waitpid(child, 0)
log("done")

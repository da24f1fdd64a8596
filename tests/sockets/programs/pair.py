"""A parent and a child talking over unix socketpairs (stream, dgram, seqpacket).

Each side sends its data first and reads the other's only once GO exists, so at a
checkpoint taken in between the data is in flight in both directions. The parent also
shuts down its stream end for writing after sending (the child sees EOF after the data).
Lines: "child PID", "ready parent", "ready child", then the results."""

import os
import socket
import sys
import time

out, go = sys.argv[1], sys.argv[2]
STREAM_P = b"parent-to-child:" + bytes(range(256)) * 300
STREAM_C = b"child-to-parent:" + b"x" * 70000


def log(msg: str) -> None:
    with open(out, "a") as f:
        f.write(msg + "\n")


def recv_all(s: socket.socket) -> bytes:
    chunks = []
    while True:
        b = s.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def wait_go() -> None:
    parent = os.getppid()
    while not os.path.exists(go):
        if os.getppid() != parent:  # a child whose parent was killed (test cleanup) ends
            os._exit(1)
        time.sleep(0.02)


st_p, st_c = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
dg_p, dg_c = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
sq_p, sq_c = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
for s in (st_p, st_c):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
sq_c.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
sq_c.setblocking(False)
child = os.fork()
if child == 0:
    for s in (st_p, dg_p, sq_p):
        s.close()
    st_c.sendall(STREAM_C)
    st_c.shutdown(socket.SHUT_WR)
    for i in range(3):
        dg_c.send(f"dgram from child {i}".encode())
    sq_c.send(b"seq from child A")
    sq_c.send(b"seq from child B" * 100)
    log("ready child")
    wait_go()
    got = recv_all(st_c)
    log(f"child stream {'ok' if got == STREAM_P else f'BAD {len(got)}'}")
    log("child dgram " + " | ".join(dg_c.recv(100).decode() for _ in range(2)))
    blocking = os.get_blocking(sq_c.fileno())
    sq_c.setblocking(True)
    log("child seq " + " | ".join(sq_c.recv(100).decode() for _ in range(2)))
    log(f"child passcred {sq_c.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED)} "
        f"blocking {blocking}")
    os._exit(0)
log(f"child {child}")
for s in (st_c, dg_c, sq_c):
    s.close()
st_p.sendall(STREAM_P)
st_p.shutdown(socket.SHUT_WR)
dg_p.send(b"dgram from parent 0")
dg_p.send(b"dgram from parent 1")
sq_p.send(b"seq from parent A")
sq_p.send(b"seq from parent B")
log("ready parent")
wait_go()
got = recv_all(st_p)
log(f"parent stream {'ok' if got == STREAM_C else f'BAD {len(got)}'}")
log("parent dgram " + " | ".join(dg_p.recv(100).decode() for _ in range(3)))
log("parent seq " + " | ".join(sq_p.recv(2000).decode()[:16] for _ in range(2)))
_, status = os.waitpid(child, 0)
log(f"parent done {status}")

"""A unix stream server bound to PATH (mode 0660, backlog 5) with two client children whose
connections are queued but not accepted at the checkpoint; also a listener on the abstract
name ABSTRACT. Once GO exists it accepts three connections on PATH (the two children first,
in their connect order, then one from outside) and one on ABSTRACT, answering each."""

import os
import socket
import sys
import time

path, abstract, out, go = sys.argv[1:5]


def log(msg: str) -> None:
    with open(out, "a") as f:
        f.write(msg + "\n")


def wait_go() -> None:
    parent = os.getppid()
    while not os.path.exists(go):
        if os.getppid() != parent:  # a child whose parent was killed (test cleanup) ends
            os._exit(1)
        time.sleep(0.02)


srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
os.chmod(path, 0o660)
srv.listen(5)
asrv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
asrv.bind("\0" + abstract)
asrv.listen(3)
children = []
for i in range(2):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path)
        log(f"client {i} connected")
        os.close(w)
        wait_go()
        c.sendall(f"hello from client {i}\n".encode())
        log(f"client {i} got {c.recv(100).decode().strip()}")
        os._exit(0)
    children.append(pid)
    os.close(w)
    os.read(r, 1)  # EOF once the child is connected: connections queue in this order
    os.close(r)
log("children " + " ".join(map(str, children)))
log("ready")
wait_go()
for n in range(1, 4):
    conn, _ = srv.accept()
    msg = conn.recv(100).decode().strip()
    conn.sendall(f"welcome {n} to {msg}\n".encode())
    log(f"server {n} {msg}")
    conn.close()
conn, _ = asrv.accept()
msg = conn.recv(100).decode()
conn.send(f"abstract got {msg}".encode())
log(f"server abstract {msg}")
conn.close()
for pid in children:
    os.waitpid(pid, 0)
log("server done")

"""A TCP server that accepts one client and keeps the connection open, idle; it answers a
second client with "still here" (to show it kept running after a refused checkpoint)."""

import socket
import sys

port, out = int(sys.argv[1]), sys.argv[2]
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(4)
with open(out, "a") as f:
    f.write(f"listening {srv.fileno()}\n")
held, _ = srv.accept()
with open(out, "a") as f:
    f.write(f"accepted {held.fileno()}\n")
while True:
    c, _ = srv.accept()
    c.sendall(b"still here\n")
    c.close()

"""Sockets not yet in use: an unbound TCP socket, a TCP socket bound to PORT but not
listening (IPv4), an unbound UDPv6 socket. After GO: listen on the bound one, serve one
client "late listener", and send a datagram from the UDP socket to [::1]:UPORT."""

import os
import socket
import sys
import time

port, uport, out, go = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
fresh = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
bound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
bound.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
bound.bind(("127.0.0.1", port))
udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
with open(out, "a") as f:
    f.write("ready\n")
while not os.path.exists(go):
    time.sleep(0.02)
udp.sendto(b"from the idle udp socket", ("::1", uport))
bound.listen(1)
with open(out, "a") as f:
    f.write(f"listening keepalive={bound.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)}\n")
c, _ = bound.accept()
c.sendall(b"late listener\n")
c.close()
with open(out, "a") as f:
    f.write("done\n")

"""A UDP echo server on [::1]:PORT (IPV6_V6ONLY) answering "n=N <datagram>"."""

import socket
import sys

port, out = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 300000)
s.bind(("::1", port))
with open(out, "a") as f:
    f.write("bound\n")
n = 0
while True:
    data, addr = s.recvfrom(2000)
    n += 1
    s.sendto(b"n=%d " % n + data, addr)

"""A parent and a child talking through the FIFO argv[1]: the child writes numbered lines every
10 ms; the parent reads one line every 40 ms (O_NONBLOCK read end), so data piles up in the
FIFO. The parent prints "got N" per line, the child "child ready" once. The writer sets the
pipe size to 128 KiB."""

import fcntl
import os
import sys
import time

path = sys.argv[1]
pid = os.fork()
if pid == 0:
    w = os.open(path, os.O_WRONLY)
    fcntl.fcntl(w, 1031, 128 * 1024)  # F_SETPIPE_SZ
    print("child ready", flush=True)
    i = 0
    while True:
        i += 1
        os.write(w, f"{i}\n".encode())
        time.sleep(0.01)
r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
print(f"parent ready fd={r}", flush=True)
buf = b""
while True:
    time.sleep(0.04)
    while b"\n" not in buf:
        try:
            chunk = os.read(r, 1)
        except BlockingIOError:
            break
        if not chunk:
            break
        buf += chunk
    if b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        print(f"got {int(line)}", flush=True)

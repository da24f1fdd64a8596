"""selectors (epoll) over a timerfd ticking every 100 ms and an eventfd it writes on each tick.

Prints "tick n=N ev=E t=MONOTONIC" per tick (E: eventfd total read so far). When the file
`go` appears in the working directory it reads a second, unregistered semaphore eventfd
(initial count 3, non-blocking) until EAGAIN and prints "sem reads=R" once.
"""

import ctypes
import os
import selectors
import struct
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
CLOCK_MONOTONIC = 1
tfd = libc.timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
assert tfd >= 0
spec = struct.pack("4q", 0, 100_000_000, 0, 100_000_000)
assert libc.timerfd_settime(tfd, 0, spec, None) == 0
efd = os.eventfd(0, os.EFD_NONBLOCK)
sem = os.eventfd(3, os.EFD_SEMAPHORE | os.EFD_NONBLOCK)
sel = selectors.DefaultSelector()
assert type(sel).__name__ == "EpollSelector"
sel.register(tfd, selectors.EVENT_READ, "timer")
sel.register(efd, selectors.EVENT_READ, "event")
n = ev = 0
sem_done = False
print(f"fds timer={tfd} event={efd} sem={sem} epoll={sel.fileno()}", flush=True)
while True:
    for key, _ in sel.select(timeout=1.0):
        if key.data == "timer":
            ticks = struct.unpack("Q", os.read(tfd, 8))[0]
            for _ in range(ticks):
                n += 1
                os.eventfd_write(efd, 1)
                print(f"tick n={n} ev={ev} t={time.monotonic():.4f}", flush=True)
        else:
            ev += os.eventfd_read(efd)
    if not sem_done and os.path.exists("go"):
        reads = 0
        while True:
            try:
                reads += os.eventfd_read(sem)
            except BlockingIOError:
                break
        print(f"sem reads={reads}", flush=True)
        sem_done = True
    sys.stdout.flush()

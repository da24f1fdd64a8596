"""Two timerfds nobody reads: an absolute CLOCK_REALTIME one due 1 s after start and a 50 ms
CLOCK_MONOTONIC interval timer whose expirations pile up. Prints "ready abs=A per=P"."""

import ctypes
import signal
import struct
import time

libc = ctypes.CDLL(None, use_errno=True)
absfd = libc.timerfd_create(0, 0)
deadline = time.clock_gettime_ns(0) + 1_000_000_000
libc.timerfd_settime(absfd, 1, struct.pack("4q", 0, 0, deadline // 10**9, deadline % 10**9), None)
per = libc.timerfd_create(1, 0)
libc.timerfd_settime(per, 0, struct.pack("4q", 0, 50_000_000, 0, 50_000_000), None)
print(f"ready abs={absfd} per={per}", flush=True)
signal.pause()

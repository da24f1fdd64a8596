"""Holds an fd of a kind torpor does not know (argv[1]: userfaultfd or perf_event) and prints
"ready fd=F" then "n=N" every 20 ms."""

import ctypes
import os
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
if sys.argv[1] == "userfaultfd":
    fd = libc.syscall(323, os.O_CLOEXEC)
else:
    attr = bytearray(128)
    attr[0:4] = (1).to_bytes(4, "little")  # type PERF_TYPE_SOFTWARE
    attr[4:8] = (128).to_bytes(4, "little")  # size
    attr[8:16] = (0).to_bytes(8, "little")  # PERF_COUNT_SW_CPU_CLOCK
    attr[40:48] = (1 | 1 << 5 | 1 << 6).to_bytes(8, "little")  # disabled, exclude_kernel, exclude_hv
    buf = (ctypes.c_char * 128).from_buffer(attr)
    fd = libc.syscall(298, buf, 0, -1, -1, 8)  # PERF_FLAG_FD_CLOEXEC
assert fd >= 0, ctypes.get_errno()
print(f"ready fd={fd}", flush=True)
n = 0
while True:
    n += 1
    print(f"n={n}", flush=True)
    time.sleep(0.02)

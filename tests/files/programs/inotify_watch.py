"""inotify (through ctypes) watching the directory given as argv[1] for IN_CREATE|IN_DELETE,
and argv[2] (a file) for IN_MODIFY, non-blocking, polled every 20 ms.
Prints "ready ifd=F wd_dir=W1 wd_file=W2", then one line per event: "ev wd=W mask=M name=N"."""

import ctypes
import os
import struct
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
IN_MODIFY, IN_CREATE, IN_DELETE = 0x2, 0x100, 0x200
ifd = libc.inotify_init1(os.O_NONBLOCK)
# burn a few watch descriptors so that the ones kept are not 1 and 2
for _ in range(3):
    w = libc.inotify_add_watch(ifd, b"/", IN_CREATE)
    libc.inotify_rm_watch(ifd, w)
wd_dir = libc.inotify_add_watch(ifd, os.fsencode(sys.argv[1]), IN_CREATE | IN_DELETE)
wd_file = libc.inotify_add_watch(ifd, os.fsencode(sys.argv[2]), IN_MODIFY)
assert wd_dir > 0 and wd_file > 0
# drop the IN_IGNORED events of the burnt watches
time.sleep(0.05)
try:
    os.read(ifd, 65536)
except BlockingIOError:
    pass
print(f"ready ifd={ifd} wd_dir={wd_dir} wd_file={wd_file}", flush=True)
while True:
    try:
        buf = os.read(ifd, 65536)
    except BlockingIOError:
        time.sleep(0.02)
        continue
    off = 0
    while off < len(buf):
        wd, mask, _cookie, ln = struct.unpack_from("iIII", buf, off)
        name = buf[off + 16 : off + 16 + ln].rstrip(b"\0").decode()
        off += 16 + ln
        print(f"ev wd={wd} mask={mask:#x} name={name}", flush=True)

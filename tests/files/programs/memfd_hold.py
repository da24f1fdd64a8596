"""A memfd held as an fd (sealed against shrinking and growing, position 5) and also mapped
shared. When the file "go" appears: writes b"XY" through the fd (at its position), then prints
"state pos=P seals=S map=CONTENT" (CONTENT read through the mapping) and removes "go".
Prints "ready fd=F" first."""

import fcntl
import mmap
import os
import time

F_ADD_SEALS, F_GET_SEALS = 1033, 1034
F_SEAL_SHRINK, F_SEAL_GROW = 2, 4
fd = os.memfd_create("torpor-test", os.MFD_ALLOW_SEALING)
os.write(fd, b"hello world, memfd\n")
os.ftruncate(fd, 4096)
fcntl.fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW)
os.lseek(fd, 5, os.SEEK_SET)
m = mmap.mmap(fd, 4096, mmap.MAP_SHARED)
print(f"ready fd={fd}", flush=True)
while True:
    time.sleep(0.02)
    if os.path.exists("go"):
        os.write(fd, b"XY")
        pos = os.lseek(fd, 0, os.SEEK_CUR)
        print(f"state pos={pos} seals={fcntl.fcntl(fd, F_GET_SEALS)} map={m[:19]!r}", flush=True)
        os.unlink("go")

"""Holds a flock write lock on flock.dat, an OFD write lock on bytes 10-29 of ofd.dat and
POSIX locks on posix.dat (write on 0-99, read on 100-EOF), prints "locked" and counts until
the file "release" appears; then unlocks, prints "released" and exits."""

import fcntl
import os
import struct
import time

F_OFD_SETLK = 37
FLOCK = struct.Struct("<hhxxxxqqi4x")

a = os.open("flock.dat", os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(a, fcntl.LOCK_EX)
b = os.open("ofd.dat", os.O_RDWR | os.O_CREAT, 0o644)
fcntl.fcntl(b, F_OFD_SETLK, FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 10, 20, 0))
c = os.open("posix.dat", os.O_RDWR | os.O_CREAT, 0o644)
fcntl.fcntl(c, fcntl.F_SETLK, FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 100, 0))
fcntl.fcntl(c, fcntl.F_SETLK, FLOCK.pack(fcntl.F_RDLCK, os.SEEK_SET, 100, 0, 0))
with open("locks.log", "a", buffering=1) as log:
    log.write(f"locked fds {a} {b} {c}\n")
    n = 0
    while not os.path.exists("release"):
        n += 1
        log.write(f"tick {n}\n")
        time.sleep(0.05)
    fcntl.flock(a, fcntl.LOCK_UN)
    fcntl.fcntl(b, F_OFD_SETLK, FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, 10, 20, 0))
    fcntl.fcntl(c, fcntl.F_SETLK, FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0))
    log.write("released\n")

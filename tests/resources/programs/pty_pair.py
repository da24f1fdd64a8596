"""A pseudo-terminal pair held by one process (both ends): ECHO off on the slave, canonical
mode kept, window 33x101. Every 50 ms it writes "ping N" on the master and reads the line
from the slave, writes "pong N" on the slave and reads it from the master; logs "ok N" (or
"bad ..."). When the file "check" appears it logs the slave's echo flag, window size and name
("state ...") and removes "check"."""

import fcntl
import os
import pty
import struct
import termios
import time

master, slave = pty.openpty()
attrs = termios.tcgetattr(slave)
attrs[3] &= ~termios.ECHO  # lflag: no echo, canonical kept
termios.tcsetattr(slave, termios.TCSANOW, attrs)
fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("<HHHH", 33, 101, 0, 0))
with open("pty.log", "a", buffering=1) as log:
    log.write(f"pty slave={os.ttyname(slave)} master={master} slave_fd={slave}\n")
    n = 0
    while True:
        n += 1
        os.write(master, f"ping {n}\n".encode())
        got = os.read(slave, 100)
        os.write(slave, f"pong {n}\n".encode())
        back = b""
        while not back.endswith(b"\n"):
            back += os.read(master, 100)
        if got != f"ping {n}\n".encode() or back.replace(b"\r", b"") != f"pong {n}\n".encode():
            log.write(f"bad {n} {got!r} {back!r}\n")
        else:
            log.write(f"ok {n}\n")
        if os.path.exists("check"):
            lflag = termios.tcgetattr(slave)[3]
            rows, cols = struct.unpack("<HHHH", fcntl.ioctl(slave, termios.TIOCGWINSZ, bytes(8)))[:2]
            log.write(f"state echo={int(bool(lflag & termios.ECHO))} rows={rows} cols={cols} "
                      f"slave={os.ttyname(slave)}\n")
            os.unlink("check")
        time.sleep(0.05)

"""Terminals: a pty for the container, and runc's --console-socket protocol.

The protocol: connect to the unix socket, send one message whose payload is the pty's name
and whose SCM_RIGHTS ancillary data carries the pty master fd.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import termios

from torpor.errors import TorporError


class ConsoleError(TorporError):
    pass


def open_pty() -> tuple[int, int, str]:
    """(master, slave, slave name); both fds close-on-exec."""
    master, slave = os.openpty()
    os.set_inheritable(master, False)
    os.set_inheritable(slave, False)
    return master, slave, os.ttyname(slave)


TIOCGPTN, TIOCSPTLCK, TIOCGPTPEER = 0x80045430, 0x40045431, 0x5441


def open_pty_here() -> tuple[int, int, str]:
    """A pty of the devpts instance seen at /dev/ptmx in the caller's mount namespace: called
    inside a container (exec), as runc does, its slave is one of the container's /dev/pts/N, so
    ttyname() works there. (master, slave, name)."""
    import struct

    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        os.close(master)
        raise
    return master, slave, f"/dev/pts/{n}"


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        raise ConsoleError(f"console socket {path}: {err.strerror or err}") from None
    return sock


def send_fd(sock: socket.socket, fd: int, name: str) -> None:
    try:
        sock.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                        array.array("i", [fd]))])
    except OSError as err:
        raise ConsoleError(f"console socket: cannot send the pty: {err.strerror or err}") from None


def recv_fd(sock: socket.socket) -> tuple[int, str]:
    """The receiving side (for tests and tools): (fd, name)."""
    fds = array.array("i")
    msg, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not fds:
        raise ConsoleError("console socket: no fd received")
    return fds[0], msg.decode(errors="replace")


def make_controlling(slave: int) -> None:
    """In the child after setsid(): the pty becomes its controlling terminal and stdio."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)

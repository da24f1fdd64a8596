"""sock_diag netlink (NETLINK_SOCK_DIAG) for unix sockets, and pidfd_getfd.

unix_diag dumps every unix socket of a network namespace with its name, peer inode, queued
connections (the peers' inodes of embryos a listener has not accepted), queue lengths and
shutdown state. The netlink socket answers for the namespace it was created in: for a process
in another network namespace it is created in a short-lived thread that setns'd there (the
network namespace is per thread; the socket keeps its namespace afterwards).
"""

from __future__ import annotations

import os
import socket
import struct
import threading

from torpor.engine.linux import sys as lx

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
UDIAG_SHOW_NAME, UDIAG_SHOW_VFS, UDIAG_SHOW_PEER, UDIAG_SHOW_ICONS = 1, 2, 4, 8
UDIAG_SHOW_RQLEN = 16
UNIX_DIAG_NAME, UNIX_DIAG_VFS, UNIX_DIAG_PEER, UNIX_DIAG_ICONS = 0, 1, 2, 3
UNIX_DIAG_RQLEN, UNIX_DIAG_SHUTDOWN = 4, 6
CLONE_NEWNET = 0x40000000
TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN = 1, 7, 10


class UnixDiag:
    """What sock_diag says of one unix socket."""

    __slots__ = ("inode", "type", "state", "name", "vfs", "peer", "icons", "rqlen", "wqlen",
                 "shutdown")

    def __init__(self, inode: int, type: int, state: int) -> None:
        self.inode, self.type = inode, type
        self.state = state  # TCP_LISTEN, TCP_ESTABLISHED, TCP_CLOSE (unconnected) ...
        self.name = b""  # bound address (abstract: leading NUL)
        self.vfs: tuple[int, int] | None = None  # (inode, dev) of the bound file
        self.peer = 0
        self.icons: list[int] = []  # peers of queued connections, in order
        self.rqlen = 0  # listening: queued connections; else bytes in the receive queue
        self.wqlen = 0  # listening: the backlog; else bytes in the send queue
        self.shutdown = 0


def _attrs(buf: bytes, off: int, end: int):
    while off + 4 <= end:
        ln, typ = struct.unpack_from("=HH", buf, off)
        if ln < 4:
            break
        yield typ, buf[off + 4 : off + ln]
        off += (ln + 3) & ~3


def _unix_dump(sock: socket.socket) -> dict[int, UnixDiag]:
    show = (UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS
            | UDIAG_SHOW_RQLEN)
    req = struct.pack("=BBHIII2I", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, show, 0xFFFFFFFF,
                      0xFFFFFFFF)
    hdr = struct.pack("=IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    sock.sendto(hdr + req, (0, 0))
    out: dict[int, UnixDiag] = {}
    while True:
        buf = sock.recv(1 << 20)
        off = 0
        while off + 16 <= len(buf):
            ln, typ, _fl, _seq, _pid = struct.unpack_from("=IHHII", buf, off)
            if ln < 16:
                return out
            if typ == NLMSG_DONE:
                return out
            if typ == NLMSG_ERROR:
                err = -struct.unpack_from("=i", buf, off + 16)[0]
                if err:
                    raise OSError(err, f"sock_diag: {os.strerror(err)}")
                return out
            if typ == SOCK_DIAG_BY_FAMILY:
                _fam, styp, state, _pad, ino = struct.unpack_from("=BBBBI", buf, off + 16)
                d = UnixDiag(inode=ino, type=styp, state=state)
                for at, val in _attrs(buf, off + 16 + 16, off + ln):
                    if at == UNIX_DIAG_NAME:
                        d.name = val
                    elif at == UNIX_DIAG_VFS:
                        d.vfs = struct.unpack_from("=II", val)
                    elif at == UNIX_DIAG_PEER:
                        d.peer = struct.unpack_from("=I", val)[0]
                    elif at == UNIX_DIAG_ICONS:
                        d.icons = list(struct.unpack(f"={len(val) // 4}I", val[: len(val) // 4 * 4]))
                    elif at == UNIX_DIAG_RQLEN:
                        d.rqlen, d.wqlen = struct.unpack_from("=II", val)
                    elif at == UNIX_DIAG_SHUTDOWN:
                        d.shutdown = val[0]
                out[ino] = d
            off += (ln + 3) & ~3


def _netlink_in(netns_path: str) -> socket.socket:
    """A NETLINK_SOCK_DIAG socket in the network namespace at netns_path."""
    if os.stat(netns_path).st_ino == os.stat("/proc/thread-self/ns/net").st_ino:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             NETLINK_SOCK_DIAG)
    result: list = []

    def run() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                lx.syscall(lx.NR["setns"], fd, CLONE_NEWNET)
            finally:
                os.close(fd)
            result.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                        NETLINK_SOCK_DIAG))
        except OSError as err:
            result.append(err)

    t = threading.Thread(target=run, name="torpor-netns")
    t.start()
    t.join()
    if isinstance(result[0], OSError):
        raise result[0]
    return result[0]


def unix_sockets(pid: int) -> dict[int, UnixDiag]:
    """Every unix socket of pid's network namespace, by inode."""
    sock = _netlink_in(f"/proc/{pid}/ns/net")
    try:
        return _unix_dump(sock)
    finally:
        sock.close()


def pidfd_getfd(pid: int, fd: int) -> int:
    """A copy (same open file description) of pid's fd in this process, close-on-exec."""
    pidfd = lx.syscall(lx.NR["pidfd_open"], pid, 0)
    try:
        return lx.syscall(lx.NR["pidfd_getfd"], pidfd, fd, 0)
    finally:
        os.close(pidfd)

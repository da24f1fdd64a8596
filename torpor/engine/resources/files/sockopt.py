"""Socket options shared by the unix and inet kinds: saved when they differ from a fresh
socket's of the same family and type, set again on restore. Not a kind of file itself."""

from __future__ import annotations

import os
import socket

from torpor.image.schema import SockOpt

SOL_SOCKET = socket.SOL_SOCKET
SO_PASSCRED, SO_PASSSEC, SO_PEEK_OFF = 16, 34, 42
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
SO_RCVTIMEO, SO_SNDTIMEO = 20, 21
IPV6_V6ONLY = 26
IP_FREEBIND, IP_TRANSPARENT = 15, 19
TCP_DEFER_ACCEPT, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = 9, 4, 5, 6
TCP_FASTOPEN, TCP_USER_TIMEOUT, TCP_CONGESTION = 23, 18, 13

COMMON = [
    (SOL_SOCKET, socket.SO_RCVBUF, 4), (SOL_SOCKET, socket.SO_SNDBUF, 4),
    (SOL_SOCKET, socket.SO_RCVLOWAT, 4), (SOL_SOCKET, SO_RCVTIMEO, 16),
    (SOL_SOCKET, SO_SNDTIMEO, 16), (SOL_SOCKET, SO_PASSCRED, 4), (SOL_SOCKET, SO_PASSSEC, 4),
    (SOL_SOCKET, socket.SO_PRIORITY, 4), (SOL_SOCKET, socket.SO_KEEPALIVE, 4),
    (SOL_SOCKET, SO_PEEK_OFF, 4),
]  # fmt: skip
UNIX = COMMON
INET = COMMON + [
    (SOL_SOCKET, socket.SO_REUSEADDR, 4), (SOL_SOCKET, socket.SO_REUSEPORT, 4),
    (SOL_SOCKET, socket.SO_BROADCAST, 4), (SOL_SOCKET, socket.SO_LINGER, 8),
    (SOL_SOCKET, socket.SO_OOBINLINE, 4),
]  # fmt: skip
IPV4 = [(socket.IPPROTO_IP, socket.IP_TOS, 4), (socket.IPPROTO_IP, socket.IP_TTL, 4),
        (socket.IPPROTO_IP, IP_FREEBIND, 4), (socket.IPPROTO_IP, IP_TRANSPARENT, 4)]
IPV6 = [(socket.IPPROTO_IPV6, IPV6_V6ONLY, 4), (socket.IPPROTO_IPV6, socket.IPV6_TCLASS, 4),
        (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 4),
        (socket.IPPROTO_IP, IP_FREEBIND, 4), (socket.IPPROTO_IP, IP_TRANSPARENT, 4)]
TCP = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 4), (socket.IPPROTO_TCP, TCP_DEFER_ACCEPT, 4),
       (socket.IPPROTO_TCP, TCP_KEEPIDLE, 4), (socket.IPPROTO_TCP, TCP_KEEPINTVL, 4),
       (socket.IPPROTO_TCP, TCP_KEEPCNT, 4), (socket.IPPROTO_TCP, TCP_FASTOPEN, 4),
       (socket.IPPROTO_TCP, TCP_USER_TIMEOUT, 4), (socket.IPPROTO_TCP, TCP_CONGESTION, 16),
       (socket.IPPROTO_TCP, socket.TCP_MAXSEG, 4)]

BUFFERS = {socket.SO_RCVBUF: SO_RCVBUFFORCE, socket.SO_SNDBUF: SO_SNDBUFFORCE}


def _get(s: socket.socket, level: int, name: int, size: int) -> bytes | None:
    try:
        return s.getsockopt(level, name, size)
    except OSError:
        return None


def differing(s: socket.socket, fresh: socket.socket, opts) -> list[SockOpt]:
    """The options in opts whose value on s differs from fresh's (SO_PEEK_OFF excluded: the
    caller reads it before using it)."""
    out = []
    for level, name, size in opts:
        if (level, name) == (SOL_SOCKET, SO_PEEK_OFF):
            continue
        mine = _get(s, level, name, size)
        if mine is not None and mine != _get(fresh, level, name, size):
            out.append(SockOpt(level, name, mine))
    return out


def apply(s: socket.socket, options: list[SockOpt]) -> None:
    """Set saved options; buffer sizes are halved (the kernel doubles what it is given) and
    forced past the sysctl limits (we are root). Options this kernel refuses are skipped
    when they are only tuning (a restore does not fail over a TCP_CONGESTION name)."""
    for o in options:
        if o.level == SOL_SOCKET and o.name in BUFFERS:
            val = int.from_bytes(o.value[:4], "little", signed=True) // 2
            try:
                s.setsockopt(SOL_SOCKET, BUFFERS[o.name], val)
            except OSError:
                s.setsockopt(SOL_SOCKET, o.name, val)
            continue
        value = o.value
        if o.level == socket.IPPROTO_TCP and o.name == TCP_CONGESTION:
            value = value.split(b"\0", 1)[0]
        try:
            s.setsockopt(o.level, o.name, value)
        except OSError:
            if o.level == SOL_SOCKET and o.name in (socket.SO_REUSEADDR, socket.SO_REUSEPORT):
                raise


# ---------------------------------------------------------------- socket families by inode

_FAMILIES: dict[int, str] = {}
_PROTO_NAMES = {"TCP": "tcp", "TCPv6": "tcp6", "UDP": "udp", "UDPv6": "udp6", "UNIX": "unix",
                "UNIX-STREAM": "unix"}


def note_families(pid: int) -> None:
    """Learn the family of every socket pid holds (the sockfs xattr system.sockprotoname,
    which also names unbound sockets), so that the kinds' matches(link, st) can tell a unix
    socket from a TCP one."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return
    for n in names:
        path = f"/proc/{pid}/fd/{n}"
        try:
            link = os.readlink(path)
            if not link.startswith("socket:["):
                continue
            proto = os.getxattr(path, "system.sockprotoname").rstrip(b"\0").decode()
        except (OSError, UnicodeDecodeError):
            continue
        _FAMILIES[int(link[8:-1])] = _PROTO_NAMES.get(proto, proto.lower())


def family(inode: int) -> str:
    """unix | tcp | tcp6 | udp | udp6 (else the protocol's name) for a socket seen by
    note_families, else ""."""
    return _FAMILIES.get(inode, "")

"""TCP and UDP sockets over IPv4 and IPv6 that are not part of a connection: TCP listeners
(address, port, backlog, options), unconnected TCP sockets (maybe bound), UDP sockets
(bound, maybe connected).

Dump reads everything through a pidfd_getfd copy: SO_DOMAIN/SO_TYPE/SO_PROTOCOL,
SO_ACCEPTCONN, getsockname/getpeername, TCP_INFO (state; for a listener its accept queue and
backlog) and the options that differ from a fresh socket's (SO_REUSEADDR, SO_REUSEPORT,
IPV6_V6ONLY, TCP_NODELAY, buffer sizes, ...).

Refused, before anything changes, with the process, the fd and both addresses: an
established (or accepted, connecting, closing) TCP connection, since connection repair is
not done; and a listener with connections the kernel completed but the program has not
accepted yet (those clients are outside the tree and their connections could not survive:
accept them, or checkpoint again a moment later). Datagrams queued on a UDP socket are not
saved (their senders cannot be recreated): they are dropped, as a network may drop them.

Restore (in the root task, so in the container's network namespace) creates the socket,
sets the options, binds to the same address and port (SO_REUSEADDR held on just for the bind
and listen, so that TIME_WAIT leftovers of the old process do not block the port), listens
with the same backlog or reconnects the UDP peer.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

from torpor.engine.linux.sockdiag import pidfd_getfd
from torpor.engine.resources.files import sockopt
from torpor.errors import TorporError
from torpor.image.schema import InetSocket

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.dump import DumpContext

TAG = "inet"
SO_PROTOCOL, SO_DOMAIN = 38, 39
TCP_INFO = 11
TCP_STATES = {1: "established", 2: "connecting (SYN_SENT)", 3: "SYN_RECV", 4: "FIN_WAIT1",
              5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "closed", 8: "CLOSE_WAIT", 9: "LAST_ACK",
              10: "listening", 11: "CLOSING"}


class InetSocketError(TorporError):
    pass


def matches(link: str, st: os.stat_result) -> bool:
    return link.startswith("socket:") and sockopt.family(st.st_ino) in ("tcp", "tcp6", "udp",
                                                                        "udp6")


def _fmt(family: int, addr) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


def dump(ctx: DumpContext, pid: int, fd: int, link: str, st: os.stat_result, info: dict) -> InetSocket:
    flags = int(info.get("flags", "0"), 8)
    s = socket.socket(fileno=pidfd_getfd(pid, fd))
    try:
        fam = s.getsockopt(socket.SOL_SOCKET, SO_DOMAIN)
        typ = s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        proto = s.getsockopt(socket.SOL_SOCKET, SO_PROTOCOL)
        pname = {socket.IPPROTO_TCP: "TCP", socket.IPPROTO_UDP: "UDP"}.get(proto)
        if fam not in (socket.AF_INET, socket.AF_INET6) or pname is None:
            raise InetSocketError(f"process {pid} fd {fd}: cannot checkpoint a socket of "
                                  f"family {fam} protocol {proto}")
        local = s.getsockname()
        what = f"process {pid} fd {fd}: {pname} socket {_fmt(fam, local)}"
        try:
            peer = s.getpeername()
        except OSError:
            peer = None
        rec = InetSocket(id=-1, family=fam, sock_type=typ, protocol=proto, flags=flags,
                         state="closed", addr=local[0], port=local[1])
        if fam == socket.AF_INET6:
            rec.scope_id = local[3]
        if proto == socket.IPPROTO_TCP:
            ti = s.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 104)
            state = ti[0]
            if state == 10:  # TCP_LISTEN
                pending, backlog = struct.unpack_from("=II", ti, 24)  # unacked, sacked
                if pending:
                    raise InetSocketError(
                        f"{what} is listening with {pending} connection(s) not yet accepted: "
                        "their clients are outside the checkpoint and TCP connection repair is "
                        "not supported; checkpoint again once they are accepted")
                rec.state, rec.backlog = "listening", backlog
            elif state != 7:  # anything but TCP_CLOSE is (part of) a connection
                other = _fmt(fam, peer) if peer else "?"
                raise InetSocketError(
                    f"{what} has a TCP connection with {other} "
                    f"({TCP_STATES.get(state, state)}): cannot checkpoint established TCP "
                    "connections (connection repair is not supported)")
        else:
            if peer is not None:
                rec.state, rec.peer_addr, rec.peer_port = "connected", peer[0], peer[1]
            elif local[1]:
                rec.state = "bound"
        with socket.socket(fam, typ, proto) as fresh:
            opts = sockopt.INET + (sockopt.IPV6 if fam == socket.AF_INET6 else sockopt.IPV4)
            if proto == socket.IPPROTO_TCP:
                opts = opts + sockopt.TCP
            rec.options = sockopt.differing(s, fresh, opts)
        return rec
    finally:
        s.close()


def open(rec: InetSocket, rctx) -> int:  # noqa: A001 - the kind's restore step
    s = socket.socket(rec.family, rec.sock_type | socket.SOCK_CLOEXEC, rec.protocol)
    try:
        sockopt.apply(s, rec.options)
        pname = "TCP" if rec.protocol == socket.IPPROTO_TCP else "UDP"
        addr: tuple = (rec.addr, rec.port)
        if rec.family == socket.AF_INET6:
            addr = (rec.addr, rec.port, 0, rec.scope_id)
        if rec.port:
            reuse = s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
                if rec.state == "listening":
                    s.listen(rec.backlog)
            except OSError as err:
                raise InetSocketError(
                    f"cannot {'listen on' if rec.state == 'listening' else 'bind'} {pname} "
                    f"{_fmt(rec.family, addr)}: {err.strerror}") from None
            finally:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, reuse)
        elif rec.state == "listening":
            s.listen(rec.backlog)
        if rec.state == "connected":
            try:
                s.connect((rec.peer_addr, rec.peer_port))
            except OSError as err:
                raise InetSocketError(f"cannot connect UDP socket to "
                                      f"{_fmt(rec.family, (rec.peer_addr, rec.peer_port))}: "
                                      f"{err.strerror}") from None
        fd = s.fileno()
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
        fl = fl | os.O_NONBLOCK if rec.flags & os.O_NONBLOCK else fl & ~os.O_NONBLOCK
        fcntl.fcntl(fd, fcntl.F_SETFL, fl)
    except BaseException:
        s.close()
        raise
    return s.detach()

"""Unix sockets: stream, dgram and seqpacket; unconnected, bound (path or abstract name),
listening with connections not yet accepted, connected pairs, and their queued data.

Dump: sock_diag (unix_diag) gives every socket's state, name, peer inode, the client ends of
the connections queued on a listener, and its shutdown state; options and the receive queue
are read through a pidfd_getfd copy. The queue is peeked, never consumed: SO_PEEK_OFF walks
it message by message and is put back afterwards. Every peer must be a socket of the
checkpointed tree: a socket connected to anything outside it (journald, a server's listener)
is refused, naming the process, the fd and the peer.

Restore (in the root task, inside the container's namespaces): a connected pair becomes a
socketpair() (data refilled in both directions, then shutdown replayed); a socket whose peer
had closed becomes a socketpair whose other end is closed; a listener is bound (a stale
socket file at its path is unlinked first), listens, and its queued clients connect to it in
the saved order; one-way connected dgram sockets connect to their (restored) server by name.
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import os
import socket
import stat

from torpor.engine.linux.sockdiag import (
    TCP_CLOSE,
    TCP_ESTABLISHED,
    TCP_LISTEN,
    UnixDiag,
    pidfd_getfd,
    unix_sockets,
)
from torpor.engine.resources.files import sockopt
from torpor.errors import TorporError
from torpor.image.schema import UnixSocket

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from torpor.engine.dump import DumpContext

TAG = "unix"
TYPES = {socket.SOCK_STREAM: "stream", socket.SOCK_DGRAM: "dgram",
         socket.SOCK_SEQPACKET: "seqpacket"}
SCM_RIGHTS = 1
SHUT_BITS = ((1, socket.SHUT_RD), (2, socket.SHUT_WR))


class UnixSocketError(TorporError):
    pass


def matches(link: str, st: os.stat_result) -> bool:
    return link.startswith("socket:") and sockopt.family(st.st_ino) == "unix"


# ------------------------------------------------------------------------------ dump


def _addr(name: bytes) -> str:
    if not name:
        return "an unnamed socket"
    if name[:1] == b"\0":
        return "@" + name[1:].decode(errors="replace")
    return name.decode(errors="replace")


def _tree_sockets(ctx: DumpContext) -> dict[int, tuple[int, int]]:
    """socket inode -> (pid, fd) for every process of the tree being checkpointed: the
    processes this checkpoint traces (all are seized while files are dumped)."""
    cache = ctx.__dict__.get("_unix_tree")
    if cache is not None:
        return cache
    me = str(os.getpid())
    pids = {ctx.pid} | {p for p, _ in ctx.fd_owner}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with builtins.open(f"/proc/{name}/status") as f:
                for line in f:
                    if line.startswith("TracerPid:"):
                        if line.split()[1] == me:
                            pids.add(int(name))
                        break
        except OSError:
            continue
    out: dict[int, tuple[int, int]] = {}
    for pid in sorted(pids):
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for n in names:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{n}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out.setdefault(int(link[8:-1]), (pid, int(n)))
    ctx.__dict__["_unix_tree"] = out
    return out


def _diag(ctx: DumpContext, pid: int) -> dict[int, UnixDiag]:
    cache = ctx.__dict__.setdefault("_unix_diag", {})
    ns = os.stat(f"/proc/{pid}/ns/net").st_ino
    if ns not in cache:
        cache[ns] = unix_sockets(pid)
    return cache[ns]


def _peek_queue(s: socket.socket, what: str, stream: bool) -> list[bytes]:
    """The messages in s's receive queue, without consuming them (SO_PEEK_OFF walk)."""
    old = s.getsockopt(socket.SOL_SOCKET, sockopt.SO_PEEK_OFF)
    msgs: list[bytes] = []
    off = 0
    size = 1 << 18
    s.setsockopt(socket.SOL_SOCKET, sockopt.SO_PEEK_OFF, 0)
    try:
        for _ in range(1 << 20):
            try:
                data, anc, flags, _addr_ = s.recvmsg(size, socket.CMSG_SPACE(4 * 253),
                                                     socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == SCM_RIGHTS:
                    for i in range(0, len(cdata) - len(cdata) % 4, 4):
                        os.close(int.from_bytes(cdata[i : i + 4], "little"))
                    raise UnixSocketError(f"{what}: file descriptors are in flight in its "
                                          "queue (SCM_RIGHTS): cannot checkpoint them")
            if not stream and flags & socket.MSG_TRUNC:  # a bigger message: read it whole
                size *= 8
                s.setsockopt(socket.SOL_SOCKET, sockopt.SO_PEEK_OFF, off)
                continue
            if not data:
                break  # end of stream (or an empty datagram: ends the walk)
            msgs.append(data)
            off += len(data)
    finally:
        s.setsockopt(socket.SOL_SOCKET, sockopt.SO_PEEK_OFF, old)
    if stream:
        return [b"".join(msgs)] if msgs else []
    return msgs


def _listener_of(diag: dict[int, UnixDiag], inode: int) -> UnixDiag | None:
    return next((d for d in diag.values() if d.state == TCP_LISTEN and inode in d.icons), None)


def dump(ctx: DumpContext, pid: int, fd: int, link: str, st: os.stat_result, info: dict) -> UnixSocket:
    flags = int(info.get("flags", "0"), 8)
    diag = _diag(ctx, pid)
    d = diag.get(st.st_ino)
    what = f"process {pid} fd {fd}"
    if d is None:
        raise UnixSocketError(f"{what}: unix socket {st.st_ino} is not listed by sock_diag")
    kind = TYPES.get(d.type)
    if kind is None:
        raise UnixSocketError(f"{what}: unix socket of unknown type {d.type}")
    what = f"{what} (unix {kind} socket {_addr(d.name)})"
    tree = _tree_sockets(ctx)
    rec = UnixSocket(id=-1, inode=d.inode, sock_type=d.type, flags=flags, state="unconnected",
                     name=d.name, shutdown=d.shutdown)
    if d.name and d.name[:1] != b"\0":
        rec.name_unlinked, rec.name_mode = _name_file(pid, d)
        if d.name[:1] != b"/":  # relative: bound in the process's working directory
            rec.name_dir = os.readlink(f"/proc/{pid}/cwd")
    if d.state == TCP_LISTEN:
        rec.state = "listening"
        rec.backlog = d.wqlen
        for client in d.icons:
            if client not in tree:
                raise UnixSocketError(
                    f"{what}: a connection from outside the checkpointed tree is waiting to "
                    "be accepted (client socket "
                    f"{client or 'closed'}): accept it or let it go, then checkpoint again")
            cd = diag.get(client)
            if cd is not None and cd.wqlen:
                cpid, cfd = tree[client]
                raise UnixSocketError(
                    f"{what}: process {cpid} fd {cfd} sent data on a connection not yet "
                    "accepted: cannot checkpoint data in a pending connection")
        rec.queued = list(d.icons)
    elif d.state == TCP_ESTABLISHED:
        if d.peer:
            if d.peer not in tree:
                pd = diag.get(d.peer)
                raise UnixSocketError(
                    f"{what}: connected to {_addr(pd.name if pd else b'')} (socket "
                    f"{d.peer}) outside the checkpointed tree")
            rec.state, rec.peer = "connected", d.peer
        else:
            lst = _listener_of(diag, d.inode)
            if lst is not None:
                if lst.inode not in tree:
                    raise UnixSocketError(
                        f"{what}: connecting to {_addr(lst.name)} (socket {lst.inode}) outside "
                        "the checkpointed tree (not accepted yet)")
                rec.state, rec.listener = "queued", lst.inode
            elif d.type == socket.SOCK_DGRAM and d.name:
                pass  # a dgram server: clients connecting to it mark it established too
            else:
                rec.state = "peer-closed"  # (an unnamed dgram: restored the same way)
    elif d.state != TCP_CLOSE:
        raise UnixSocketError(f"{what}: unexpected state {d.state}")
    copy = pidfd_getfd(pid, fd)
    s = socket.socket(fileno=copy)
    try:
        with socket.socket(socket.AF_UNIX, d.type) as fresh:
            rec.options = sockopt.differing(s, fresh, sockopt.UNIX)
        peek_off = s.getsockopt(socket.SOL_SOCKET, sockopt.SO_PEEK_OFF)
        if peek_off != -1:
            rec.options.append(sockopt.SockOpt(socket.SOL_SOCKET, sockopt.SO_PEEK_OFF,
                                               peek_off.to_bytes(4, "little", signed=True)))
        if rec.state != "listening":
            msgs = _peek_queue(s, what, d.type == socket.SOCK_STREAM)
            if msgs:
                if rec.state == "unconnected" and not d.name:
                    raise UnixSocketError(f"{what}: data queued on an unnamed, unconnected "
                                          "socket cannot be put back")
                rec.msgs = [len(m) for m in msgs]
                rec.data_offset = ctx.pages.write(b"".join(msgs))
    finally:
        s.close()
    return rec


def _name_file(pid: int, d: UnixDiag) -> tuple[bool, int]:
    """(unlinked, mode) of the socket file a socket is bound to (its path seen from pid)."""
    path = d.name.split(b"\0", 1)[0].decode(errors="surrogateescape")
    if not path.startswith("/"):
        path = os.path.join(os.readlink(f"/proc/{pid}/cwd"), path)
    try:
        st = os.stat(f"/proc/{pid}/root{path}")
    except OSError:
        return True, -1
    if d.vfs is not None and st.st_ino != d.vfs[0]:
        return True, -1
    return False, stat.S_IMODE(st.st_mode)


# --------------------------------------------------------------------------- restore


def _state(rctx) -> dict:
    st = rctx.__dict__.get("_unix")
    if st is None:
        st = rctx.__dict__["_unix"] = {
            "ready": {},  # inode -> kept fd, made ahead of its record (pair ends, clients)
            "recs": {r.inode: r for r in rctx.tree.files if isinstance(r, UnixSocket)},
        }
    return st


def _bind(s: socket.socket, rec: UnixSocket) -> None:
    if rec.name_dir:  # a relative name: bound from the directory it was bound in
        here = os.open(".", os.O_PATH | os.O_CLOEXEC)
        try:
            os.chdir(rec.name_dir)
            _bind_here(s, rec)
        finally:
            os.fchdir(here)
            os.close(here)
    else:
        _bind_here(s, rec)


def _bind_here(s: socket.socket, rec: UnixSocket) -> None:
    name = rec.name
    if name[:1] != b"\0":
        path = name.split(b"\0", 1)[0]
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)  # left behind by the checkpointed process
        except FileNotFoundError:
            pass
        name = path
    try:
        s.bind(name)
    except OSError as err:
        raise UnixSocketError(f"cannot bind a unix socket to {_addr(rec.name)}: "
                              f"{err.strerror}") from None
    if rec.name_mode >= 0 and name[:1] != b"\0":
        os.chmod(name, rec.name_mode)


def _refill(sender: socket.socket, rec: UnixSocket, pages, to: bytes | None = None) -> None:
    """Put rec's saved receive queue back by sending it from sender (to `to` if given)."""
    if not rec.msgs:
        return
    total = sum(rec.msgs)
    sender.setsockopt(socket.SOL_SOCKET, sockopt.SO_SNDBUFFORCE, max(total * 2, 1 << 16))
    off = rec.data_offset
    for n in rec.msgs:
        data = bytes(pages[off : off + n])
        off += n
        try:
            if to is not None:
                sender.sendto(data, socket.MSG_DONTWAIT, to)
            elif rec.sock_type == socket.SOCK_STREAM:
                sender.sendall(data)
            else:
                sender.send(data, socket.MSG_DONTWAIT)
        except OSError as err:
            raise UnixSocketError(f"cannot refill the queue of unix socket {rec.inode}: "
                                  f"{err.strerror}") from None


def _new(rec: UnixSocket) -> socket.socket:
    return socket.socket(socket.AF_UNIX, rec.sock_type | socket.SOCK_CLOEXEC)


def _dependents(rctx, rec: UnixSocket) -> list[UnixSocket]:
    """Dgram sockets connected one way to rec (their peer is rec, rec's peer is not them)."""
    return [r for r in _state(rctx)["recs"].values()
            if r.state == "connected" and r.peer == rec.inode and rec.peer != r.inode]


def _make(rctx, rec: UnixSocket) -> socket.socket:
    """Create rec's socket and whatever must be made with it; returns rec's socket."""
    st = _state(rctx)
    recs = st["recs"]
    if rec.state == "connected" and recs.get(rec.peer) is not None \
            and recs[rec.peer].peer == rec.inode:  # a pair with both ends in the image
        other = recs[rec.peer]
        a, b = socket.socketpair(socket.AF_UNIX, rec.sock_type | socket.SOCK_CLOEXEC)
        _refill(b, rec, rctx.pages)
        _refill(a, other, rctx.pages)
        for r, s in ((rec, a), (other, b)):
            if r.name and not any(o.name == r.name and o.inode != r.inode for o in recs.values()):
                _bind(s, r)  # an accepted socket shares its listener's name: not rebound
        st["ready"][other.inode] = rctx._keep(b.detach())
        return a
    if rec.state == "connected":  # dgram, connected one way to a server socket
        target = recs.get(rec.peer)
        if target is None:
            raise UnixSocketError(f"the image lacks unix socket {rec.peer}, peer of {rec.inode}")
        _ensure(rctx, target)
        fd = st["ready"].pop(rec.inode, None)
        if fd is None:
            raise UnixSocketError(f"unix socket {rec.inode} could not be connected to "
                                  f"{_addr(target.name)}")
        return socket.socket(fileno=fd)
    if rec.state == "peer-closed":
        a, b = socket.socketpair(socket.AF_UNIX, rec.sock_type | socket.SOCK_CLOEXEC)
        _refill(b, rec, rctx.pages)
        b.close()
        if rec.name:
            _bind(a, rec)
        return a
    if rec.state == "queued":
        lst = recs.get(rec.listener)
        if lst is None:
            raise UnixSocketError(f"the image lacks the listener of unix socket {rec.inode}")
        _ensure(rctx, lst)
        fd = st["ready"].pop(rec.inode, None)
        if fd is None:
            raise UnixSocketError(f"unix socket {rec.inode} was not queued on its listener")
        return socket.socket(fileno=fd)
    # unconnected or listening: bound, then its own dependents, then the name may go
    s = _new(rec)
    if rec.name:
        _bind(s, rec)
    if rec.state == "listening":
        s.listen(rec.backlog)
        for client in rec.queued:
            crec = recs.get(client)
            if crec is None:
                raise UnixSocketError(f"the image lacks unix socket {client}, queued on "
                                      f"{_addr(rec.name)}")
            c = _new(crec)
            if crec.name and crec.name != rec.name:
                _bind(c, crec)
            c.setblocking(False)
            try:
                c.connect(_connect_name(rec))
            except OSError as err:
                raise UnixSocketError(f"cannot queue a connection on {_addr(rec.name)}: "
                                      f"{err.strerror}") from None
            c.setblocking(True)
            st["ready"][client] = rctx._keep(c.detach())
    elif rec.msgs:
        with socket.socket(socket.AF_UNIX, rec.sock_type | socket.SOCK_CLOEXEC) as tmp:
            _refill(tmp, rec, rctx.pages, to=_connect_name(rec))
    for dep in _dependents(rctx, rec):
        c = _new(dep)
        if dep.name:
            _bind(c, dep)
        if dep.msgs and dep.name:  # it only receives from rec: rec sends it back
            _refill(s, dep, rctx.pages, to=_connect_name(dep))
        try:
            c.connect(_connect_name(rec))
        except OSError as err:
            raise UnixSocketError(f"cannot connect a unix socket to {_addr(rec.name)}: "
                                  f"{err.strerror}") from None
        st["ready"][dep.inode] = rctx._keep(c.detach())
    if rec.name_unlinked:
        try:
            path = rec.name.split(b"\0", 1)[0]
            os.unlink(os.path.join(rec.name_dir.encode(), path) if rec.name_dir else path)
        except OSError:
            pass
    return s


def _connect_name(rec: UnixSocket) -> bytes:
    if rec.name[:1] == b"\0":
        return rec.name
    path = rec.name.split(b"\0", 1)[0]
    return os.path.join(rec.name_dir.encode(), path) if rec.name_dir else path


def _ensure(rctx, rec: UnixSocket) -> None:
    """Make rec's socket now (if not made yet) and keep it until its record is opened."""
    st = _state(rctx)
    if rec.inode in st["ready"] or rec.inode in st.setdefault("made", set()):
        return
    st["made"].add(rec.inode)
    s = _make(rctx, rec)
    st["ready"][rec.inode] = rctx._keep(s.detach())


def open(rec: UnixSocket, rctx) -> int:  # noqa: A001 - the kind's restore step
    st = _state(rctx)
    _ensure(rctx, rec)
    fd = os.dup(st["ready"].pop(rec.inode))
    s = socket.socket(fileno=fd)
    try:
        sockopt.apply(s, rec.options)
        for bit, how in SHUT_BITS:
            if rec.shutdown & bit:
                try:
                    s.shutdown(how)
                except OSError as err:
                    if err.errno != errno.ENOTCONN:
                        raise
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
        fl = fl | os.O_NONBLOCK if rec.flags & os.O_NONBLOCK else fl & ~os.O_NONBLOCK
        fcntl.fcntl(fd, fcntl.F_SETFL, fl)
    except BaseException:
        s.close()
        raise
    return s.detach()

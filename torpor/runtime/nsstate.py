"""Namespace state that the engine does not see: read at checkpoint, put back at restore.

* `in_namespaces(pid, kinds, fn)` runs fn in a forked helper that joined the namespaces of
  pid (setns) and returns its JSON-able result (or raises its error, one line).
* UTS: the hostname and domain name as they are (not as config.json had them).
* Network: the addresses of the loopback device (rtnetlink), added back after `lo` is up
  (127.0.0.1/8 and ::1 come back by themselves).
* SysV IPC: shm segments, semaphore sets and message queues of the IPC namespace with their
  ids and contents (/proc/sysvipc lists the reader's namespace; *_next_id gives the ids back).
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from torpor import jsonlite
from torpor.errors import TorporError
from torpor.runtime import linux as L

NS_FLAGS = {"ipc": L.CLONE_NEWIPC, "uts": L.CLONE_NEWUTS, "net": L.CLONE_NEWNET,
            "mnt": L.CLONE_NEWNS}


def in_namespaces(pid: int, kinds: list[str], fn):
    """fn() in a child that setns'd into /proc/pid/ns/<kind> for each kind; its result."""
    fds = []
    try:
        for k in kinds:
            fds.append((k, os.open(f"/proc/{pid}/ns/{k}", os.O_RDONLY | os.O_CLOEXEC)))
    except OSError as err:
        for _, fd in fds:
            os.close(fd)
        raise TorporError(f"cannot open the namespaces of process {pid}: {err.strerror}") from None
    r, w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        code = 0
        try:
            os.close(r)
            for k, fd in fds:
                L.setns(fd, NS_FLAGS[k])
            out = jsonlite.dumps({"ok": fn()}).encode()
        except BaseException as err:  # noqa: BLE001 - reported to the parent
            out = jsonlite.dumps({"err": f"{type(err).__name__}: {err}" if not isinstance(
                err, TorporError) else str(err)}).encode()
            code = 1
        try:
            while out:
                n = os.write(w, out)
                out = out[n:]
        finally:
            os._exit(code)
    os.close(w)
    for _, fd in fds:
        os.close(fd)
    chunks = []
    while True:
        b = os.read(r, 1 << 16)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(child, 0)
    try:
        res = jsonlite.loads(b"".join(chunks) or b"{}")
    except ValueError:
        res = {}
    if "ok" in res:
        return res["ok"]
    raise TorporError(res.get("err") or "namespace helper failed")


# ------------------------------------------------------------------------ UTS


def read_uts() -> dict:
    u = os.uname()
    dom = ""
    try:
        with open("/proc/sys/kernel/domainname") as f:
            dom = f.read().strip()
    except OSError:
        pass
    return {"hostname": u.nodename, "domainname": "" if dom == "(none)" else dom}


# ------------------------------------------------------------------------ SysV IPC


# ------------------------------------------------------------------------ network (rtnetlink)

RTM_NEWADDR, RTM_GETADDR = 20, 22
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 1, 4, 0x200, 0x400, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
IFA_ADDRESS, IFA_LOCAL = 1, 2


def _nl_request(sock: socket.socket, mtype: int, flags: int, payload: bytes) -> list[tuple]:
    sock.send(struct.pack("=IHHII", 16 + len(payload), mtype, flags, 1, 0) + payload)
    out = []
    while True:
        data = sock.recv(1 << 16)
        off = 0
        while off + 16 <= len(data):
            ln, t, _f, _seq, _pid = struct.unpack_from("=IHHII", data, off)
            if ln < 16:
                return out
            body = data[off + 16: off + ln]
            if t == NLMSG_DONE:
                return out
            if t == NLMSG_ERROR:
                err = -struct.unpack_from("=i", body)[0]
                if err:
                    raise OSError(err, os.strerror(err))
                return out
            out.append((t, body))
            off += (ln + 3) & ~3
        if not flags & NLM_F_DUMP and not flags & NLM_F_ACK:
            return out


def _attrs(data: bytes) -> dict[int, bytes]:
    out = {}
    off = 0
    while off + 4 <= len(data):
        ln, t = struct.unpack_from("=HH", data, off)
        if ln < 4:
            break
        out[t] = data[off + 4: off + ln]
        off += (ln + 3) & ~3
    return out


def loopback_addresses() -> list[dict]:
    """Addresses of `lo` in the current network namespace."""
    idx = socket.if_nametoindex("lo")
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as s:  # NETLINK_ROUTE
        s.bind((0, 0))
        msgs = _nl_request(s, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP,
                           struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0))
    out = []
    for t, body in msgs:
        if t != RTM_NEWADDR or len(body) < 8:
            continue
        fam, plen, flags, scope, index = struct.unpack_from("=BBBBI", body)
        if index != idx:
            continue
        a = _attrs(body[8:])
        addr = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS)
        if addr is None:
            continue
        out.append({"family": fam, "prefixlen": plen, "flags": flags, "scope": scope,
                    "address": addr.hex()})
    return out


def add_loopback_addresses(addrs: list[dict]) -> None:
    """Add the saved addresses to `lo` (those that exist already are left alone)."""
    if not addrs:
        return
    idx = socket.if_nametoindex("lo")
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as s:
        s.bind((0, 0))
        for a in addrs:
            raw = bytes.fromhex(a["address"])
            attrs = b""
            for t in (IFA_LOCAL, IFA_ADDRESS):
                attrs += struct.pack("=HH", 4 + len(raw), t) + raw + b"\0" * (-len(raw) % 4)
            body = struct.pack("=BBBBI", a["family"], a["prefixlen"], a["flags"] & 0xFF,
                               a["scope"], idx) + attrs
            try:
                _nl_request(s, RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                            body)
            except OSError as err:
                if err.errno != errno.EEXIST:
                    fam = "inet6" if a["family"] == socket.AF_INET6 else "inet"
                    text = socket.inet_ntop(a["family"], raw) if fam else a["address"]
                    raise TorporError(f"cannot add {fam} address {text}/{a['prefixlen']} to lo: "
                                      f"{err.strerror}") from None


# ------------------------------------------------------------------------ SysV IPC contents

IPC_CREAT, IPC_EXCL, IPC_NOWAIT, IPC_RMID = 0o1000, 0o2000, 0o4000, 0
SHM_RDONLY, GETALL, SETALL, MSG_COPY = 0o10000, 13, 17, 0o40000
MSGMAX = 1 << 16


def _libc():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    libc.shmdt.argtypes = [ctypes.c_void_p]
    libc.msgrcv.restype = ctypes.c_ssize_t
    libc.msgrcv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long,
                            ctypes.c_int]
    libc.msgsnd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def _oserr(what: str) -> OSError:
    import ctypes

    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def _rows(kind: str) -> list[list[str]]:
    try:
        with open(f"/proc/sysvipc/{kind}") as f:
            return [line.split() for line in f.read().splitlines()[1:] if line.strip()]
    except OSError:
        return []


def save_ipc() -> dict:
    """Every SysV object of the current IPC namespace with its contents (JSON-able)."""
    import base64
    import ctypes

    libc = _libc()
    out: dict = {"shm": [], "sem": [], "msg": []}
    for r in _rows("shm"):
        key, sid, perms, size, nattch = int(r[0]), int(r[1]), int(r[2], 8), int(r[3]), int(r[6])
        if nattch:
            raise TorporError(f"SysV shared memory segment {sid} is attached by {nattch} "
                              "process(es): checkpoint of attached segments is not supported "
                              "yet")
        addr = libc.shmat(sid, None, SHM_RDONLY)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise _oserr(f"shmat {sid}")
        try:
            data = ctypes.string_at(addr, size)
        finally:
            libc.shmdt(addr)
        out["shm"].append({"key": key, "id": sid, "mode": perms & 0o777, "size": size,
                           "data": base64.b64encode(data.rstrip(b"\0")).decode()})
    for r in _rows("sem"):
        key, sid, perms, nsems = int(r[0]), int(r[1]), int(r[2], 8), int(r[3])
        arr = (ctypes.c_ushort * nsems)()
        if libc.semctl(sid, 0, GETALL, arr) < 0:
            raise _oserr(f"semctl GETALL {sid}")
        out["sem"].append({"key": key, "id": sid, "mode": perms & 0o777, "values": list(arr)})
    for r in _rows("msg"):
        key, mid, perms, qnum = int(r[0]), int(r[1]), int(r[2], 8), int(r[4])
        msgs = []
        buf = ctypes.create_string_buffer(8 + MSGMAX)
        for i in range(qnum):
            n = libc.msgrcv(mid, buf, MSGMAX, i, IPC_NOWAIT | MSG_COPY)
            if n < 0:
                raise _oserr(f"msgrcv MSG_COPY {mid}")
            mtype = struct.unpack_from("=q", buf.raw)[0]
            msgs.append([mtype, base64.b64encode(buf.raw[8:8 + n]).decode()])
        out["msg"].append({"key": key, "id": mid, "mode": perms & 0o777, "messages": msgs})
    return out


def _next_id(kind: str, value: int) -> None:
    """The id the next object of that kind gets (the kernel forgets it once used)."""
    with open(f"/proc/sys/kernel/{kind}_next_id", "w") as f:
        f.write(str(value))


def restore_ipc(saved: dict) -> None:
    """Recreate the objects with their ids and contents in the (new) current IPC namespace."""
    import base64
    import ctypes

    if not any(saved.get(k) for k in ("shm", "sem", "msg")):
        return
    libc = _libc()
    for o in saved.get("shm") or []:
        _next_id("shm", o["id"])
        sid = libc.shmget(o["key"], o["size"], IPC_CREAT | IPC_EXCL | o["mode"])
        if sid != o["id"]:
            raise TorporError(f"SysV shared memory segment {o['id']} came back as {sid}")
        data = base64.b64decode(o["data"])
        if data:
            addr = libc.shmat(sid, None, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                raise _oserr(f"shmat {sid}")
            ctypes.memmove(addr, data, len(data))
            libc.shmdt(addr)
    for o in saved.get("sem") or []:
        _next_id("sem", o["id"])
        n = len(o["values"])
        sid = libc.semget(o["key"], n, IPC_CREAT | IPC_EXCL | o["mode"])
        if sid != o["id"]:
            raise TorporError(f"SysV semaphore set {o['id']} came back as {sid}")
        arr = (ctypes.c_ushort * n)(*o["values"])
        if libc.semctl(sid, 0, SETALL, arr) < 0:
            raise _oserr(f"semctl SETALL {sid}")
    for o in saved.get("msg") or []:
        _next_id("msg", o["id"])
        mid = libc.msgget(o["key"], IPC_CREAT | IPC_EXCL | o["mode"])
        if mid != o["id"]:
            raise TorporError(f"SysV message queue {o['id']} came back as {mid}")
        for mtype, b64 in o["messages"]:
            data = base64.b64decode(b64)
            buf = ctypes.create_string_buffer(struct.pack("=q", mtype) + data, 8 + len(data))
            if libc.msgsnd(mid, buf, len(data), IPC_NOWAIT) < 0:
                raise _oserr(f"msgsnd {mid}")

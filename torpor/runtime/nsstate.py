"""Namespace state that the engine does not see: read at checkpoint, put back at restore.

* `in_namespaces(pid, kinds, fn)` runs fn in a forked helper that joined the namespaces of
  pid (setns) and returns its JSON-able result (or raises its error, one line).
* UTS: the hostname and domain name as they are (not as config.json had them).
* Network: the addresses of the loopback device (rtnetlink), added back after `lo` is up
  (127.0.0.1/8 and ::1 come back by themselves).
* SysV IPC: the objects of the IPC namespace (/proc/sysvipc reads the reader's namespace).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct

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
            out = json.dumps({"ok": fn()}).encode()
        except BaseException as err:  # noqa: BLE001 - reported to the parent
            out = json.dumps({"err": f"{type(err).__name__}: {err}" if not isinstance(
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
        res = json.loads(b"".join(chunks) or b"{}")
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


def ipc_objects() -> dict:
    """{"shm": [...], "sem": [...], "msg": [...]} of the current IPC namespace (key, id)."""
    out = {}
    for kind in ("shm", "sem", "msg"):
        items = []
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            lines = []
        for line in lines:
            parts = line.split()
            if len(parts) >= 2:
                items.append({"key": int(parts[0]), "id": int(parts[1])})
        out[kind] = items
    return out


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

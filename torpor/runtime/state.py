"""The state store: <root>/<id>/state.json, written atomically, guarded by a lock.

Kept import-light (torpor.jsonlite, os, fcntl, time): containerd runs `torpor state` for every operation.

Layout of <root>/<id>/:
    state.json      the container record (this module)
    config.json     a copy of the bundle's config.json (or the embedded default's)
    exec.fifo       present while the container is `created`; `start` opens it
    container.log   output of a detached container (monitor)
    exit.json       exit status of the init, written by the monitor
    monitor.log     the monitor's own diagnostics
"""

from __future__ import annotations

import fcntl
import os
import time

from torpor import jsonlite
from torpor.errors import AlreadyExists, NotFound, TorporError

STATE_VERSION = 1
_ID_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ID_REST = _ID_FIRST | frozenset("_.+-")


def valid_name(name: str, longest: int = 1024) -> bool:
    """A letter or digit, then letters, digits and _ . + -, `longest` at most: container ids
    and checkpoint names (not a regex: re costs ~5 ms of every `torpor state`)."""
    return (0 < len(name) <= longest and name[0] in _ID_FIRST
            and all(c in _ID_REST for c in name))

# stored statuses; the live status is computed by Container.status()
CREATING, CREATED, RUNNING, PAUSED, STOPPED = "creating", "created", "running", "paused", "stopped"


def check_id(cid: str) -> str:
    if not valid_name(cid or ""):
        raise TorporError(f"invalid container id {cid!r} (letters, digits, and _ . + - only)")
    return cid


def container_dir(root: str, cid: str) -> str:
    return os.path.join(root, check_id(cid))


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def write_json_atomic(path: str, obj: object, mode: int = 0o600) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, jsonlite.dumps(obj, indent=1).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def read_json(path: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            return jsonlite.loads(f.read())
    except FileNotFoundError:
        return None
    except ValueError:
        return None


class Lock:
    """flock on the container directory (exclusive); a context manager."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> Lock:
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"container \"{os.path.basename(self.path)}\" does not exist") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class StateRecord:
    """The persistent part of a container: what state.json holds."""

    FIELDS = {
        "version": STATE_VERSION, "id": "", "status": CREATING, "pid": 0, "pid_start": 0,
        "bundle": "", "rootfs": "", "created": "", "owner": "", "annotations": {},
        "cgroup_paths": {}, "cgroup_v2": "", "namespaces": {}, "monitor_pid": 0,
        "monitor_start": 0, "embedded": False, "terminal": False, "started": "",
    }

    def __init__(self, **kw) -> None:
        for key, default in self.FIELDS.items():
            value = kw.get(key, default)
            if isinstance(value, (dict, list)):
                value = type(value)(value)
            setattr(self, key, value)

    def to_dict(self) -> dict:
        return {key: getattr(self, key) for key in self.FIELDS}

    @classmethod
    def from_dict(cls, d: dict) -> StateRecord:
        return cls(**{k: v for k, v in d.items() if k in cls.FIELDS})


class StateStore:
    """All containers under one --root."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def dir(self, cid: str) -> str:
        return container_dir(self.root, cid)

    def reserve(self, cid: str) -> str:
        """Create <root>/<id>/ atomically; AlreadyExists if the id is taken."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        path = self.dir(cid)
        try:
            os.mkdir(path, 0o711)
        except FileExistsError:
            raise AlreadyExists(f"container \"{cid}\" already exists") from None
        return path

    def load(self, cid: str) -> StateRecord:
        path = os.path.join(self.dir(cid), "state.json")
        d = read_json(path)
        if d is None:
            raise NotFound(f"container \"{cid}\" does not exist")
        return StateRecord.from_dict(d)

    def save(self, rec: StateRecord) -> None:
        write_json_atomic(os.path.join(self.dir(rec.id), "state.json"), rec.to_dict())

    def ids(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in names if valid_name(n)
                and os.path.exists(os.path.join(self.root, n, "state.json"))]

    def lock(self, cid: str) -> Lock:
        return Lock(self.dir(cid))

"""config.json: parsing and validation into typed records.

Every field of the OCI runtime spec is either supported, rejected with a one-line error, or
accepted with a logged warning (listed in docs/runtime.md). Nothing is silently dropped.
"""

from __future__ import annotations

import os

from torpor import jsonlite
from torpor.errors import TorporError
from torpor.log import log
from torpor.records import factory, record

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms on `create`
if TYPE_CHECKING:
    from typing import Any


class ConfigError(TorporError):
    """config.json is missing, not JSON, or asks for something torpor cannot do."""


NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "cgroup", "user", "time")

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}


@record
class User:
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = factory(list)
    umask: int | None = None


@record
class Capabilities:
    bounding: list[str] = factory(list)
    effective: list[str] = factory(list)
    inheritable: list[str] = factory(list)
    permitted: list[str] = factory(list)
    ambient: list[str] = factory(list)


@record
class Process:
    args: list[str]
    env: list[str] = factory(list)
    cwd: str = "/"
    user: User = factory(User)
    terminal: bool = False
    rlimits: list[tuple[int, int, int]] = factory(list)  # (resource, soft, hard)
    no_new_privileges: bool = False
    capabilities: Capabilities | None = None
    oom_score_adj: int | None = None


@record
class Mount:
    destination: str
    type: str = ""
    source: str = ""
    options: list[str] = factory(list)


@record
class Namespace:
    type: str
    path: str = ""


@record
class Device:
    path: str
    type: str
    major: int = 0
    minor: int = 0
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0


@record
class Resources:
    memory_limit: int | None = None
    memory_reservation: int | None = None
    memory_swap: int | None = None
    memory_swappiness: int | None = None
    pids_limit: int | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpu_cpus: str | None = None
    cpu_mems: str | None = None
    devices: list[dict[str, Any]] = factory(list)
    unified: dict[str, str] = factory(dict)


@record
class Config:
    raw: dict[str, Any]
    oci_version: str
    process: Process | None
    root_path: str
    root_readonly: bool
    hostname: str | None
    domainname: str | None
    mounts: list[Mount]
    namespaces: list[Namespace]
    resources: Resources
    cgroups_path: str | None
    masked_paths: list[str]
    readonly_paths: list[str]
    devices: list[Device]
    sysctl: dict[str, str]
    rootfs_propagation: str
    annotations: dict[str, str]
    warnings: list[str] = factory(list)

    def namespace(self, kind: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == kind:
                return ns
        return None


def _type(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"config.json: {where} must be an integer, not {jsonlite.dumps(value)}")
    if not isinstance(value, kind):
        names = {str: "a string", int: "an integer", bool: "a boolean", list: "an array",
                 dict: "an object"}
        want = names.get(kind, str(kind)) if isinstance(kind, type) else "a number"
        raise ConfigError(f"config.json: {where} must be {want}, not {jsonlite.dumps(value)[:40]}")
    return value


def _str_list(value: Any, where: str) -> list[str]:
    _type(value, list, where)
    for i, item in enumerate(value):
        _type(item, str, f"{where}[{i}]")
    return list(value)


def load_bundle_config(bundle: str) -> dict[str, Any]:
    """Read <bundle>/config.json; errors name the bundle and the JSON position."""
    if not os.path.isdir(bundle):
        raise ConfigError(f"bundle {bundle}: no such directory")
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(f"bundle {bundle}: config.json not found") from None
    except OSError as err:
        raise ConfigError(f"bundle {bundle}: config.json: {err.strerror}") from None
    return parse_json(data, f"bundle {bundle}: config.json")


def parse_json(data: bytes | str, what: str) -> Any:
    try:
        return jsonlite.loads(data)
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: not UTF-8 text") from None
    except ValueError:
        pass  # json says where (it imports re: only on this path)
    import json

    try:
        return json.loads(data)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{what}: invalid JSON at line {err.lineno} column {err.colno}: "
                          f"{err.msg}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: not UTF-8 text") from None


def parse_process(p: Any, where: str = "process") -> Process:
    _type(p, dict, where)
    args = p.get("args")
    if not args:
        raise ConfigError(f"config.json: {where}.args must name the program to run")
    args = _str_list(args, f"{where}.args")
    env = _str_list(p.get("env", []) or [], f"{where}.env")
    cwd = _type(p.get("cwd", "/") or "/", str, f"{where}.cwd")
    if not cwd.startswith("/"):
        raise ConfigError(f"config.json: {where}.cwd must be an absolute path, not {cwd!r}")
    u = _type(p.get("user", {}) or {}, dict, f"{where}.user")
    if u.get("username"):
        raise ConfigError(f"config.json: {where}.user.username is for Windows; use uid/gid")
    user = User(
        uid=_type(u.get("uid", 0), int, f"{where}.user.uid"),
        gid=_type(u.get("gid", 0), int, f"{where}.user.gid"),
        additional_gids=[_type(g, int, f"{where}.user.additionalGids")
                         for g in _type(u.get("additionalGids", []) or [], list,
                                        f"{where}.user.additionalGids")],
        umask=u.get("umask"),
    )
    rlimits = []
    for i, r in enumerate(_type(p.get("rlimits", []) or [], list, f"{where}.rlimits")):
        _type(r, dict, f"{where}.rlimits[{i}]")
        name = r.get("type", "")
        if name not in RLIMITS:
            raise ConfigError(f"config.json: {where}.rlimits[{i}]: unknown rlimit {name!r}")
        soft = _type(r.get("soft", 0), int, f"{where}.rlimits[{i}].soft")
        hard = _type(r.get("hard", 0), int, f"{where}.rlimits[{i}].hard")
        rlimits.append((RLIMITS[name], soft, hard))
    caps = None
    if p.get("capabilities") is not None:
        from torpor.runtime.linux import CAP_NUMBER

        c = _type(p["capabilities"], dict, f"{where}.capabilities")
        sets = {}
        for key in ("bounding", "effective", "inheritable", "permitted", "ambient"):
            names = _str_list(c.get(key, []) or [], f"{where}.capabilities.{key}")
            for n in names:
                if n not in CAP_NUMBER:
                    raise ConfigError(f"config.json: {where}.capabilities.{key}: unknown "
                                      f"capability {n!r}")
            sets[key] = names
        caps = Capabilities(**sets)
    for key in ("apparmorProfile", "selinuxLabel"):
        if p.get(key):
            log.warning("%s.%s is not supported by torpor; ignored", where, key)
    for key in ("consoleSize", "ioPriority", "scheduler", "execCPUAffinity"):
        if p.get(key):
            log.warning("%s.%s is not supported by torpor; ignored", where, key)
    return Process(
        args=args, env=env, cwd=cwd, user=user,
        terminal=bool(p.get("terminal", False)), rlimits=rlimits,
        no_new_privileges=bool(p.get("noNewPrivileges", False)), capabilities=caps,
        oom_score_adj=p.get("oomScoreAdj"),
    )


def parse_resources(r: Any, where: str = "linux.resources") -> Resources:
    _type(r, dict, where)
    res = Resources()
    mem = _type(r.get("memory") or {}, dict, f"{where}.memory")
    res.memory_limit = mem.get("limit")
    res.memory_reservation = mem.get("reservation")
    res.memory_swap = mem.get("swap")
    res.memory_swappiness = mem.get("swappiness")
    for key in ("kernel", "kernelTCP"):
        if mem.get(key) is not None:
            log.warning("%s.memory.%s is deprecated and not supported; ignored", where, key)
    for key, val in (("limit", res.memory_limit), ("reservation", res.memory_reservation),
                     ("swap", res.memory_swap)):
        if val is not None:
            _type(val, int, f"{where}.memory.{key}")
    pids = _type(r.get("pids") or {}, dict, f"{where}.pids")
    if pids.get("limit") is not None:
        res.pids_limit = _type(pids["limit"], int, f"{where}.pids.limit")
    cpu = _type(r.get("cpu") or {}, dict, f"{where}.cpu")
    for key, attr in (("shares", "cpu_shares"), ("quota", "cpu_quota"), ("period", "cpu_period")):
        if cpu.get(key) is not None:
            setattr(res, attr, _type(cpu[key], int, f"{where}.cpu.{key}"))
    if cpu.get("cpus"):
        res.cpu_cpus = _type(cpu["cpus"], str, f"{where}.cpu.cpus")
    if cpu.get("mems"):
        res.cpu_mems = _type(cpu["mems"], str, f"{where}.cpu.mems")
    for key in ("realtimeRuntime", "realtimePeriod", "idle", "burst"):
        if cpu.get(key):
            log.warning("%s.cpu.%s is not supported by torpor; ignored", where, key)
    res.devices = [d for d in _type(r.get("devices") or [], list, f"{where}.devices")]
    res.unified = dict(_type(r.get("unified") or {}, dict, f"{where}.unified"))
    for key in ("blockIO", "hugepageLimits", "network", "rdma"):
        if r.get(key):
            log.warning("%s.%s is not supported by torpor; ignored", where, key)
    return res


def parse_config(raw: Any, bundle: str | None = None) -> Config:
    """Validate a config.json document. `bundle` resolves a relative root.path."""
    if not isinstance(raw, dict):
        raise ConfigError("config.json: the top level must be a JSON object")
    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        log.warning("%s", msg)

    oci_version = raw.get("ociVersion", "")
    if not isinstance(oci_version, str) or not oci_version:
        raise ConfigError("config.json: ociVersion is missing")
    if not oci_version.startswith("1."):
        raise ConfigError(f"config.json: ociVersion {oci_version!r} is not supported (1.x)")
    process = parse_process(raw["process"]) if raw.get("process") is not None else None
    root = _type(raw.get("root") or {}, dict, "root")
    root_path = _type(root.get("path", ""), str, "root.path")
    if not root_path:
        raise ConfigError("config.json: root.path is missing")
    if bundle is not None and not os.path.isabs(root_path):
        root_path = os.path.join(bundle, root_path)
    root_path = os.path.abspath(root_path)
    if not os.path.isdir(root_path):
        raise ConfigError(f"config.json: root.path {root_path}: no such directory")
    mounts = []
    for i, m in enumerate(_type(raw.get("mounts") or [], list, "mounts")):
        _type(m, dict, f"mounts[{i}]")
        dest = _type(m.get("destination", ""), str, f"mounts[{i}].destination")
        if not dest.startswith("/"):
            raise ConfigError(f"config.json: mounts[{i}].destination must be absolute, "
                              f"not {dest!r}")
        if m.get("uidMappings") or m.get("gidMappings"):
            raise ConfigError(f"config.json: mounts[{i}]: idmapped mounts are not supported")
        mounts.append(Mount(destination=dest, type=_type(m.get("type", "") or "", str, "type"),
                            source=_type(m.get("source", "") or "", str, "source"),
                            options=_str_list(m.get("options", []) or [],
                                              f"mounts[{i}].options")))
    linux = _type(raw.get("linux") or {}, dict, "linux")
    namespaces = []
    seen = set()
    for i, n in enumerate(_type(linux.get("namespaces") or [], list, "linux.namespaces")):
        _type(n, dict, f"linux.namespaces[{i}]")
        kind = n.get("type", "")
        if kind not in NAMESPACE_TYPES:
            raise ConfigError(f"config.json: linux.namespaces[{i}]: unknown type {kind!r}")
        if kind in seen:
            raise ConfigError(f"config.json: linux.namespaces: {kind} appears twice")
        seen.add(kind)
        if kind in ("user", "time") and not n.get("path"):
            raise ConfigError(f"config.json: a new {kind} namespace is not supported by torpor")
        if kind == "user":
            raise ConfigError("config.json: user namespaces are not supported by torpor")
        path = _type(n.get("path", "") or "", str, f"linux.namespaces[{i}].path")
        if path and not os.path.lexists(path):
            raise ConfigError(f"config.json: linux.namespaces[{i}]: {kind} namespace path "
                              f"{path} does not exist")
        namespaces.append(Namespace(type=kind, path=path))
    if linux.get("uidMappings") or linux.get("gidMappings"):
        raise ConfigError("config.json: linux.uidMappings/gidMappings need a user namespace, "
                          "which torpor does not support")
    hostname = raw.get("hostname") or None
    domainname = raw.get("domainname") or None
    if hostname is not None:
        _type(hostname, str, "hostname")
    if (hostname or domainname) and not any(n.type == "uts" and not n.path for n in namespaces):
        raise ConfigError("config.json: hostname needs a new uts namespace in linux.namespaces")
    resources = parse_resources(linux.get("resources") or {})
    cgroups_path = linux.get("cgroupsPath") or None
    if cgroups_path is not None:
        _type(cgroups_path, str, "linux.cgroupsPath")
        if ":" in cgroups_path:
            raise ConfigError(f"config.json: linux.cgroupsPath {cgroups_path!r} is a systemd "
                              "path; torpor manages cgroupfs paths only (cgroup_manager cgroupfs)")
    devices = []
    for i, d in enumerate(_type(linux.get("devices") or [], list, "linux.devices")):
        _type(d, dict, f"linux.devices[{i}]")
        dtype = d.get("type", "")
        if dtype not in ("c", "b", "u", "p"):
            raise ConfigError(f"config.json: linux.devices[{i}]: bad type {dtype!r}")
        devices.append(Device(path=_type(d.get("path", ""), str, f"linux.devices[{i}].path"),
                              type=dtype, major=int(d.get("major", 0)),
                              minor=int(d.get("minor", 0)),
                              file_mode=int(d.get("fileMode", 0o666)),
                              uid=int(d.get("uid", 0)), gid=int(d.get("gid", 0))))
    sysctl = {str(k): str(v) for k, v in _type(linux.get("sysctl") or {}, dict,
                                                 "linux.sysctl").items()}
    prop = linux.get("rootfsPropagation") or "rprivate"
    if prop not in ("private", "rprivate", "slave", "rslave", "shared", "rshared",
                    "unbindable", "runbindable"):
        raise ConfigError(f"config.json: linux.rootfsPropagation {prop!r} is not valid")
    for key in ("intelRdt", "personality", "mountLabel", "memoryPolicy"):
        if linux.get(key):
            warn(f"linux.{key} is not supported by torpor; the container runs without it")
    if raw.get("hooks"):
        hooks = raw["hooks"]
        if isinstance(hooks, dict) and any(hooks.values()):
            warn("hooks are not supported by torpor; they are not run")
    for key in ("solaris", "windows", "vm", "zos"):
        if raw.get(key):
            raise ConfigError(f"config.json: {key} configuration is not supported on Linux")
    annotations = raw.get("annotations") or {}
    _type(annotations, dict, "annotations")
    return Config(
        raw=raw, oci_version=oci_version, process=process, root_path=root_path,
        root_readonly=bool(root.get("readonly", False)), hostname=hostname,
        domainname=domainname, mounts=mounts, namespaces=namespaces, resources=resources,
        cgroups_path=cgroups_path,
        masked_paths=_str_list(linux.get("maskedPaths") or [], "linux.maskedPaths"),
        readonly_paths=_str_list(linux.get("readonlyPaths") or [], "linux.readonlyPaths"),
        devices=devices, sysctl=sysctl, rootfs_propagation=prop,
        annotations={str(k): str(v) for k, v in annotations.items()}, warnings=warnings,
    )

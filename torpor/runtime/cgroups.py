"""Cgroups for containers: v1 hierarchies (this machine) and the v2 unified hierarchy.

A container's cgroup is `linux.cgroupsPath` (absolute, below each hierarchy's root) or
/torpor/<id>. With v1 the init joins every mounted controller hierarchy; pause/resume use
freezer.state. With v2 (a unified hierarchy that has controllers) cgroup.freeze, memory.max,
pids.max, cpu.max and cpu.weight are used. A hybrid host (v1 controllers plus an empty
cgroup2) is driven through v1.
"""

from __future__ import annotations

import os
import signal
import time

from torpor.errors import TorporError

CGROUP_ROOT = "/sys/fs/cgroup"


class CgroupError(TorporError):
    pass


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as err:
        raise CgroupError(f"cgroup: cannot write {value!r} to {path}: "
                          f"{err.strerror or err}") from None


def hierarchies() -> tuple[dict[str, str], str]:
    """({controller: v1 mount point}, v2 mount point or "") from /proc/self/mountinfo."""
    v1: dict[str, str] = {}
    v2 = ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rfields = right.split()
            if len(rfields) < 3:
                continue
            mnt = fields[4]
            if rfields[0] == "cgroup2":
                v2 = v2 or mnt
            elif rfields[0] == "cgroup":
                for opt in rfields[2].split(","):
                    if opt in ("rw", "ro") or opt.startswith("name=") or "=" in opt:
                        continue
                    if opt in ("clone_children", "noprefix", "xattr", "cpuset_v2_mode",
                               "favordynmods", "nsdelegate", "memory_recursiveprot"):
                        continue
                    v1.setdefault(opt, mnt)
    return v1, v2


def v2_controllers(mnt: str) -> list[str]:
    try:
        return _read(os.path.join(mnt, "cgroup.controllers")).split()
    except OSError:
        return []


class Cgroup:
    """The cgroup of one container, in every hierarchy it lives in."""

    def __init__(self, paths: dict[str, str], v2: str = "") -> None:
        self.paths = dict(paths)  # v1 controller -> absolute directory
        self.v2 = v2  # absolute directory in the unified hierarchy (v2 mode only)

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_path(cls, cgroups_path: str) -> Cgroup:
        rel = "/" + cgroups_path.strip("/")
        if ".." in rel.split("/"):
            raise CgroupError(f"cgroupsPath {cgroups_path!r} must not contain ..")
        v1, v2 = hierarchies()
        if not v1 and v2 and v2_controllers(v2):
            return cls({}, os.path.join(v2, rel.lstrip("/")))
        if not v1:
            raise CgroupError("no cgroup hierarchy with controllers is mounted")
        paths = {c: os.path.join(m, rel.lstrip("/")) for c, m in v1.items()}
        return cls(paths)

    @property
    def dirs(self) -> list[str]:
        out = sorted(set(self.paths.values()))
        if self.v2:
            out.append(self.v2)
        return out

    @property
    def freezer_path(self) -> str:
        return self.paths.get("freezer") or self.v2

    def create(self) -> None:
        for ctrl, path in sorted(self.paths.items()):
            if ctrl == "cpuset":
                self._mkdir_cpuset(path)
            else:
                os.makedirs(path, exist_ok=True)
        if self.v2:
            self._mkdir_v2(self.v2)

    def _mkdir_cpuset(self, path: str) -> None:
        parts = []
        p = path
        while not os.path.isdir(p):
            parts.append(p)
            p = os.path.dirname(p)
        for d in reversed(parts):
            os.mkdir(d)
            parent = os.path.dirname(d)
            for f in ("cpuset.cpus", "cpuset.mems"):
                try:
                    if not _read(os.path.join(d, f)):
                        _write(os.path.join(d, f), _read(os.path.join(parent, f)))
                except OSError:
                    pass

    def _mkdir_v2(self, path: str) -> None:
        v1, mnt = hierarchies()
        wanted = [c for c in ("cpu", "cpuset", "memory", "pids", "io") if c in v2_controllers(mnt)]
        rel = os.path.relpath(path, mnt)
        cur = mnt
        for part in rel.split("/"):
            for c in wanted:
                try:
                    with open(os.path.join(cur, "cgroup.subtree_control"), "w") as f:
                        f.write(f"+{c}")
                except OSError:
                    pass
            cur = os.path.join(cur, part)
            os.makedirs(cur, exist_ok=True)

    def join(self, pid: int) -> None:
        for d in self.dirs:
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    # ------------------------------------------------------------------ limits
    def apply(self, res) -> None:
        """Apply a config.Resources; raises CgroupError naming the file that refused.

        As runc's cgroup managers: a zero (memory limits, cpu shares/period/quota, pids limit)
        means "not set" and leaves the file alone (Docker's `update` sends every field, unset
        ones as 0); a negative pids limit means max."""
        res = _zeros_unset(res)
        if self.v2:
            self._apply_v2(res)
            return
        p = self.paths
        if res.unified:
            raise CgroupError("linux.resources.unified needs cgroup v2; this host uses v1")
        if "memory" in p:
            m = p["memory"]
            if res.memory_limit is not None:
                _write(os.path.join(m, "memory.limit_in_bytes"), str(res.memory_limit))
            if res.memory_reservation is not None:
                _write(os.path.join(m, "memory.soft_limit_in_bytes"), str(res.memory_reservation))
            if res.memory_swap is not None:
                f = os.path.join(m, "memory.memsw.limit_in_bytes")
                if os.path.exists(f):
                    _write(f, str(res.memory_swap))
                elif res.memory_swap not in (-1, res.memory_limit):
                    raise CgroupError("memory.swap: swap accounting is not enabled on this host")
            if res.memory_swappiness is not None and 0 <= res.memory_swappiness <= 100:
                _write(os.path.join(m, "memory.swappiness"), str(res.memory_swappiness))
        elif res.memory_limit is not None:
            raise CgroupError("memory limit: the memory controller is not mounted")
        if res.pids_limit is not None:
            if "pids" not in p:
                raise CgroupError("pids limit: the pids controller is not mounted")
            value = "max" if res.pids_limit < 0 else str(res.pids_limit)
            _write(os.path.join(p["pids"], "pids.max"), value)
        if "cpu" in p:
            c = p["cpu"]
            if res.cpu_shares is not None:
                _write(os.path.join(c, "cpu.shares"), str(res.cpu_shares))
            if res.cpu_period is not None:
                _write(os.path.join(c, "cpu.cfs_period_us"), str(res.cpu_period))
            if res.cpu_quota is not None:
                _write(os.path.join(c, "cpu.cfs_quota_us"), str(res.cpu_quota))
        if "cpuset" in p:
            if res.cpu_cpus:
                _write(os.path.join(p["cpuset"], "cpuset.cpus"), res.cpu_cpus)
            if res.cpu_mems:
                _write(os.path.join(p["cpuset"], "cpuset.mems"), res.cpu_mems)
        if res.devices and "devices" in p:
            self._apply_devices_v1(p["devices"], res.devices)

    def _apply_devices_v1(self, path: str, rules: list[dict]) -> None:
        from torpor.runtime.rootfs import DEFAULT_DEVICES

        denied = False
        for r in rules:
            kind = r.get("type") or "a"
            major = "*" if r.get("major") in (None, -1) else str(r["major"])
            minor = "*" if r.get("minor") in (None, -1) else str(r["minor"])
            access = r.get("access") or "rwm"
            rule = "a" if kind == "a" and major == minor == "*" else f"{kind} {major}:{minor} {access}"
            if r.get("allow"):
                _write(os.path.join(path, "devices.allow"), rule)
            else:
                denied = True
                _write(os.path.join(path, "devices.deny"), rule)
        if denied:  # the default devices and the pty stay usable, as runc does
            for _p, kind, major, minor, _m in DEFAULT_DEVICES:
                _write(os.path.join(path, "devices.allow"), f"{kind} {major}:{minor} rwm")
            for rule in ("c 136:* rwm", "c 5:2 rwm", "c 5:1 rwm", "c 5:0 rwm"):
                _write(os.path.join(path, "devices.allow"), rule)

    def _apply_v2(self, res) -> None:
        d = self.v2
        if res.memory_limit is not None:
            _write(os.path.join(d, "memory.max"),
                   "max" if res.memory_limit < 0 else str(res.memory_limit))
        if res.memory_reservation is not None:
            _write(os.path.join(d, "memory.low"), str(res.memory_reservation))
        if res.memory_swap is not None and res.memory_limit is not None and res.memory_swap >= 0:
            _write(os.path.join(d, "memory.swap.max"), str(max(0, res.memory_swap - res.memory_limit)))
        if res.pids_limit is not None:
            _write(os.path.join(d, "pids.max"),
                   "max" if res.pids_limit <= 0 else str(res.pids_limit))
        if res.cpu_shares is not None:
            weight = 1 + ((res.cpu_shares - 2) * 9999) // 262142
            _write(os.path.join(d, "cpu.weight"), str(max(1, min(10000, weight))))
        if res.cpu_quota is not None or res.cpu_period is not None:
            quota = "max" if res.cpu_quota is None or res.cpu_quota < 0 else str(res.cpu_quota)
            _write(os.path.join(d, "cpu.max"), f"{quota} {res.cpu_period or 100000}")
        if res.cpu_cpus:
            _write(os.path.join(d, "cpuset.cpus"), res.cpu_cpus)
        if res.cpu_mems:
            _write(os.path.join(d, "cpuset.mems"), res.cpu_mems)
        for key, value in res.unified.items():
            if "/" in key or key.startswith("."):
                raise CgroupError(f"linux.resources.unified: bad key {key!r}")
            _write(os.path.join(d, key), value)

    # ------------------------------------------------------------------ processes
    def procs(self) -> list[int]:
        pids: set[int] = set()
        for d in self.dirs:
            try:
                pids.update(int(x) for x in _read(os.path.join(d, "cgroup.procs")).split())
            except (OSError, ValueError):
                continue
        return sorted(pids)

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs)

    def freezer_state(self) -> str:
        """THAWED, FREEZING or FROZEN ("" when there is no freezer)."""
        if self.paths.get("freezer"):
            try:
                return _read(os.path.join(self.paths["freezer"], "freezer.state"))
            except OSError:
                return ""
        if self.v2:
            try:
                return "FROZEN" if _read(os.path.join(self.v2, "cgroup.freeze")) == "1" else "THAWED"
            except OSError:
                return ""
        return ""

    def freeze(self, timeout: float = 10.0) -> None:
        if self.paths.get("freezer"):
            f = os.path.join(self.paths["freezer"], "freezer.state")
            deadline = time.monotonic() + timeout
            delay = 0.001
            while True:
                _write(f, "FROZEN")
                if _read(f) == "FROZEN":
                    return
                if time.monotonic() > deadline:
                    _write(f, "THAWED")
                    raise CgroupError("cgroup freezer: the container did not freeze in time")
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        elif self.v2:
            _write(os.path.join(self.v2, "cgroup.freeze"), "1")
            deadline = time.monotonic() + timeout
            while "frozen 1" not in _read(os.path.join(self.v2, "cgroup.events")):
                if time.monotonic() > deadline:
                    _write(os.path.join(self.v2, "cgroup.freeze"), "0")
                    raise CgroupError("cgroup freezer: the container did not freeze in time")
                time.sleep(0.005)
        else:
            raise CgroupError("pause needs the cgroup freezer, which is not mounted")

    def thaw(self) -> None:
        if self.paths.get("freezer"):
            _write(os.path.join(self.paths["freezer"], "freezer.state"), "THAWED")
        elif self.v2:
            _write(os.path.join(self.v2, "cgroup.freeze"), "0")

    def signal_all(self, sig: int) -> None:
        """Send sig to every process of the cgroup (frozen around it, as runc does)."""
        frozen_before = self.freezer_state() == "FROZEN"
        can_freeze = bool(self.freezer_path)
        if can_freeze and not frozen_before:
            try:
                self.freeze()
            except CgroupError:
                can_freeze = False
        for pid in self.procs():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if can_freeze and (not frozen_before or sig == signal.SIGKILL):
            self.thaw()

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL everything and wait until the cgroup is empty."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.procs()
            if not pids:
                return
            if self.v2 and os.path.exists(os.path.join(self.v2, "cgroup.kill")):
                _write(os.path.join(self.v2, "cgroup.kill"), "1")
            else:
                self.signal_all(signal.SIGKILL)
            if time.monotonic() > deadline:
                raise CgroupError(f"cgroup: processes {pids[:10]} did not die")
            time.sleep(0.01)

    def destroy(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for d in self.dirs:
            while os.path.isdir(d):
                try:
                    os.rmdir(d)
                except FileNotFoundError:
                    break
                except OSError as err:
                    if time.monotonic() > deadline:
                        raise CgroupError(f"cgroup: cannot remove {d}: {err.strerror}") from None
                    time.sleep(0.02)

    # ------------------------------------------------------------------ stats
    def stats(self) -> dict:
        out: dict = {}

        def num(path: str) -> int | None:
            try:
                v = _read(path)
                return -1 if v == "max" else int(v)
            except (OSError, ValueError):
                return None

        if self.v2:
            out["memory"] = {"usage": num(os.path.join(self.v2, "memory.current")),
                             "limit": num(os.path.join(self.v2, "memory.max"))}
            out["pids"] = {"current": num(os.path.join(self.v2, "pids.current")),
                           "limit": num(os.path.join(self.v2, "pids.max"))}
            try:
                for line in _read(os.path.join(self.v2, "cpu.stat")).splitlines():
                    k, v = line.split()
                    if k == "usage_usec":
                        out["cpu"] = {"usage": {"total": int(v) * 1000}}
            except OSError:
                pass
            return out
        p = self.paths
        if "memory" in p:
            out["memory"] = {"usage": num(os.path.join(p["memory"], "memory.usage_in_bytes")),
                             "limit": num(os.path.join(p["memory"], "memory.limit_in_bytes")),
                             "max_usage": num(os.path.join(p["memory"],
                                                           "memory.max_usage_in_bytes"))}
        if "pids" in p:
            out["pids"] = {"current": num(os.path.join(p["pids"], "pids.current")),
                           "limit": num(os.path.join(p["pids"], "pids.max"))}
        if "cpuacct" in p:
            out["cpu"] = {"usage": {"total": num(os.path.join(p["cpuacct"], "cpuacct.usage"))}}
        return out


_ZERO_IS_UNSET = ("memory_limit", "memory_reservation", "memory_swap", "pids_limit",
                  "cpu_shares", "cpu_period", "cpu_quota")


def _zeros_unset(res):
    import copy

    if not any(getattr(res, k, None) == 0 for k in _ZERO_IS_UNSET):
        return res
    res = copy.copy(res)
    for k in _ZERO_IS_UNSET:
        if getattr(res, k, None) == 0:
            setattr(res, k, None)
    return res

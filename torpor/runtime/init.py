"""Spawning a container process: the init of a new container, or an `exec` into one.

The caller (torpor create, the monitor, or exec) forks stage 1, which joins the cgroup, joins
(setns) or creates (unshare) the namespaces and forks stage 2; unshare(CLONE_NEWPID) only
affects children, so stage 2 is PID 1 of a new pid namespace. Stage 1 reports stage 2's host
PID and exits, so stage 2 is reparented to the caller's subreaper (containerd shim, conmon,
the torpor monitor) and no torpor process stays in between.

Stage 2 (the init) sets up the rootfs, hostname, sysctls, rlimits, reports OK on the sync
pipe, then blocks opening <state dir>/exec.fifo for writing until `torpor start` opens it for
reading. Only then it drops capabilities, switches user, sets no_new_privs and execve's.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import signal
import socket
import struct
import sys
from collections.abc import Callable

from torpor.errors import TorporError
from torpor.records import factory, record
from torpor.runtime import console, rootfs, seccomp  # imported before pivot_root
from torpor.runtime import linux as L

NS_FLAGS = {
    "pid": L.CLONE_NEWPID, "network": L.CLONE_NEWNET, "mount": L.CLONE_NEWNS,
    "ipc": L.CLONE_NEWIPC, "uts": L.CLONE_NEWUTS, "cgroup": L.CLONE_NEWCGROUP,
    "user": L.CLONE_NEWUSER, "time": L.CLONE_NEWTIME,
}
NS_PROC = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
           "cgroup": "cgroup", "user": "user", "time": "time"}
# setns order: mount last (it changes the root the other paths are resolved against)
_JOIN_ORDER = ["user", "ipc", "uts", "network", "pid", "time", "cgroup", "mount"]


class InitError(TorporError):
    pass


@record
class Plan:
    process: object  # config.Process
    cgroup: object  # cgroups.Cgroup
    cfg: object | None = None  # config.Config: a new container (rootfs set-up); None for exec
    state_dir: str | None = None  # where exec.fifo is; None: execve at once (exec)
    join: list[tuple[str, str]] = factory(list)  # (ns type, path) to setns
    unshare: list[str] = factory(list)  # ns types to create
    stdio: tuple[int, int, int] | None = None  # fds for 0,1,2; None inherits the caller's
    pty_slave: int | None = None
    pty_name: str = ""
    # exec with a terminal: the process makes its pty in the container's devpts and sends the
    # master over this (connected) console socket itself
    console_sock: object | None = None
    preserve_fds: int = 0
    no_pivot: bool = False
    # runs in the init after the container is set up, instead of waiting for start + execve;
    # it must not return (the checkpoint/restore extension point, see docs/runtime.md)
    init_hook: Callable[[], None] | None = None
    seccomp: bytes | None = None  # BPF program of linux.seccomp (runtime/seccomp.py)


def _msg(fd: int, text: str) -> None:
    data = (text.replace("\n", " ") + "\n").encode(errors="replace")[:4000]
    try:
        os.write(fd, data)
    except OSError:
        pass


def spawn(plan: Plan) -> int:
    """Fork the process; returns its host PID once it is set up (raises InitError)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid1 = os.fork()
    if pid1 == 0:  # stage 1
        code = 1
        try:
            os.close(r)
            _stage1(plan, w)
            code = 0
        except BaseException as err:  # noqa: BLE001 - reported to the parent
            _msg(w, "ERR " + _describe(err))
        finally:
            os._exit(code)
    os.close(w)
    pid2 = 0
    error = ""
    ok = False
    buf = b""
    with os.fdopen(r, "rb", buffering=0) as f:
        while not ok and not error:
            chunk = f.read(4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith("PID "):
                    pid2 = int(text[4:])
                elif text == "OK":
                    ok = True
                elif text.startswith("ERR "):
                    error = text[4:]
    try:
        os.waitpid(pid1, 0)
    except ChildProcessError:
        pass
    if ok and pid2:
        return pid2
    if pid2:
        _kill_quietly(pid2)
    raise InitError(error or "the container process exited during set-up")


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _describe(err: BaseException) -> str:
    if isinstance(err, TorporError):
        return str(err)
    if isinstance(err, OSError):
        text = err.strerror or str(err)
        if err.filename and str(err.filename) not in text:
            text += f": {err.filename}"
        return text
    return f"{type(err).__name__}: {err}"


def _stage1(plan: Plan, w: int) -> None:
    plan.cgroup.join(os.getpid())
    fds = []
    for kind in _JOIN_ORDER:
        for k, path in plan.join:
            if k == kind:
                try:
                    fds.append((kind, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
                except OSError as err:
                    raise InitError(f"{kind} namespace {path}: {err.strerror}") from None
    for kind, fd in fds:
        try:
            L.setns(fd, NS_FLAGS[kind])
        except OSError as err:
            raise InitError(f"cannot join the {kind} namespace: {err.strerror}") from None
        os.close(fd)
    flags = 0
    for kind in plan.unshare:
        flags |= NS_FLAGS[kind]
    if flags:
        L.unshare(flags)
    pid2 = os.fork()
    if pid2 == 0:
        try:
            _stage2(plan, w)
        except BaseException as err:  # noqa: BLE001
            if w >= 0:
                _msg(w, "ERR " + _describe(err))
            os._exit(1)
        os._exit(1)
    _msg(w, f"PID {pid2}")


def _reset_signals() -> None:
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, 0x8913, ifr))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sh22x", b"lo", flags | 0x1 | 0x40))


def _lookup(exe: str, env: dict[str, str]) -> str:
    if "/" in exe:
        if not os.path.exists(exe):
            raise InitError(f"exec: {exe!r}: no such file or directory")
        if not os.access(exe, os.X_OK) or os.path.isdir(exe):
            raise InitError(f"exec: {exe!r}: permission denied")
        return exe
    for d in env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                     ).split(":"):
        cand = os.path.join(d or ".", exe)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise InitError(f"exec: {exe!r}: executable file not found in $PATH")


def _env(process) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in process.env:
        k, eq, v = item.partition("=")
        if eq and k:
            env[k] = v
    if "PATH" not in env:
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def _close_fds(keep: set[int]) -> None:
    lo = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > lo:
            os.closerange(lo, fd)
        lo = max(lo, fd + 1)
    os.closerange(lo, 1 << 20)


def _stage2(plan: Plan, w: int) -> None:
    _reset_signals()
    proc = plan.process
    cfg = plan.cfg
    os.setsid()
    if plan.console_sock is not None:
        try:
            master, plan.pty_slave, plan.pty_name = console.open_pty_here()
        except OSError as err:
            raise InitError(f"cannot make a pty in the container: {err.strerror}") from None
        console.send_fd(plan.console_sock, master, plan.pty_name)
        os.close(master)
        plan.console_sock.close()
    if plan.pty_slave is not None:
        console.make_controlling(plan.pty_slave)
    elif plan.stdio is not None:
        for target, fd in enumerate(plan.stdio):
            if fd != target:
                os.dup2(fd, target)
    dirfd = -1
    if cfg is not None:
        if "network" in plan.unshare:
            _loopback_up()
        rootfs.prepare(cfg, getattr(plan.cgroup, "paths", {}),
                       console=plan.pty_name if plan.pty_slave is not None else None)
        if cfg.hostname:
            L.sethostname(cfg.hostname)
        if cfg.domainname:
            L.setdomainname(cfg.domainname)
        if plan.state_dir:
            dirfd = os.open(plan.state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        rootfs.pivot(cfg.root_path, plan.no_pivot)
        rootfs.finish(cfg)  # sysctls included
    if proc.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc.oom_score_adj))
    for res, soft, hard in proc.rlimits:
        try:
            resource.setrlimit(res, (soft, hard))
        except (OSError, ValueError) as err:
            raise InitError(f"rlimit {res} ({soft}, {hard}): {err} (torpor lacks "
                            "CAP_SYS_RESOURCE here: a hard limit cannot be raised)") from None
    try:
        os.chdir(proc.cwd)
    except FileNotFoundError:
        os.makedirs(proc.cwd, exist_ok=True)
        os.chdir(proc.cwd)
    env = _env(proc)
    exe = _lookup(proc.args[0], env) if plan.init_hook is None else ""
    keep = {w, dirfd} | set(range(3, 3 + plan.preserve_fds))
    _close_fds(keep)
    if plan.init_hook is not None:
        _msg(w, "OK")
        os.close(w)
        plan.init_hook()
        os._exit(0)
    _msg(w, "OK")
    os.close(w)
    w = -1
    if dirfd >= 0:
        fifo = os.open("exec.fifo", os.O_WRONLY | os.O_CLOEXEC, dir_fd=dirfd)
        os.write(fifo, b"0")
        os.close(fifo)
        os.close(dirfd)
    try:
        if plan.seccomp and not proc.no_new_privileges:  # as runc: while CAP_SYS_ADMIN
            seccomp.install(plan.seccomp)  # is still ours (no no_new_privs needed)
        apply_credentials(proc)
        if plan.seccomp and proc.no_new_privileges:
            seccomp.install(plan.seccomp)
        os.execve(exe, proc.args, env)
    except OSError as err:
        os.write(2, f"torpor: exec {proc.args[0]}: {err.strerror}\n".encode())
        os._exit(127 if err.errno == errno.ENOENT else 126)
    except BaseException as err:  # noqa: BLE001
        os.write(2, f"torpor: {_describe(err)}\n".encode())
        os._exit(126)


def cap_mask(names: list[str]) -> int:
    mask = 0
    for n in names:
        mask |= 1 << L.CAP_NUMBER[n]
    return mask


def apply_credentials(proc) -> None:
    """Bounding set, user and groups, capabilities, ambient set, no_new_privs."""
    caps = proc.capabilities
    user = proc.user
    if caps is not None:
        bounding = cap_mask(caps.bounding)
        for cap in range(L.last_cap() + 1):
            if not bounding & (1 << cap):
                try:
                    L.prctl(L.PR_CAPBSET_DROP, cap)
                except OSError:
                    pass
    L.prctl(L.PR_SET_KEEPCAPS, 1)
    os.setgroups(user.additional_gids)
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    L.prctl(L.PR_SET_KEEPCAPS, 0)
    if user.umask is not None:
        os.umask(user.umask)
    if caps is not None:
        avail = L.capget()[1]
        L.capset(cap_mask(caps.effective) & avail, cap_mask(caps.permitted) & avail,
                 cap_mask(caps.inheritable) & avail)
        for n in caps.ambient:
            try:
                L.prctl(L.PR_CAP_AMBIENT, L.PR_CAP_AMBIENT_RAISE, L.CAP_NUMBER[n])
            except OSError:
                pass  # runc too ignores ambient caps that are not permitted + inheritable
    elif user.uid != 0:
        pass  # setresuid cleared the capabilities already
    if proc.no_new_privileges:
        L.prctl(L.PR_SET_NO_NEW_PRIVS, 1)

"""Containers: the record (Container) and the OCI lifecycle operations.

Container.load(root, id) is cheap (state.json plus /proc and the freezer state); every
operation takes the container's lock. The heavy modules (config parsing, init spawning,
rootfs) are imported only by the operations that need them.
"""

from __future__ import annotations

import os
import time

from torpor.errors import InvalidState, NotFound, TorporError
from torpor.runtime import procs
from torpor.runtime.state import (
    CREATED,
    CREATING,
    PAUSED,
    RUNNING,
    STOPPED,
    StateRecord,
    StateStore,
    now_rfc3339,
    read_json,
    write_json_atomic,
)

NS_PROC = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
           "cgroup": "cgroup", "user": "user", "time": "time"}


# not SIGKILL: the signal module builds enums on import (~4 ms of every command)
SIGKILL = 9


def parse_signal(text: str) -> int:
    """KILL, SIGKILL, kill, 9 -> 9."""
    import signal

    t = text.strip()
    if t.isdigit():
        n = int(t)
        if 0 < n < signal.NSIG:
            return n
    else:
        name = t.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        if name.startswith("SIGRTMIN+") or name.startswith("SIGRTMAX-"):
            base, off = name[:8], name[9:]
            if off.isdigit():
                return (signal.SIGRTMIN + int(off)) if base == "SIGRTMIN" else (
                    signal.SIGRTMAX - int(off))
        sig = getattr(signal.Signals, name, None) if name in signal.Signals.__members__ else None
        if sig is not None:
            return int(sig)
    raise TorporError(f"invalid signal {text!r}")


class Container:
    """One container under a --root. Attributes are views of its state.json record."""

    def __init__(self, store: StateStore, rec: StateRecord) -> None:
        self.store = store
        self.rec = rec

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, root: str, cid: str) -> Container:
        store = StateStore(root)
        return cls(store, store.load(cid))

    @classmethod
    def list(cls, root: str) -> list[Container]:
        store = StateStore(root)
        out = []
        for cid in store.ids():
            try:
                out.append(cls(store, store.load(cid)))
            except NotFound:
                continue
        return out

    @property
    def id(self) -> str:
        return self.rec.id

    @property
    def dir(self) -> str:
        return self.store.dir(self.rec.id)

    @property
    def init_pid(self) -> int:
        return self.rec.pid

    @property
    def bundle(self) -> str:
        return self.rec.bundle

    @property
    def config_path(self) -> str:
        return os.path.join(self.dir, "config.json")

    @property
    def raw_config(self) -> dict:
        return read_json(self.config_path) or {}

    @property
    def config(self):
        """The parsed config (config.Config) of the container, from its saved copy."""
        from torpor.runtime.config import parse_config

        return parse_config(self.raw_config, self.rec.bundle or None)

    @property
    def cgroup(self):
        from torpor.runtime.cgroups import Cgroup

        return Cgroup(self.rec.cgroup_paths, self.rec.cgroup_v2)

    @property
    def freezer_path(self) -> str:
        return self.rec.cgroup_paths.get("freezer") or self.rec.cgroup_v2

    @property
    def namespaces(self) -> dict[str, str]:
        return dict(self.rec.namespaces)

    def lock(self):
        return self.store.lock(self.id)

    def save(self) -> None:
        self.store.save(self.rec)

    # ------------------------------------------------------------------ status
    def init_alive(self) -> bool:
        return procs.alive(self.rec.pid, self.rec.pid_start)

    def _freezer_state(self) -> str:
        p = self.rec.cgroup_paths.get("freezer")
        try:
            if p:
                with open(os.path.join(p, "freezer.state")) as f:
                    return f.read().strip()
            if self.rec.cgroup_v2:
                with open(os.path.join(self.rec.cgroup_v2, "cgroup.freeze")) as f:
                    return "FROZEN" if f.read().strip() == "1" else "THAWED"
        except OSError:
            pass
        return ""

    def status(self) -> str:
        rec = self.rec
        if rec.status == STOPPED:
            return STOPPED
        if not rec.pid:
            return rec.status
        if not self.init_alive():
            return STOPPED
        if rec.status in (CREATING, CREATED) and os.path.exists(
                os.path.join(self.dir, "exec.fifo")):
            return rec.status
        if self._freezer_state() in ("FROZEN", "FREEZING"):
            return PAUSED
        return RUNNING

    def exit_status(self) -> dict | None:
        """{"exit_code": n, "signal": s, "finished": t} once the monitor saw the init exit."""
        return read_json(os.path.join(self.dir, "exit.json"))

    def oci_state(self) -> dict:
        st = self.status()
        out = {
            "ociVersion": "1.0.2",
            "id": self.id,
            "pid": self.rec.pid if st != STOPPED else 0,
            "status": st,
            "bundle": self.rec.bundle,
            "rootfs": self.rec.rootfs,
            "created": self.rec.created,
            "owner": self.rec.owner,
            "annotations": self.rec.annotations or {},
        }
        if st == STOPPED:
            ex = self.exit_status()
            mon = self.rec.monitor_pid
            deadline = time.monotonic() + 2
            # the init is gone but its monitor may not have written exit.json yet (it reaps,
            # then writes): a state read in that window would miss the exit status
            while (ex is None and mon and time.monotonic() < deadline
                   and procs.alive(mon, self.rec.monitor_start)):
                time.sleep(0.002)
                ex = self.exit_status()
            if ex is not None:
                out["exitStatus"] = ex.get("exit_code")
        return out

    def processes(self) -> list[int]:
        pids = self.cgroup.procs()
        if not pids and self.init_alive():
            pids = [self.rec.pid]
        return pids

    # ------------------------------------------------------------------ create
    @classmethod
    def create(cls, root: str, cid: str, bundle: str | None = None, raw_config: dict | None = None,
               *, pid_file: str | None = None, console_socket: str | None = None,
               stdio: tuple[int, int, int] | None = None, pty: tuple[int, int, str] | None = None,
               preserve_fds: int = 0, no_pivot: bool = False, monitor_pid: int = 0,
               embedded: bool = False, init_hook=None) -> Container:
        """Create a container: cgroup, namespaces, mounts, and an init waiting for `start`.

        raw_config overrides <bundle>/config.json (the embedded default passes its own).
        pty = (master, slave, name) supplied by the monitor; console_socket makes one here.
        init_hook: run in the container's init instead of waiting for start (restore).
        """
        from torpor.errors import AlreadyExists
        from torpor.runtime import config as C
        from torpor.runtime import linux as L
        from torpor.runtime.cgroups import Cgroup
        from torpor.runtime.init import Plan, spawn

        store = StateStore(root)
        if os.path.exists(store.dir(cid)):
            raise AlreadyExists(f"container \"{cid}\" already exists")
        if bundle is not None:
            bundle = os.path.abspath(bundle)
        if raw_config is None:
            if bundle is None:
                raise TorporError("create: a bundle is needed")
            raw_config = C.load_bundle_config(bundle)
        cfg = C.parse_config(raw_config, bundle)
        if cfg.process is None:
            raise C.ConfigError("config.json: process is missing")
        if not cfg.namespace("mount"):
            raise C.ConfigError("config.json: linux.namespaces must include a mount namespace")
        if cfg.process.terminal and console_socket is None and pty is None:
            raise C.ConfigError("process.terminal is true: --console-socket is needed "
                                "(or run -d, whose monitor holds the terminal)")
        if console_socket is not None and not cfg.process.terminal:
            raise C.ConfigError("--console-socket needs process.terminal: true in config.json")
        if cfg.process.capabilities is not None:
            avail = L.bounding_set()
            c = cfg.process.capabilities
            missing = sorted({n for n in c.bounding + c.effective + c.permitted
                              if not avail & (1 << L.CAP_NUMBER[n])})
            for n in missing:
                C.log.warning("capability %s is not available to torpor on this host; "
                              "the container does not get it", n)
        sock = None
        if console_socket is not None:
            from torpor.runtime.console import connect

            sock = connect(console_socket)
        d = store.reserve(cid)
        rec = StateRecord(id=cid, status=CREATING, bundle=bundle or d, rootfs=cfg.root_path,
                          created=now_rfc3339(), owner="root" if os.getuid() == 0 else
                          str(os.getuid()), annotations=cfg.annotations, embedded=embedded,
                          terminal=cfg.process.terminal, monitor_pid=monitor_pid,
                          monitor_start=procs.start_time(monitor_pid) if monitor_pid else 0)
        c = cls(store, rec)
        cgroup = None
        pid = 0
        own_pty = None
        try:
            write_json_atomic(os.path.join(d, "config.json"), raw_config)
            cgroup = Cgroup.for_path(cfg.cgroups_path or f"/torpor/{cid}")
            if cgroup.procs():
                raise TorporError(f"cgroup {cgroup.dirs[0]} is in use by other processes")
            cgroup.create()
            rec.cgroup_paths, rec.cgroup_v2 = cgroup.paths, cgroup.v2
            store.save(rec)
            cgroup.apply(cfg.resources)
            if init_hook is None:
                os.mkfifo(os.path.join(d, "exec.fifo"), 0o600)
            if sock is not None:
                from torpor.runtime.console import open_pty

                own_pty = pty = open_pty()
            plan = Plan(
                process=cfg.process, cgroup=cgroup, cfg=cfg, seccomp=seccomp_bpf(raw_config),
                state_dir=d if init_hook is None else None,
                join=[(n.type, n.path) for n in cfg.namespaces if n.path],
                unshare=[n.type for n in cfg.namespaces if not n.path],
                stdio=stdio, pty_slave=pty[1] if pty else None, pty_name=pty[2] if pty else "",
                preserve_fds=preserve_fds, no_pivot=no_pivot, init_hook=init_hook,
            )
            try:
                pid = spawn(plan)
            except TorporError as err:
                raise TorporError(f"cannot create container \"{cid}\": {err}") from None
            if sock is not None and own_pty is not None:
                from torpor.runtime.console import send_fd

                send_fd(sock, own_pty[0], own_pty[2])
            c.attach_init(pid, CREATED if init_hook is None else RUNNING)
            if pid_file:
                write_pid_file(pid_file, pid)
        except BaseException:
            if pid:
                try:
                    os.kill(pid, SIGKILL)
                except OSError:
                    pass
            try:
                if cgroup is not None:
                    cgroup.kill_all(timeout=5)
                    cgroup.destroy()
            finally:
                import shutil

                shutil.rmtree(d, ignore_errors=True)
            raise
        finally:
            if own_pty is not None:
                os.close(own_pty[0])
                os.close(own_pty[1])
            if sock is not None:
                sock.close()
        return c

    def attach_init(self, pid: int, status: str = RUNNING) -> None:
        """Record pid as the container's init (its namespaces, start time) and save.

        Restore uses this for an init the engine created inside the container's namespaces.
        """
        rec = self.rec
        rec.pid = pid
        rec.pid_start = procs.start_time(pid)
        cfg_ns = [n.get("type") for n in (self.raw_config.get("linux") or {}).get(
            "namespaces") or []]
        rec.namespaces = {t: f"/proc/{pid}/ns/{NS_PROC[t]}" for t in cfg_ns if t in NS_PROC}
        rec.status = status
        if status == RUNNING and not rec.started:
            rec.started = now_rfc3339()
        self.save()

    def set_monitor(self, pid: int) -> None:
        self.rec.monitor_pid = pid
        self.rec.monitor_start = procs.start_time(pid)
        self.save()

    # ------------------------------------------------------------------ start
    def start(self, timeout: float = 30.0) -> None:
        import select

        with self.lock():
            self.rec = self.store.load(self.id)
            st = self.status()
            if st != CREATED:
                raise InvalidState(f"cannot start container \"{self.id}\": it is {st}")
            fifo = os.path.join(self.dir, "exec.fifo")
            fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                deadline = time.monotonic() + timeout
                p = select.poll()
                p.register(fd, select.POLLIN)
                while True:
                    if p.poll(100):
                        data = os.read(fd, 1)
                        if data:
                            break
                    if not self.init_alive():
                        raise InvalidState(f"cannot start container \"{self.id}\": "
                                           "its init exited")
                    if time.monotonic() > deadline:
                        raise TorporError(f"cannot start container \"{self.id}\": its init "
                                          "did not answer")
            finally:
                os.close(fd)
            os.unlink(fifo)
            self.rec.status = RUNNING
            self.rec.started = now_rfc3339()
            self.save()

    # ------------------------------------------------------------------ signals
    def kill(self, sig: int, all_processes: bool = False) -> None:
        with self.lock():
            st = self.status()
            if st == STOPPED:
                raise InvalidState(f"cannot kill container \"{self.id}\": it is stopped")
            if all_processes and self.cgroup.procs():
                self.cgroup.signal_all(sig)
            else:
                self._signal_init(sig)
            if st == PAUSED and sig == SIGKILL:
                self.cgroup.thaw()

    def _signal_init(self, sig: int) -> None:
        try:
            fd = os.pidfd_open(self.rec.pid)
        except ProcessLookupError:
            raise InvalidState(f"cannot kill container \"{self.id}\": it is stopped") from None
        try:
            if not self.init_alive():  # checked after pidfd_open: the pidfd is this process
                raise InvalidState(f"cannot kill container \"{self.id}\": it is stopped")
            from torpor.runtime.linux import pidfd_send_signal

            pidfd_send_signal(fd, sig)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ freezer
    def pause(self) -> None:
        with self.lock():
            st = self.status()
            if st != RUNNING:
                raise InvalidState(f"cannot pause container \"{self.id}\": it is {st}")
            self.cgroup.freeze()
            self.rec.status = PAUSED
            self.save()

    def resume(self) -> None:
        with self.lock():
            st = self.status()
            if st != PAUSED:
                raise InvalidState(f"cannot resume container \"{self.id}\": it is {st}")
            self.cgroup.thaw()
            self.rec.status = RUNNING
            self.save()

    # ------------------------------------------------------------------ delete
    @classmethod
    def delete_id(cls, root: str, cid: str, force: bool = False) -> None:
        try:
            c = cls.load(root, cid)
        except NotFound:
            if force:
                return
            raise
        c.delete(force)

    def delete(self, force: bool = False) -> None:
        import shutil

        try:
            lock = self.lock().__enter__()
        except NotFound:
            if force:
                return
            raise
        try:
            st = self.status()
            if st in (RUNNING, PAUSED) and not force:
                raise InvalidState(f"cannot delete container \"{self.id}\": it is {st} "
                                   "(stop it first, or use --force)")
            cg = self.cgroup
            if self.init_alive():
                try:
                    os.kill(self.rec.pid, SIGKILL)
                except OSError:
                    pass
                if st == PAUSED:
                    cg.thaw()
            cg.kill_all()
            deadline = time.monotonic() + 10
            while self.init_alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            mon = self.rec.monitor_pid
            deadline = time.monotonic() + 5
            while mon and procs.alive(mon, self.rec.monitor_start) and time.monotonic() < deadline:
                time.sleep(0.01)
            cg.destroy()
            shutil.rmtree(self.dir, ignore_errors=True)
        finally:
            lock.__exit__(None, None, None)

    # ------------------------------------------------------------------ update
    def update(self, raw_resources: dict) -> None:
        from torpor.runtime.config import parse_resources

        with self.lock():
            st = self.status()
            if st == STOPPED:
                raise InvalidState(f"cannot update container \"{self.id}\": it is stopped")
            res = parse_resources(raw_resources)
            self.cgroup.apply(res)
            raw = self.raw_config
            linux = raw.setdefault("linux", {})
            merged = linux.setdefault("resources", {})
            for key, value in raw_resources.items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key].update(value)
                else:
                    merged[key] = value
            write_json_atomic(self.config_path, raw)

    # ------------------------------------------------------------------ exec
    def exec_process(self, raw_process: dict, *, detach: bool = False,
                     pid_file: str | None = None, console_socket: str | None = None,
                     preserve_fds: int = 0) -> int:
        """Run a process in the container; returns its exit code (0 when detached)."""
        from torpor.runtime import linux as L
        from torpor.runtime.config import parse_process
        from torpor.runtime.init import Plan, spawn

        st = self.status()
        if st != RUNNING and st != CREATED:
            raise InvalidState(f"cannot exec in container \"{self.id}\": it is {st}")
        proc = parse_process(raw_process)
        if proc.terminal and console_socket is None:
            raise TorporError("exec --tty needs --console-socket")
        join = []
        for kind, path in self.rec.namespaces.items():
            try:
                if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{NS_PROC[kind]}").st_ino:
                    continue
            except OSError:
                raise InvalidState(f"cannot exec in container \"{self.id}\": its init "
                                   "is gone") from None
            join.append((kind, path))
        sock = None
        if console_socket is not None:  # the process opens its pty in the container (runc)
            from torpor.runtime.console import connect

            sock = connect(console_socket)
        if not detach:
            L.set_child_subreaper()
        try:
            pid = spawn(Plan(process=proc, cgroup=self.cgroup, join=join,
                             seccomp=seccomp_bpf(self.raw_config), console_sock=sock,
                             preserve_fds=preserve_fds))
        except TorporError as err:
            raise TorporError(f"exec in container \"{self.id}\": {err}") from None
        finally:
            if sock is not None:
                sock.close()
        if pid_file:
            write_pid_file(pid_file, pid)
        if detach:
            return 0
        return wait_forwarding(pid)


def seccomp_bpf(raw_config: dict) -> bytes | None:
    """linux.seccomp compiled (libseccomp), or None."""
    profile = (raw_config.get("linux") or {}).get("seccomp")
    if not profile:
        return None
    from torpor.runtime.seccomp import compile_profile

    return compile_profile(profile)


def write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def wait_forwarding(pid: int) -> int:
    """Wait for our (reparented) child pid, forwarding terminal signals to it; reap others."""
    import signal

    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                 signal.SIGUSR2, signal.SIGWINCH)

    def forward(sig, _frame):
        try:
            os.kill(pid, sig)
        except OSError:
            pass

    old = {s: signal.signal(s, forward) for s in forwarded}
    try:
        while True:
            try:
                got, status = os.waitpid(-1, 0)
            except InterruptedError:
                continue
            except ChildProcessError:
                return 255
            if got == pid:
                return exit_code(status)
    finally:
        for s, h in old.items():
            signal.signal(s, h)

"""Checkpoint and restore of containers (runsc's and Docker's workflows).

Checkpoint (`checkpoint --image-path P [--leave-running] ID`): the engine freezes the
container through its freezer cgroup, seizes and dumps the whole tree (PIDs as seen in the
container's PID namespace); while the tree is stopped this module adds the runtime's own
state to the same image: the UTS names, the loopback addresses, a tar of every tmpfs mount,
and in the manifest's meta the container's config, id, bundle and rootfs identity. The
init's stdio (the monitor's pipe, a shim's fifos) is marked external: restore hands new
stdio instead. Without --leave-running the tree is killed once the image is committed and
the container is left `stopped` with its record (so `delete`, `logs`, `start --checkpoint`
and `restore` into the same id work); its cgroup is removed as `delete` would.

Restore (`restore --image-path P [--bundle B] [--detach] [--pid-file F] ID`): into a
`created` container (its init is replaced), a `stopped` one (same state dir, log appended),
or a new id (config from --bundle, else from the image). The config's cgroup is made with
its limits; the engine forks the root task with clone3(CLONE_NEWPID|... , set_tid) and runs
`child_setup` in it first: cgroup, namespaces, mounts, devices, pivot_root, hostname,
loopback and its addresses, tmpfs contents, masked/read-only paths — what `create` does for a
new init. With --detach the caller (a shim) becomes the parent of the restored init; without
it, a torpor monitor is (as `run -d`): container.log and exit.json work as before.

Named checkpoints (Docker): <root>/<id>/checkpoints/<name> unless --checkpoint-dir.
"""

from __future__ import annotations

import os
import time

from torpor import jsonlite
from torpor.errors import AlreadyExists, ImageError, InvalidState, NotFound, TorporError
from torpor.runtime import procs
from torpor.runtime.container import Container, write_pid_file
from torpor.runtime.state import (
    CREATED,
    CREATING,
    PAUSED,
    RUNNING,
    STOPPED,
    StateRecord,
    StateStore,
    check_id,
    now_rfc3339,
    valid_name,
    write_json_atomic,
)

META_KEY = "container"
RUNTIME_FILE = "container-runtime.json"
NS_HELPER = {"uts": "uts", "network": "net", "ipc": "ipc"}
SIGKILL = 9  # not SIGKILL: the signal module imports enum (~5 ms a command)


# ------------------------------------------------------------------------ helpers


def check_image_path_free(path: str) -> None:
    """runsc: an image path is used once."""
    if os.path.lexists(path):
        if not os.path.isdir(path):
            raise AlreadyExists(f"image path {path} exists and is not a directory")
        if os.listdir(path):
            raise AlreadyExists(f"image path {path} is not empty (an image path is used once; "
                                "give a new or empty directory)")


def _ns_types(raw: dict) -> list[tuple[str, str]]:
    return [(n.get("type", ""), n.get("path", "") or "")
            for n in (raw.get("linux") or {}).get("namespaces") or []]


def _wait_gone(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _stdio_identity(pid: int) -> dict[tuple[int, int], str]:
    """(dev, ino) of the init's fds 0, 1, 2 -> the key restore gets them back by."""
    out: dict[tuple[int, int], str] = {}
    for fd, key in ((1, "stdout"), (2, "stderr"), (0, "stdin")):
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        out.setdefault((st.st_dev, st.st_ino), key)
    return out


def _save_seccomp(c: Container, cid: str) -> list[str]:
    """The seccomp filter stack shared by every process (read with PTRACE_SECCOMP_GET_FILTER:
    the engine's tracer is this thread); restore installs it in the init before the tree is
    rebuilt, so every restored process inherits it."""
    from torpor.runtime import seccomp

    stacks = {}
    for pid in c.processes():
        mode = seccomp.seccomp_mode(pid)
        if mode == 1:
            raise TorporError(f"cannot checkpoint container \"{cid}\": process {pid} uses "
                              "strict seccomp mode")
        stacks[pid] = tuple(seccomp.get_filters(pid)) if mode == 2 else ()
    distinct = set(stacks.values())
    if len(distinct) > 1:
        raise TorporError(f"cannot checkpoint container \"{cid}\": its processes have "
                          "different seccomp filters (only one stack shared by all is saved)")
    return [f.hex() for f in (distinct.pop() if distinct else ())]


def _save_ipc(pid: int, raw: dict, cid: str) -> dict | None:
    """The SysV objects of the container's own IPC namespace, with their contents."""
    from torpor.runtime import nsstate

    if not any(t == "ipc" and not p for t, p in _ns_types(raw)):
        return None
    try:
        return nsstate.in_namespaces(pid, ["ipc"], nsstate.save_ipc)
    except TorporError as err:
        raise TorporError(f"cannot checkpoint container \"{cid}\": {err}") from None


# ------------------------------------------------------------------------ checkpoint


def checkpoint_container(root: str, cid: str, image_path: str, *, leave_running: bool = False,
                         work_path: str | None = None, file_locks: bool = False,
                         sync: bool = False):
    """Checkpoint container cid into a new image at image_path; returns the engine's result."""
    from torpor.engine.dump import checkpoint_tree
    from torpor.runtime import criu_files, nsstate, tmpfs_state

    image_path = os.path.abspath(image_path)
    c = Container.load(root, cid)
    with c.lock():
        c.rec = c.store.load(cid)
        st = c.status()
        if st not in (RUNNING, PAUSED):
            raise InvalidState(f"cannot checkpoint container \"{cid}\": it is {st}")
        check_image_path_free(image_path)
        raw = c.raw_config
        terminal = bool((raw.get("process") or {}).get("terminal"))
        init = c.init_pid
        ns = _ns_types(raw)
        new_ns = {t for t, p in ns if not p}
        if "pid" not in new_ns:
            raise TorporError(f"cannot checkpoint container \"{cid}\": it shares a PID "
                              "namespace (checkpoint needs its own)")
        _save_ipc(init, raw, cid)  # refusals (attached segments) before the freeze
        rootfs = c.rec.rootfs or c.config.root_path
        meta = {META_KEY: {
            "version": 1, "id": cid, "config": raw, "bundle": c.rec.bundle, "rootfs": rootfs,
            "rootfs_identity": tmpfs_state.rootfs_identity(
                rootfs, tmpfs_state.mount_destinations(raw)),
            "rootfs_identity_mounts": tmpfs_state.mount_destinations(raw),
            "embedded": bool(c.rec.embedded), "terminal": terminal,
            "namespaces": sorted(new_ns), "created": c.rec.created,
            "annotations": c.rec.annotations or {},
        }}
        stdio = _stdio_identity(init)

        def external(pid: int, fd: int, link: str) -> str | None:
            try:
                s = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                return None
            return stdio.get((s.st_dev, s.st_ino))

        def on_frozen(writer) -> None:
            state: dict = {"version": 1, "stdio": sorted(set(stdio.values()))}
            if terminal:
                state["tty"] = _save_tty(init)
            if "uts" in new_ns:
                state["uts"] = nsstate.in_namespaces(init, ["uts"], nsstate.read_uts)
            if "network" in new_ns:
                state["loopback"] = nsstate.in_namespaces(init, ["net"],
                                                          nsstate.loopback_addresses)
            state["ipc"] = _save_ipc(init, raw, cid)
            state["seccomp"] = _save_seccomp(c, cid)
            tars = tmpfs_state.save(init, raw)
            state["tmpfs"] = tmpfs_state.index(raw, list(tars))
            for name, data in tars.items():
                writer.put_file(name, data)
            writer.put_file(RUNTIME_FILE, jsonlite.dumps(state, indent=1).encode())
            # Podman stat()s CRIU's inventory.img before it calls restore
            writer.put_file("inventory.img", criu_files.inventory())

        # on_frozen runs while the engine holds the tree stopped (also before a --leave-running
        # checkpoint lets it go on), so PTRACE_SECCOMP_GET_FILTER works there
        res = checkpoint_tree(init, image_path, leave_running=leave_running,
                              freezer=c.freezer_path or None, meta=meta,
                              on_frozen=on_frozen, external=external, file_locks=file_locks,
                              sync=sync)
        if work_path:
            _write_stats(work_path, "dump", res)
        if leave_running:
            if st == PAUSED:
                c.cgroup.freeze()
            return res
        _stop_after_checkpoint(c)
        return res


def _save_tty(pid: int) -> dict | None:
    """termios and window size of the init's terminal (its fd 0), read from the host."""
    import fcntl
    import termios

    try:
        fd = os.open(f"/proc/{pid}/fd/0", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not os.isatty(fd):
            return None
        tio = fcntl.ioctl(fd, termios.TCGETS, b"\0" * 64)
        ws = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
        return {"termios": tio.hex(), "winsize": ws.hex()}
    finally:
        os.close(fd)


def _apply_tty(fd: int, saved: dict | None) -> None:
    import fcntl
    import termios

    if not saved:
        return
    fcntl.ioctl(fd, termios.TCSETS, bytes.fromhex(saved["termios"]))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, bytes.fromhex(saved["winsize"]))


def _write_stats(work_path: str, what: str, res) -> None:
    try:
        os.makedirs(work_path, exist_ok=True)
        # the engine's CheckpointResult is a record: named fields
        fields = res if isinstance(res, dict) else {k: getattr(res, k) for k in res.__record_fields__}
        stats = {k: v for k, v in fields.items() if isinstance(v, (int, float, str))}
        write_json_atomic(os.path.join(work_path, f"torpor-{what}-stats.json"), stats, 0o644)
    except (OSError, TypeError):
        pass


def _stop_after_checkpoint(c: Container) -> None:
    """The engine killed the tree: clean up as delete would, but keep the record (stopped)."""
    cg = c.cgroup
    _wait_gone(c.init_alive, 10)
    try:
        cg.kill_all()
    except TorporError:
        pass
    mon = c.rec.monitor_pid
    if mon:
        _wait_gone(lambda: procs.alive(mon, c.rec.monitor_start), 5)
    cg.destroy()
    c.rec.status = STOPPED
    c.save()


# ------------------------------------------------------------------------ images


class ImageInfo:
    """What restore needs from an image, read (and verified) before anything is changed."""

    def __init__(self, path: str) -> None:
        from torpor.image.store import ImageReader

        if not os.path.exists(path):
            raise ImageError(f"image {path} does not exist")
        with ImageReader(path) as r:
            r.verify()
            meta = dict(r.manifest.meta or {})
            info = meta.get(META_KEY)
            if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
                raise ImageError(f"image {path} is not a container image (made by "
                                 "`checkpoint --pid`?): restore it without a container id")
            self.meta = info
            try:
                self.state = jsonlite.loads(r.file(RUNTIME_FILE))
            except ValueError:
                raise ImageError(f"image {path}: {RUNTIME_FILE} is damaged") from None
            self.tars = [(dest, r.file(name)) for dest, name in self.state.get("tmpfs") or []]
        self.path = path

    @property
    def config(self) -> dict:
        return jsonlite.loads(jsonlite.dumps(self.meta["config"]))  # a copy (JSON data)


# ------------------------------------------------------------------------ restore


def restore_container(root: str, cid: str, image_path: str, *, bundle: str | None = None,
                      detach: bool = False, pid_file: str | None = None,
                      console_socket: str | None = None, work_path: str | None = None,
                      lazy: bool = False) -> Container:
    """Restore the image into container cid (created, stopped, or new); returns it running.
    lazy: memory is served on demand by a page server (engine/lazy.py)."""
    from torpor.runtime import config as C
    from torpor.runtime import tmpfs_state

    check_id(cid)
    image_path = os.path.abspath(image_path)
    info = ImageInfo(image_path)
    store = StateStore(root)
    existing = None
    try:
        existing = Container.load(root, cid)
    except NotFound:
        pass
    if existing is not None:
        st = existing.status()
        if st not in (CREATED, STOPPED):
            raise InvalidState(f"cannot restore into container \"{cid}\": it is {st}")
    embedded = bool(info.meta.get("embedded")) and bundle is None
    if bundle is not None:
        bundle = os.path.abspath(bundle)
        raw = C.load_bundle_config(bundle)
    elif existing is not None:
        raw = existing.raw_config
        bundle = existing.bundle
        embedded = bool(existing.rec.embedded)
    else:
        raw = info.config
        bundle = info.meta.get("bundle") or None
        if cid != info.meta.get("id"):
            (raw.get("linux") or {}).pop("cgroupsPath", None)
    if embedded:
        from torpor.runtime import busybox

        raw.setdefault("root", {})["path"] = busybox.ensure(root)
        bundle = None
    elif bundle is not None and not os.path.isdir(bundle):
        raise TorporError(f"cannot restore: the image's bundle {bundle} does not exist "
                          "(give --bundle)")
    cfg = C.parse_config(raw, bundle)
    if cfg.process is None:
        raise C.ConfigError("config.json: process is missing")
    terminal = bool(info.meta.get("terminal"))
    if cfg.process.terminal != terminal:
        raise C.ConfigError("cannot restore: the image was made " + (
            "with" if terminal else "without") + " a terminal, config.json has process."
            f"terminal: {str(cfg.process.terminal).lower()}")
    if console_socket is not None and not terminal:
        raise C.ConfigError("--console-socket needs process.terminal: true in config.json")
    if terminal and detach and console_socket is None:
        raise C.ConfigError("process.terminal is true: --console-socket is needed with --detach")
    if not cfg.namespace("mount"):
        raise C.ConfigError("config.json: linux.namespaces must include a mount namespace")
    pid_ns = cfg.namespace("pid")
    if pid_ns is None or pid_ns.path:
        raise C.ConfigError("restore needs a new PID namespace (linux.namespaces: pid "
                            "without a path)")
    changed = tmpfs_state.compare_identity(  # mount points as left out at checkpoint
        info.meta.get("rootfs_identity") or {},
        tmpfs_state.rootfs_identity(cfg.root_path, info.meta.get("rootfs_identity_mounts") or ()))
    if changed:
        raise TorporError(f"cannot restore: the root filesystem {cfg.root_path} is not the one "
                          f"the image was made with ({', '.join(changed)} changed)")

    # from here on the container is changed
    created_new = existing is None
    if existing is not None:
        with existing.lock():
            existing.rec = existing.store.load(cid)
            st = existing.status()
            if st not in (CREATED, STOPPED):
                raise InvalidState(f"cannot restore into container \"{cid}\": it is {st}")
            _clear_for_restore(existing)
        d = existing.dir
        old = existing.rec
    else:
        d = store.reserve(cid)
        old = None
    rec = StateRecord(
        id=cid, status=CREATING, bundle=bundle or d, rootfs=cfg.root_path,
        created=old.created if old is not None else now_rfc3339(),
        owner="root" if os.getuid() == 0 else str(os.getuid()),
        annotations=cfg.annotations, embedded=embedded, terminal=terminal)
    c = Container(store, rec)
    cgroup = None
    try:
        from torpor.runtime.cgroups import Cgroup

        write_json_atomic(os.path.join(d, "config.json"), raw)
        cgroup = Cgroup.for_path(cfg.cgroups_path or f"/torpor/{cid}")
        if cgroup.procs():
            raise TorporError(f"cannot restore: cgroup {cgroup.dirs[0]} is in use by other "
                              "processes")
        cgroup.create()
        rec.cgroup_paths, rec.cgroup_v2 = cgroup.paths, cgroup.v2
        store.save(rec)
        cgroup.apply(cfg.resources)
        plan = _Plan(image_path, cfg, cgroup, info, lazy=lazy)
        if detach and terminal:
            from torpor.runtime.console import connect, open_pty, send_fd

            sock = connect(console_socket)
            pty = open_pty()
            try:
                res = plan.run({"stdin": pty[1], "stdout": pty[1], "stderr": pty[1]}, pty)
                c.attach_init(res.pid, RUNNING)
                send_fd(sock, pty[0], pty[2])
            finally:
                os.close(pty[0])
                os.close(pty[1])
                sock.close()
            _warn(res)
        elif detach:
            res = plan.run({"stdin": 0, "stdout": 1, "stderr": 2})
            c.attach_init(res.pid, RUNNING)
            _warn(res)
        else:
            from torpor.runtime import monitor

            def spawn(stdio, pty, monitor_pid):
                c.rec.monitor_pid = monitor_pid
                c.rec.monitor_start = procs.start_time(monitor_pid)
                if pty is not None:
                    r = plan.run({"stdin": pty[1], "stdout": pty[1], "stderr": pty[1]}, pty)
                else:
                    r = plan.run({"stdin": stdio[0], "stdout": stdio[1], "stderr": stdio[2]})
                c.attach_init(r.pid, RUNNING)
                return c

            monitor.start(spawn, terminal=terminal)
            c.rec = store.load(cid)
        if c.rec.status != RUNNING or not c.rec.pid:
            raise TorporError("restore: the restored init was not recorded")
        if pid_file:
            write_pid_file(pid_file, c.rec.pid)
    except BaseException as err:
        _undo(c, cgroup, d, created_new)
        if isinstance(err, TorporError) and not isinstance(err, (ImageError, InvalidState)):
            msg = str(err)
            if not msg.startswith("cannot restore"):
                raise TorporError(f"cannot restore container \"{cid}\": {msg}") from None
        raise
    if work_path:
        _write_stats(work_path, "restore", {"pid": c.rec.pid})
    return c


def _warn(res) -> None:
    from torpor.log import log

    for w in getattr(res, "warnings", []) or []:
        log.warning("%s", w)


def _clear_for_restore(c: Container) -> None:
    """A created container loses its waiting init; a stopped one its leftovers."""
    cg = c.cgroup
    if c.init_alive():
        try:
            os.kill(c.rec.pid, SIGKILL)
        except OSError:
            pass
    try:
        cg.kill_all()
    except TorporError:
        pass
    _wait_gone(c.init_alive, 10)
    mon = c.rec.monitor_pid
    if mon:
        _wait_gone(lambda: procs.alive(mon, c.rec.monitor_start), 5)
    cg.destroy()
    for name in ("exec.fifo", "exit.json"):
        try:
            os.unlink(os.path.join(c.dir, name))
        except FileNotFoundError:
            pass


def _undo(c: Container, cgroup, d: str, created_new: bool) -> None:
    try:
        if c.rec.pid and procs.alive(c.rec.pid, c.rec.pid_start):
            os.kill(c.rec.pid, SIGKILL)
    except OSError:
        pass
    try:
        if cgroup is not None:
            cgroup.kill_all(timeout=5)
            cgroup.destroy()
    except TorporError:
        pass
    mon = c.rec.monitor_pid
    if mon:
        _wait_gone(lambda: procs.alive(mon, c.rec.monitor_start), 5)
    if created_new:
        import shutil

        shutil.rmtree(d, ignore_errors=True)
    else:
        try:
            os.unlink(os.path.join(d, "exit.json"))
        except FileNotFoundError:
            pass
        c.rec.status = STOPPED
        c.rec.pid = 0
        try:
            c.save()
        except OSError:
            pass


class _Plan:
    """The restored init's set-up (child_setup) and the engine call."""

    def __init__(self, image_path: str, cfg, cgroup, info: ImageInfo, lazy: bool = False) -> None:
        self.lazy = lazy
        self.image_path = image_path
        self.cfg = cfg
        self.cgroup = cgroup
        self.info = info

    def run(self, inherit_fds: dict[str, int], pty: tuple[int, int, str] | None = None):
        from torpor.engine.restore import restore_tree
        from torpor.runtime.init import NS_FLAGS

        cfg = self.cfg
        flags = 0
        for n in cfg.namespaces:
            if not n.path and n.type != "cgroup":
                flags |= NS_FLAGS[n.type]
        wanted = set(self.info.state.get("stdio") or [])
        fds = {k: v for k, v in inherit_fds.items() if k in wanted}
        self.pty = pty
        if pty is not None:
            _apply_tty(pty[1], self.info.state.get("tty"))
        return restore_tree(self.image_path, clone_flags=flags, child_setup=self.child_setup,
                            inherit_fds=fds, lazy=self.lazy)

    def child_setup(self) -> None:
        """Runs in the restored init (PID 1 of the new PID namespace) before the engine.
        Everything is imported before pivot_root: the container has no Python."""
        import fcntl
        import termios

        from torpor.runtime import init as I
        from torpor.runtime import linux as L
        from torpor.runtime import nsstate, rootfs, seccomp, tmpfs_state

        cfg = self.cfg
        state = self.info.state
        self.cgroup.join(0)
        fds = []
        for kind in I._JOIN_ORDER:
            for n in cfg.namespaces:
                if n.type == kind and n.path and kind != "pid":
                    try:
                        fds.append((kind, os.open(n.path, os.O_RDONLY | os.O_CLOEXEC)))
                    except OSError as err:
                        raise TorporError(f"{kind} namespace {n.path}: {err.strerror}") from None
        for kind, fd in fds:
            L.setns(fd, I.NS_FLAGS[kind])
            os.close(fd)
        new = {n.type for n in cfg.namespaces if not n.path}
        if "cgroup" in new:
            L.unshare(L.CLONE_NEWCGROUP)
        if "network" in new:
            I._loopback_up()
            nsstate.add_loopback_addresses(state.get("loopback") or [])
        if "ipc" in new and state.get("ipc"):
            nsstate.restore_ipc(state["ipc"])
        pty = getattr(self, "pty", None)
        rootfs.prepare(cfg, getattr(self.cgroup, "paths", {}),
                       console=pty[2] if pty is not None else None)
        uts = state.get("uts") or {}
        if "uts" in new:
            host = uts.get("hostname") or cfg.hostname
            if host:
                L.sethostname(host)
            dom = uts.get("domainname") or cfg.domainname
            if dom:
                L.setdomainname(dom)
        rootfs.pivot(cfg.root_path)
        for dest, data in self.info.tars:
            tmpfs_state.extract(dest, data)
        rootfs.finish(cfg)  # sysctls included
        if cfg.process.oom_score_adj is not None:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(cfg.process.oom_score_adj))
        if pty is not None:  # a new session whose controlling terminal is the new pty
            os.setsid()
            fcntl.ioctl(pty[1], termios.TIOCSCTTY, 0)
        os.chdir("/")
        for bpf in state.get("seccomp") or []:  # last: the filters apply from here on
            seccomp.install(bytes.fromhex(bpf))


# ------------------------------------------------------------------------ named (Docker)


def checkpoint_dir(root: str, cid: str, directory: str | None = None) -> str:
    if directory:
        return os.path.abspath(directory)
    return os.path.join(StateStore(root).dir(cid), "checkpoints")


def _check_name(name: str) -> str:
    if not valid_name(name or "", 255):
        raise TorporError(f"invalid checkpoint name {name!r} (letters, digits, and _ . + - "
                          "only)")
    return name


def create_named(root: str, cid: str, name: str, *, directory: str | None = None,
                 leave_running: bool = False):
    Container.load(root, cid)  # NotFound first
    path = os.path.join(checkpoint_dir(root, cid, directory), _check_name(name))
    if os.path.lexists(path):
        raise AlreadyExists(f"checkpoint {name} of container \"{cid}\" exists already")
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    return checkpoint_container(root, cid, path, leave_running=leave_running)


def list_named(root: str, cid: str, directory: str | None = None) -> list[dict]:
    Container.load(root, cid)
    d = checkpoint_dir(root, cid, directory)
    out = []
    try:
        names = sorted(os.listdir(d))
    except FileNotFoundError:
        return out
    for name in names:
        p = os.path.join(d, name)
        if not os.path.isfile(os.path.join(p, "manifest.json")):
            continue
        try:
            with open(os.path.join(p, "manifest.json"), "rb") as f:
                man = jsonlite.loads(f.read())
        except (OSError, ValueError):
            man = {}
        size = 0
        for dp, _dn, fn in os.walk(p):
            for f in fn:
                try:
                    size += os.lstat(os.path.join(dp, f)).st_size
                except OSError:
                    pass
        out.append({"name": name, "created": man.get("created"), "size": size, "path": p})
    return out


def remove_named(root: str, cid: str, name: str, directory: str | None = None) -> None:
    path = os.path.join(checkpoint_dir(root, cid, directory), _check_name(name))
    if not os.path.isdir(path):
        raise NotFound(f"container \"{cid}\" has no checkpoint {name}")
    import shutil

    shutil.rmtree(path)


def start_from_named(root: str, cid: str, name: str, directory: str | None = None) -> Container:
    c = Container.load(root, cid)
    path = os.path.join(checkpoint_dir(root, cid, directory), _check_name(name))
    if not os.path.isdir(path):
        raise NotFound(f"container \"{cid}\" has no checkpoint {name}")
    st = c.status()
    if st != STOPPED and st != CREATED:
        raise InvalidState(f"cannot start container \"{cid}\" from checkpoint {name}: it is {st}")
    return restore_container(root, cid, path)

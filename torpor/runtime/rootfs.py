"""The container's filesystem view, set up by the init inside its new mount namespace.

Order (as runc): make / private (rootfsPropagation), bind the rootfs onto itself, mount each
config mount below it, create the default devices and /dev symlinks, bind the console,
pivot_root into the rootfs and detach the old root, then sysctls, read-only and masked paths, then a
read-only root if asked.
"""

from __future__ import annotations

import errno
import os
import stat

from torpor.errors import TorporError
from torpor.runtime import linux as L

# path, type, major, minor, mode
DEFAULT_DEVICES = [
    ("/dev/null", "c", 1, 3, 0o666),
    ("/dev/zero", "c", 1, 5, 0o666),
    ("/dev/full", "c", 1, 7, 0o666),
    ("/dev/random", "c", 1, 8, 0o666),
    ("/dev/urandom", "c", 1, 9, 0o666),
    ("/dev/tty", "c", 5, 0, 0o666),
]

_FLAGS = {
    # option: (clear, flag)
    "ro": (False, L.MS_RDONLY), "rw": (True, L.MS_RDONLY),
    "nosuid": (False, L.MS_NOSUID), "suid": (True, L.MS_NOSUID),
    "nodev": (False, L.MS_NODEV), "dev": (True, L.MS_NODEV),
    "noexec": (False, L.MS_NOEXEC), "exec": (True, L.MS_NOEXEC),
    "sync": (False, L.MS_SYNCHRONOUS), "async": (True, L.MS_SYNCHRONOUS),
    "dirsync": (False, L.MS_DIRSYNC), "remount": (False, L.MS_REMOUNT),
    "mand": (False, L.MS_MANDLOCK), "nomand": (True, L.MS_MANDLOCK),
    "noatime": (False, L.MS_NOATIME), "atime": (True, L.MS_NOATIME),
    "nodiratime": (False, L.MS_NODIRATIME), "diratime": (True, L.MS_NODIRATIME),
    "relatime": (False, L.MS_RELATIME), "norelatime": (True, L.MS_RELATIME),
    "strictatime": (False, L.MS_STRICTATIME), "nostrictatime": (True, L.MS_STRICTATIME),
    "lazytime": (False, L.MS_LAZYTIME), "nolazytime": (True, L.MS_LAZYTIME),
    "bind": (False, L.MS_BIND), "rbind": (False, L.MS_BIND | L.MS_REC),
    "nosymfollow": (False, L.MS_NOSYMFOLLOW), "symfollow": (True, L.MS_NOSYMFOLLOW),
}
_PROPAGATION = {
    "private": L.MS_PRIVATE, "rprivate": L.MS_PRIVATE | L.MS_REC,
    "shared": L.MS_SHARED, "rshared": L.MS_SHARED | L.MS_REC,
    "slave": L.MS_SLAVE, "rslave": L.MS_SLAVE | L.MS_REC,
    "unbindable": L.MS_UNBINDABLE, "runbindable": L.MS_UNBINDABLE | L.MS_REC,
}
# options that are accepted and have no effect here (runc ignores them too)
_IGNORED = {"defaults", "auto", "noauto", "user", "nouser", "_netdev", "tmpcopyup",
            "copy-symlink", "idmap", "ridmap", "notmpcopyup"}


def parse_options(options: list[str]) -> tuple[int, list[int], str]:
    """(mount flags, propagation flags, data string) from OCI mount options."""
    flags = 0
    prop: list[int] = []
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            clear, flag = _FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in _PROPAGATION:
            prop.append(_PROPAGATION[opt])
        elif opt in _IGNORED:
            continue
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def secure_join(root: str, path: str) -> str:
    """root + path with every symlink resolved inside root (never escaping it)."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        cur = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            resolved.append(part)
            resolved.extend(p for p in parts if p and p != ".")
            break
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:
                raise OSError(errno.ELOOP, "too many symlinks", path)
            target = os.readlink(cur)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def _mkdest(dest: str, is_file: bool) -> None:
    if os.path.lexists(dest):
        return
    if is_file:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    else:
        os.makedirs(dest, exist_ok=True)


def mount_one(rootfs: str, m, cgroup_dirs: dict[str, str]) -> None:
    dest = secure_join(rootfs, m.destination)
    flags, prop, data = parse_options(m.options)
    kind = m.type or ("bind" if flags & L.MS_BIND else "")
    if "bind" in m.options or "rbind" in m.options or kind == "bind":
        src = m.source
        if not os.path.exists(src):
            raise OSError(errno.ENOENT, f"bind mount source {src} does not exist", src)
        _mkdest(dest, not os.path.isdir(src))
        bflags = L.MS_BIND | (flags & L.MS_REC)
        L.mount(src, dest, None, bflags)
        rest = flags & ~(L.MS_BIND | L.MS_REC | L.MS_REMOUNT)
        if rest:
            L.mount(None, dest, None, L.MS_BIND | L.MS_REMOUNT | rest)
    elif kind == "cgroup":
        _mount_cgroup(dest, flags, cgroup_dirs)
        return
    else:
        _mkdest(dest, False)
        try:
            L.mount(m.source or kind, dest, kind, flags & ~L.MS_REMOUNT, data or None)
        except OSError as err:
            if kind == "sysfs" and err.errno == errno.EPERM:
                # sysfs of the host network namespace cannot be mounted again: bind it
                L.mount("/sys", dest, None, L.MS_BIND | L.MS_REC)
                L.mount(None, dest, None, L.MS_BIND | L.MS_REMOUNT | L.MS_RDONLY
                        | L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC)
            elif kind == "mqueue" and err.errno in (errno.EPERM, errno.EBUSY):
                L.mount("/dev/mqueue", dest, None, L.MS_BIND)
            else:
                raise
    for p in prop:
        L.mount(None, dest, None, p)


def _mount_cgroup(dest: str, flags: int, cgroup_dirs: dict[str, str]) -> None:
    """A tmpfs with the container's own cgroup of each hierarchy bound below it."""
    os.makedirs(dest, exist_ok=True)
    base = L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC
    L.mount("tmpfs", dest, "tmpfs", base, "mode=755")
    by_dir: dict[str, list[str]] = {}
    for ctrl, path in cgroup_dirs.items():
        by_dir.setdefault(path, []).append(ctrl)
    for path, ctrls in sorted(by_dir.items()):
        # the hierarchy's mount point name (cpu, memory, ...) is the directory under /sys/fs/cgroup
        rel = os.path.relpath(path, "/sys/fs/cgroup")
        name = rel.split("/")[0] if not rel.startswith("..") else ",".join(sorted(ctrls))
        target = os.path.join(dest, name)
        os.makedirs(target, exist_ok=True)
        L.mount(path, target, None, L.MS_BIND)
        L.mount(None, target, None, L.MS_BIND | L.MS_REMOUNT | base | (flags & L.MS_RDONLY))
    if flags & L.MS_RDONLY:
        L.mount(None, dest, None, L.MS_REMOUNT | base | L.MS_RDONLY, "mode=755")


def create_devices(rootfs: str, extra: list) -> None:
    old = os.umask(0)
    try:
        devs = [(p, t, ma, mi, mode, 0, 0) for p, t, ma, mi, mode in DEFAULT_DEVICES]
        devs += [(d.path, d.type, d.major, d.minor, d.file_mode, d.uid, d.gid) for d in extra]
        for path, kind, major, minor, mode, uid, gid in devs:
            dest = secure_join(rootfs, path)
            try:
                st = os.lstat(dest)
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    if os.major(st.st_rdev) == major and os.minor(st.st_rdev) == minor:
                        continue
                os.unlink(dest)
            except FileNotFoundError:
                pass
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            ftype = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK,
                     "p": stat.S_IFIFO}[kind]
            os.mknod(dest, ftype | (mode & 0o7777), os.makedev(major, minor))
            if uid or gid:
                os.chown(dest, uid, gid)
    finally:
        os.umask(old)
    dev = secure_join(rootfs, "/dev")
    links = [("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
             ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr")]
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "core"))
    for target, name in links:
        p = os.path.join(dev, name)
        if not os.path.lexists(p):
            os.symlink(target, p)
    ptmx = os.path.join(dev, "ptmx")
    if os.path.exists(os.path.join(dev, "pts", "ptmx")):
        if os.path.lexists(ptmx):
            os.unlink(ptmx)
        os.symlink("pts/ptmx", ptmx)
    elif not os.path.lexists(ptmx):
        old = os.umask(0)
        try:
            os.mknod(ptmx, stat.S_IFCHR | 0o666, os.makedev(5, 2))
        finally:
            os.umask(old)


def bind_console(rootfs: str, slave_path: str) -> None:
    dest = secure_join(rootfs, "/dev/console")
    if not os.path.lexists(dest):
        os.close(os.open(dest, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    L.mount(slave_path, dest, None, L.MS_BIND)


def prepare(cfg, cgroup_dirs: dict[str, str], console: str | None = None) -> None:
    """Everything before pivot_root; runs in the init, in its own mount namespace."""
    rootfs = cfg.root_path
    prop = {"rprivate": L.MS_PRIVATE, "private": L.MS_PRIVATE, "rslave": L.MS_SLAVE,
            "slave": L.MS_SLAVE, "rshared": L.MS_SHARED, "shared": L.MS_SHARED,
            "unbindable": L.MS_UNBINDABLE, "runbindable": L.MS_UNBINDABLE}[cfg.rootfs_propagation]
    # the host mounts must not see ours: the whole tree stays at least slave
    L.mount(None, "/", None, L.MS_REC | (L.MS_SLAVE if prop == L.MS_SHARED else prop))
    L.mount(rootfs, rootfs, None, L.MS_BIND | L.MS_REC)
    for m in cfg.mounts:
        mount_one(rootfs, m, cgroup_dirs)
    if any(m.destination == "/dev" for m in cfg.mounts) or os.path.isdir(
            os.path.join(rootfs, "dev")):
        create_devices(rootfs, cfg.devices)
    if console:
        bind_console(rootfs, console)


def pivot(rootfs: str, no_pivot: bool = False) -> None:
    os.chdir(rootfs)
    if no_pivot:
        L.mount(rootfs, "/", None, L.MS_MOVE)
        os.chroot(".")
    else:
        L.pivot_root(".", ".")
        # the old root is stacked under the new one: make it slave so the detach does not
        # propagate to the host, then drop it
        L.mount(None, ".", None, L.MS_SLAVE | L.MS_REC)
        L.umount2(".", L.MNT_DETACH)
    os.chdir("/")


def finish(cfg) -> None:
    """After pivot_root: sysctls, then read-only paths, masked paths, read-only root (runc's
    order: Docker's config sets net.ipv4.ip_unprivileged_port_start and lists /proc/sys as
    read-only)."""
    write_sysctls(cfg)
    for path in cfg.readonly_paths:
        if not os.path.exists(path):
            continue
        L.mount(path, path, None, L.MS_BIND | L.MS_REC)
        flags = L.MS_BIND | L.MS_REMOUNT | L.MS_RDONLY | L.MS_REC
        try:
            L.mount(None, path, None, flags | L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC)
        except OSError:
            L.mount(None, path, None, flags)
    for path in cfg.masked_paths:
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path):
            L.mount("tmpfs", path, "tmpfs", L.MS_RDONLY, None)
        else:
            L.mount("/dev/null", path, None, L.MS_BIND)
    if cfg.root_readonly:
        L.mount(None, "/", None, L.MS_BIND | L.MS_REMOUNT | L.MS_RDONLY)


def write_sysctls(cfg) -> None:
    for key, value in cfg.sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as err:
            raise TorporError(f"sysctl {key}={value}: {err.strerror}") from None

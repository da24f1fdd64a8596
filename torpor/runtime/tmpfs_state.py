"""Contents of a container's tmpfs mounts (/tmp, /dev/shm, ...) and the rootfs identity.

Checkpoint: each tmpfs mount of config.json (but /dev, which the runtime fills) is read
through /proc/<init>/root while the tree is frozen and stored in the image as an
uncompressed tar (`tmpfs.<n>.tar`). Restore: the init extracts it after pivot_root, before
the engine opens the files the image needs.

The rootfs is not saved: it stays the bundle's. Its identity (names, types, sizes and mtimes
of regular files at the top level and in the usual binary/library directories) is recorded,
and restore refuses a rootfs that changed.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile

SKIP_TMPFS = {"/dev"}
ID_DIRS = ["", "bin", "sbin", "lib", "lib64", "usr/bin", "usr/sbin", "usr/lib"]


def tmpfs_mounts(raw_config: dict) -> list[str]:
    out = []
    for m in raw_config.get("mounts") or []:
        if m.get("type") == "tmpfs" and m.get("destination") not in SKIP_TMPFS:
            out.append(os.path.normpath(m["destination"]))
    return out


def tar_tree(top: str) -> bytes:
    """An uncompressed tar of the directory top (its contents, relative names), one device."""
    buf = io.BytesIO()
    dev = os.lstat(top).st_dev
    with tarfile.open(fileobj=buf, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(top):
            keep = []
            for d in dirnames:
                p = os.path.join(dirpath, d)
                try:
                    if os.lstat(p).st_dev == dev:  # a mount inside: not ours
                        keep.append(d)
                except OSError:
                    continue
            dirnames[:] = keep
            for name in sorted(keep) + sorted(filenames):
                p = os.path.join(dirpath, name)
                rel = os.path.relpath(p, top)
                try:
                    ti = tar.gettarinfo(p, arcname=rel)
                except OSError:
                    continue
                if ti is None:  # sockets: not saved
                    continue
                if ti.isreg():
                    with open(p, "rb") as f:
                        tar.addfile(ti, f)
                else:
                    tar.addfile(ti)
    return buf.getvalue()


def save(pid: int, raw_config: dict) -> dict[str, bytes]:
    """{image file name: tar} for every tmpfs mount of the container whose init is pid."""
    out = {}
    for n, dest in enumerate(tmpfs_mounts(raw_config)):
        top = os.path.join(f"/proc/{pid}/root", dest.lstrip("/"))
        if not os.path.isdir(top):
            continue
        out[f"tmpfs.{n}.tar"] = tar_tree(top)
    return out


def index(raw_config: dict, names: list[str]) -> list[tuple[str, str]]:
    """[(destination, image file name)] of the tmpfs tars an image holds."""
    out = []
    for n, dest in enumerate(tmpfs_mounts(raw_config)):
        name = f"tmpfs.{n}.tar"
        if name in names:
            out.append((dest, name))
    return out


def extract(dest: str, data: bytes) -> None:
    """Runs inside the container (after pivot_root): unpack into the tmpfs at dest."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        tar.extractall(dest, numeric_owner=True, filter="fully_trusted")


# ------------------------------------------------------------------------ rootfs identity


def mount_destinations(raw_config: dict) -> list[str]:
    """The mount points of config.json: the runtime creates the missing ones in the rootfs, so
    they are left out of its identity (a fresh rootfs, as containerd gives to restore, lacks
    them until the container is set up)."""
    return sorted({os.path.normpath("/" + str(m.get("destination") or "").lstrip("/"))
                   for m in raw_config.get("mounts") or [] if m.get("destination")})


def _skipped(d: str, mounts) -> set[str]:
    prefix = d + "/" if d else ""
    out = set()
    for dest in mounts:
        rel = dest.strip("/")
        if rel.startswith(prefix) and len(rel) > len(prefix):
            out.add(rel[len(prefix):].split("/")[0])
    return out


def rootfs_identity(path: str, mounts=()) -> dict[str, str]:
    """{dir: digest} over names, types, sizes, mtimes (regular files), link targets; the
    entries leading to a mount point in `mounts` (mount_destinations) are not counted."""
    out = {}
    for d in ID_DIRS:
        top = os.path.join(path, d) if d else path
        try:
            skip = _skipped(d, mounts)
            names = sorted(n for n in os.listdir(top) if n not in skip)
        except OSError:
            continue
        h = hashlib.sha256()
        for name in names:
            p = os.path.join(top, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                h.update(f"f {name} {st.st_size} {st.st_mtime_ns} {st.st_mode & 0o7777:o}\n".encode())
            elif stat.S_ISLNK(st.st_mode):
                h.update(f"l {name} {os.readlink(p)}\n".encode())
            elif stat.S_ISDIR(st.st_mode):
                h.update(f"d {name}\n".encode())
            else:
                h.update(f"o {name} {stat.S_IFMT(st.st_mode):o}\n".encode())
        out[d or "/"] = h.hexdigest()[:32]
    return out


def compare_identity(saved: dict[str, str], now: dict[str, str]) -> list[str]:
    """The directories whose listing changed (empty: same rootfs)."""
    return sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))

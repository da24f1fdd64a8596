"""The embedded root filesystem: Debian's static busybox and its applet links.

Built once under <root>/.busybox/rootfs (atomically: built in a temporary directory, renamed
into place) and shared read-only by every container that uses the embedded default.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess

from torpor.errors import TorporError

BUSYBOX = os.environ.get("TORPOR_BUSYBOX", "/bin/busybox")
DIRS = ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root",
        "var", "var/tmp", "run", "home", "mnt"]


def rootfs_path(root: str) -> str:
    return os.path.join(os.path.abspath(root), ".busybox", "rootfs")


def build(dest: str, busybox: str = BUSYBOX) -> None:
    """Make a busybox root filesystem at dest (which must not exist)."""
    if not os.path.exists(busybox):
        raise TorporError(f"the embedded root filesystem needs a static busybox at {busybox} "
                          "(apt-get install busybox-static)")
    os.makedirs(dest)
    for d in DIRS:
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    os.chmod(os.path.join(dest, "var/tmp"), 0o1777)
    os.chmod(os.path.join(dest, "root"), 0o700)
    shutil.copy2(busybox, os.path.join(dest, "bin", "busybox"))
    out = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True)
    for applet in out.stdout.split():
        path = os.path.join(dest, applet)
        if os.path.lexists(path) or applet == "bin/busybox":
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink("/bin/busybox", path)
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        "etc/group": "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
        "etc/hostname": "torpor\n",
        "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
        "etc/resolv.conf": "",
        "etc/os-release": 'NAME="torpor busybox"\nID=busybox\n',
    }
    for name, text in files.items():
        with open(os.path.join(dest, name), "w") as f:
            f.write(text)


def ensure(root: str) -> str:
    """The cached rootfs under root, built on first use; returns its path."""
    path = rootfs_path(root)
    if os.path.isfile(os.path.join(path, "bin", "busybox")):
        return path
    base = os.path.dirname(path)
    os.makedirs(base, mode=0o755, exist_ok=True)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.path.isfile(os.path.join(path, "bin", "busybox")):
            return path
        tmp = f"{path}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            build(tmp)
            if os.path.exists(path):
                shutil.rmtree(path)
            os.rename(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        os.close(fd)
    return path

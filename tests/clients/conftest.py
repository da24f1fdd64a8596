"""Fixtures for the client tests: the launcher the clients exec, an OCI caller with exact argv,
and (for the end-to-end tests, marked `clients`) a busybox image tar.

The end-to-end tests need Debian's docker.io / containerd / podman (`make test-clients`
installs them); each test skips with a reason when its client is not installed.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
import tempfile

import pytest
from runtime.conftest import REPO, bundle, rootfs, rt  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def write_launcher(path: str, log: str | None = None, env: dict | None = None) -> str:
    """A stable executable for the clients: execs `python3 -m torpor "$@"` from this checkout
    (or .venv/bin/torpor's interpreter when `make setup` made one). With `log`, every argv
    line is appended there (what the client really passed)."""
    venv_py = os.path.join(REPO, ".venv", "bin", "python")
    py = venv_py if os.access(venv_py, os.X_OK) else shutil.which("python3") or "python3"
    lines = ["#!/bin/sh", f"export PYTHONPATH={REPO}"]
    lines += [f"export {k}={v}" for k, v in (env or {}).items()]
    if log:
        lines.append(f'printf "%s\\n" "$*" >> {log}')
    lines.append(f'exec {py} -m torpor "$@"')
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture(scope="session")
def private_tmp():
    """A directory outside pytest's basetemp: concurrent pytest sessions of other people
    rotate /tmp/pytest-of-root and would delete a daemon's root under its feet."""
    d = tempfile.mkdtemp(prefix="torpor-clients-")
    yield d
    with open("/proc/self/mountinfo") as f:
        if not any(d in line for line in f):
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def launcher(private_tmp) -> str:
    return write_launcher(os.path.join(private_tmp, "torpor"),
                          log=os.path.join(private_tmp, "argv.log"))


@pytest.fixture(scope="session")
def busybox_tar(private_tmp, rootfs) -> str:  # noqa: F811
    """A rootfs tar of the busybox root (for `docker import`, `podman import`)."""
    path = os.path.join(private_tmp, "busybox.tar")
    with tarfile.open(path, "w") as tar:
        for name in sorted(os.listdir(rootfs)):
            tar.add(os.path.join(rootfs, name), arcname=name)
    return path


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (make test-clients installs them)")


def run(cmd: list[str], timeout: float = 120, check: bool = True, env=None,
        **kw) -> subprocess.CompletedProcess:
    """A client command with its output captured (stdin closed)."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=env, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {p.returncode}\nstdout: {p.stdout[-2000:]}"
                             f"\nstderr: {p.stderr[-2000:]}")
    return p

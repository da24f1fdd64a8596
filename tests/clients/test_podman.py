"""Podman 4.3 + conmon with torpor as its OCI runtime: run, `container checkpoint`,
`container restore`, `--leave-running`, `--print-stats` (CRIU's stats-dump/stats-restore
format, read with go-criu), `--export` and `restore --import` under a new name.

Private to this module: containers.conf / storage.conf (vfs, own graphroot, runroot, tmp dir,
events file; cgroupfs; netns none; the nofile/nproc ulimits this host needs) through
CONTAINERS_CONF / CONTAINERS_STORAGE_CONF, and torpor's own --root (TORPOR_ROOT in the
launcher: Podman passes no global flags). Image: `podman import` of the busybox rootfs tar."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

import pytest
from containers.helpers import numbers

from clients.conftest import need, run, write_launcher

pytestmark = pytest.mark.clients

SEED = "i=0; while true; do echo $i; i=$(expr $i + 1); sleep 0.5; done"
CG = "/sys/fs/cgroup"


class Podman:
    def __init__(self, base: str) -> None:
        self.base = base
        self.torpor_root = os.path.join(base, "torpor-root")
        self.launcher = write_launcher(os.path.join(base, "torpor"),
                                       log=os.path.join(base, "argv.log"),
                                       env={"TORPOR_ROOT": self.torpor_root})
        os.makedirs(os.path.join(base, "tmp"))
        with open(os.path.join(base, "containers.conf"), "w") as f:
            f.write('[containers]\n'
                    'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
                    'netns = "none"\n'
                    '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
                    f'events_logfile_path = "{base}/events.log"\n'
                    f'tmp_dir = "{base}/tmp"\nruntime = "torpor"\n'
                    f'[engine.runtimes]\ntorpor = ["{self.launcher}"]\n')
        with open(os.path.join(base, "storage.conf"), "w") as f:
            f.write(f'[storage]\ndriver = "vfs"\ngraphroot = "{base}/graph"\n'
                    f'runroot = "{base}/run"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": os.path.join(base, "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": os.path.join(base, "storage.conf")}

    def __call__(self, *args: str, check: bool = True, timeout: float = 120):
        return run(["podman", *args], env=self.env, check=check, timeout=timeout)

    def logs(self, name: str) -> list[int]:
        return numbers(self("logs", name).stdout)

    def wait_numbers(self, name: str, n: int, timeout: float = 30) -> list[int]:
        deadline = time.monotonic() + timeout
        while len(nums := self.logs(name)) < n:
            assert time.monotonic() < deadline, nums
            time.sleep(0.2)
        return nums

    def status(self, name: str) -> str:
        return self("inspect", "-f", "{{.State.Status}}", name).stdout.strip()

    def stop(self) -> list[str]:
        problems = []
        self("rm", "-a", "-f", "-t", "0", check=False)
        self("rmi", "-a", "-f", check=False)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if self.base in line]
        for m in sorted(mounts, key=len, reverse=True):
            problems.append(f"mount left: {m}")
            subprocess.run(["umount", "-l", m], check=False)
        if os.path.isdir(self.torpor_root):
            problems += [f"torpor state left: {x}" for x in os.listdir(self.torpor_root)
                         if not x.startswith(".")]
        for ctrl in os.listdir(CG):
            d = os.path.join(CG, ctrl, "libpod_parent")
            if os.path.isdir(d):
                problems += [f"cgroup left: {d}/{x}" for x in os.listdir(d)
                             if x.startswith("libpod-") and os.path.isdir(os.path.join(d, x))]
        return problems


@pytest.fixture(scope="module")
def podman(private_tmp, busybox_tar):
    need("podman", "conmon")
    p = Podman(tempfile.mkdtemp(prefix="podman-", dir=private_tmp))
    try:
        p("import", busybox_tar, "busybox")
        yield p
    finally:
        problems = p.stop()
    assert not problems, problems


def _continuous(nums: list[int]) -> None:
    assert nums == list(range(len(nums))), f"counter not continuous: {nums}"


def test_checkpoint_restore(podman):
    podman("--runtime", podman.launcher, "run", "-d", "--name", "pc", "busybox", "sh", "-c",
           SEED)
    podman.wait_numbers("pc", 3)
    podman("container", "checkpoint", "pc")
    assert podman.status("pc") == "exited"
    before = podman.logs("pc")
    time.sleep(1.5)
    assert podman.logs("pc") == before
    podman("container", "restore", "pc")
    assert podman.status("pc") == "running"
    _continuous(podman.wait_numbers("pc", len(before) + 3))
    podman("rm", "-f", "-t", "0", "pc")


def test_leave_running_print_stats_export_import(podman, tmp_path):
    podman("run", "-d", "--name", "pe", "busybox", "sh", "-c", SEED)
    podman.wait_numbers("pe", 3)
    out = podman("container", "checkpoint", "--leave-running", "--print-stats", "pe").stdout
    stats = json.loads(out)["container_statistics"][0]["criu_statistics"]
    assert stats["pages_written"] > 0 and stats["frozen_time"] > 0, stats
    assert podman.status("pe") == "running"
    podman.wait_numbers("pe", len(podman.logs("pe")) + 2)

    export = os.path.join(podman.base, "pe.tar")
    podman("container", "checkpoint", "--export", export, "pe")
    assert podman.status("pe") == "exited"
    before = podman.logs("pe")
    out = podman("container", "restore", "--import", export, "--name", "pe2",
                 "--print-stats").stdout
    rstats = json.loads(out)["container_statistics"][0]
    assert "restore_time" in rstats["criu_statistics"], rstats
    assert podman.status("pe2") == "running"
    assert podman.status("pe") == "exited"
    # the exported log comes along: the new container's counter goes on after it
    _continuous(podman.wait_numbers("pe2", len(before) + 3))
    podman("rm", "-f", "-t", "0", "pe", "pe2")

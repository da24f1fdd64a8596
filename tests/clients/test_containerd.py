"""containerd 1.6 + ctr with torpor as the runc binary: `ctr run --runc-binary`,
`ctr containers checkpoint --task` (the shim: pause, checkpoint --leave-running, resume) and
`ctr containers restore --live` (restore --detach --pid-file -no-subreaper --bundle).

The containerd is private to this module (own root, state, socket; CRI plugin disabled) and
the test uses a namespace of its own; the image is a docker-archive tar built here from the
busybox rootfs (`ctr image import`, no registry)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time

import pytest
from containers.helpers import numbers

from clients.conftest import need, run

pytestmark = pytest.mark.clients

IMAGE = "docker.io/library/busybox:latest"
CG = "/sys/fs/cgroup"


def docker_archive(layer_tar: str, out: str) -> str:
    """A `docker save`-style archive (manifest.json, config, one layer) of a rootfs tar."""
    with open(layer_tar, "rb") as f:
        layer = f.read()
    cfg = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": [IMAGE],
                            "Layers": ["layer/layer.tar"]}]).encode()
    with tarfile.open(out, "w") as t:
        for name, data in ((cfg_name, cfg), ("layer/layer.tar", layer), ("manifest.json", manifest)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    return out


class Containerd:
    def __init__(self, base: str, launcher: str) -> None:
        self.base = base
        self.sock = os.path.join(base, "containerd.sock")
        self.ns = f"torpor-test-{os.getpid()}"
        self.launcher = launcher
        self.proc: subprocess.Popen | None = None
        self.ids: list[str] = []

    def start(self) -> None:
        cfg = os.path.join(self.base, "config.toml")
        with open(cfg, "w") as f:
            f.write(f'version = 2\nroot = "{self.base}/root"\nstate = "{self.base}/state"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.sock}"\n'
                    f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n')
        log = open(os.path.join(self.base, "containerd.log"), "w")  # noqa: SIM115
        self.proc = subprocess.Popen(["containerd", "--config", cfg], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while self("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("containerd did not start")
            time.sleep(0.2)

    def __call__(self, *args: str, check: bool = True, timeout: float = 120):
        return run(["ctr", "--address", self.sock, "--namespace", self.ns, *args],
                   check=check, timeout=timeout)

    def remove(self, cid: str) -> None:
        self("task", "kill", "-s", "9", cid, check=False)
        deadline = time.monotonic() + 10
        while self("task", "rm", cid, check=False).returncode != 0:
            if "not found" in self("task", "ls").stdout or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self("task", "rm", "-f", cid, check=False)
        self("containers", "rm", cid, check=False)

    def stop(self) -> list[str]:
        problems = []
        for cid in self.ids:
            self.remove(cid)
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("containerd did not stop on SIGTERM")
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if self.base in line]
        for m in sorted(mounts, key=len, reverse=True):
            problems.append(f"mount left: {m}")
            subprocess.run(["umount", "-l", m], check=False)
        for ctrl in os.listdir(CG):
            d = os.path.join(CG, ctrl, self.ns)
            if os.path.isdir(d):
                left = [x for x in os.listdir(d) if os.path.isdir(os.path.join(d, x))]
                problems += [f"cgroup left: {d}/{x}" for x in left]
                if not left:
                    os.rmdir(d)
        root = f"/run/containerd/runc/{self.ns}"  # the shim's fixed --root for torpor
        if os.path.isdir(root):
            problems += [f"torpor state left: {root}/{x}" for x in os.listdir(root)]
            shutil.rmtree(root, ignore_errors=True)
        return problems


@pytest.fixture(scope="module")
def ctrd(private_tmp, launcher, busybox_tar):
    need("containerd", "ctr")
    c = Containerd(tempfile.mkdtemp(prefix="containerd-", dir=private_tmp), launcher)
    try:
        c.start()
        c("image", "import", docker_archive(busybox_tar, os.path.join(c.base, "image.tar")))
        yield c
    finally:
        problems = c.stop()
    assert not problems, problems


def _count(path: str) -> list[int]:
    try:
        with open(path) as f:
            return numbers(f.read())
    except FileNotFoundError:
        return []


def _wait(path: str, n: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(nums := _count(path)) < n:
        assert time.monotonic() < deadline, nums
        time.sleep(0.1)
    return nums


def test_ctr_run_checkpoint_restore_live(ctrd, tmp_path):
    out = tempfile.mkdtemp(prefix="out-", dir=ctrd.base)
    count = os.path.join(out, "count")
    cid = "cr"
    ctrd.ids.append(cid)
    ctrd("run", "-d", "--runc-binary", ctrd.launcher,
         "--mount", f"type=bind,src={out},dst=/out,options=rbind:rw", IMAGE, cid,
         "sh", "-c", "i=0; while true; do echo $i >> /out/count; i=$(expr $i + 1); sleep 0.3; done")
    _wait(count, 3)
    assert "RUNNING" in ctrd("task", "ls").stdout
    ctrd("containers", "checkpoint", "--task", cid, "ck1")
    at = len(_count(count))
    index = ctrd("image", "ls").stdout
    assert "ck1" in index
    assert "RUNNING" in ctrd("task", "ls").stdout  # containerd leaves it running
    _wait(count, at + 3)
    ctrd.remove(cid)
    stopped = _count(count)
    assert stopped == list(range(len(stopped)))

    ctrd("containers", "restore", "--live", cid, "ck1")
    assert "RUNNING" in ctrd("task", "ls").stdout
    nums = _wait(count, len(stopped) + 3)
    tail = nums[len(stopped):]
    # the restored counter goes on from its value at the checkpoint
    assert at - 1 <= tail[0] <= at + 1, (at, nums)
    assert tail == list(range(tail[0], tail[0] + len(tail))), nums
    ctrd.remove(cid)

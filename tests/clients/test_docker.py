"""Docker (Debian's docker.io 20.10, its own containerd) with torpor registered as a runtime:
the seed example typed as the issue shows it, --leave-running, checkpoint ls/rm, Docker's
default seccomp profile, and a `docker run -t` container.

The dockerd is private to this module: its own --data-root, --exec-root, socket, pidfile and
daemon.json (`"runtimes": {"torpor": {"path": <launcher>}}`, experimental), no iptables or
bridge; the image is `docker import` of the busybox rootfs tar (no registry)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time

import pytest
from containers.helpers import numbers

from clients.conftest import need, run

pytestmark = pytest.mark.clients

SEED = "i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done"
CG = "/sys/fs/cgroup"


class Docker:
    def __init__(self, base: str, launcher: str) -> None:
        self.base = base
        self.sock = os.path.join(base, "docker.sock")
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}"}
        self.launcher = launcher
        self.proc: subprocess.Popen | None = None
        self.names: list[str] = []

    def start(self) -> None:
        cfg = os.path.join(self.base, "daemon.json")
        with open(cfg, "w") as f:
            json.dump({"runtimes": {"torpor": {"path": self.launcher}}, "experimental": True}, f)
        log = open(os.path.join(self.base, "dockerd.log"), "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["dockerd", "--config-file", cfg, "--iptables=false", "--ip-masq=false",
             "--bridge=none", "--storage-driver=overlay2",
             "--data-root", os.path.join(self.base, "data"),
             "--exec-root", os.path.join(self.base, "exec"),
             "-H", f"unix://{self.sock}", "--pidfile", os.path.join(self.base, "docker.pid")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while run(["docker", "version"], env=self.env, check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"dockerd did not start: {self.log()[-3000:]}")
            time.sleep(0.3)

    def log(self) -> str:
        with open(os.path.join(self.base, "dockerd.log")) as f:
            return f.read()

    def __call__(self, *args: str, check: bool = True, timeout: float = 120):
        return run(["docker", *args], env=self.env, check=check, timeout=timeout)

    def stop(self) -> list[str]:
        problems = []
        for name in self.names:
            self("rm", "-f", name, check=False)
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                problems.append("dockerd did not stop on SIGTERM")
                self.proc.kill()
                self.proc.wait()
        # everything the daemon or torpor made below base must be gone
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if self.base in line]
        for m in sorted(mounts, key=len, reverse=True):
            problems.append(f"mount left: {m}")
            subprocess.run(["umount", "-l", m], check=False)
        for ctrl in os.listdir(CG):
            d = os.path.join(CG, ctrl, "docker")
            if os.path.isdir(d):
                left = [x for x in os.listdir(d) if os.path.isdir(os.path.join(d, x))]
                problems += [f"cgroup left: {d}/{x}" for x in left]
        return problems

    def shell(self, line: str, check: bool = True):
        """A command line as a user types it (the seed's examples)."""
        return run(["sh", "-c", line], env=self.env, check=check)

    def logs(self, name: str) -> str:
        p = self("logs", name)
        return p.stdout + p.stderr

    def wait_numbers(self, name: str, n: int, timeout: float = 30) -> list[int]:
        deadline = time.monotonic() + timeout
        while True:
            nums = numbers(self.logs(name))
            if len(nums) >= n or time.monotonic() > deadline:
                assert len(nums) >= n, (nums, self.log()[-2000:])
                return nums
            time.sleep(0.2)

    def status(self, name: str) -> str:
        return self("inspect", "-f", "{{.State.Status}}", name).stdout.strip()

    def wait_status(self, name: str, want: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while (st := self.status(name)) != want:
            assert time.monotonic() < deadline, (name, st)
            time.sleep(0.2)


@pytest.fixture(scope="module")
def docker(private_tmp, launcher, busybox_tar):
    need("dockerd", "docker")
    d = Docker(tempfile.mkdtemp(prefix="docker-", dir=private_tmp), launcher)
    try:
        d.start()
        d("import", busybox_tar, "busybox")
        yield d
    finally:
        problems = d.stop()
    assert not problems, problems


def _continuous(nums: list[int]) -> None:
    assert nums == list(range(len(nums))), f"counter not continuous: {nums}"


def test_seed_example(docker):
    """The seed, exactly: run, checkpoint create, (counter stands still), start --checkpoint,
    and `docker logs` shows the counter go on with no gap and no repeat."""
    docker.names.append("cr")
    docker.shell("docker run --runtime torpor --security-opt=seccomp:unconfined --name cr -d "
                 "busybox /bin/sh -c 'i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; "
                 "done'")
    docker.wait_numbers("cr", 3)
    docker.shell("docker checkpoint create cr checkpoint1")
    docker.wait_status("cr", "exited")
    before = numbers(docker.logs("cr"))
    _continuous(before)
    assert "checkpoint1" in docker("checkpoint", "ls", "cr").stdout
    time.sleep(2.5)
    assert numbers(docker.logs("cr")) == before  # stopped while checkpointed
    docker.shell("docker start --checkpoint checkpoint1 cr")
    assert docker.status("cr") == "running"
    after = docker.wait_numbers("cr", len(before) + 3)
    _continuous(after)
    docker("checkpoint", "rm", "cr", "checkpoint1")
    assert "checkpoint1" not in docker("checkpoint", "ls", "cr").stdout
    docker("rm", "-f", "cr")


def test_leave_running_then_restore(docker):
    docker.names.append("lr")
    docker("run", "--runtime", "torpor", "--security-opt", "seccomp=unconfined", "--name", "lr",
           "-d", "busybox", "/bin/sh", "-c", SEED)
    docker.wait_numbers("lr", 2)
    try:  # the shim pauses the container first, then checkpoint --leave-running
        docker("checkpoint", "create", "--leave-running", "lr", "c1", timeout=40)
    except subprocess.TimeoutExpired:
        cid = docker("inspect", "-f", "{{.Id}}", "lr").stdout.strip()
        with open(f"{CG}/freezer/docker/{cid}/freezer.state", "w") as f:
            f.write("THAWED")  # lets the engine's SIGKILLed snapshots die: it then finishes
        pytest.fail("checkpoint --leave-running of the paused container hung (engine: a "
                    "snapshot cannot die in a frozen cgroup)")
    at = numbers(docker.logs("lr"))[-1]
    assert docker.status("lr") == "running"
    docker.wait_numbers("lr", at + 3)  # goes on
    docker("stop", "-t", "1", "lr")
    docker.wait_status("lr", "exited")
    stopped = numbers(docker.logs("lr"))
    docker("start", "--checkpoint", "c1", "lr")
    nums = docker.wait_numbers("lr", len(stopped) + 3)
    tail = nums[len(stopped):]
    # the restored counter starts from where it was at the checkpoint, then counts on
    assert at <= tail[0] <= at + 1, (at, nums)
    assert tail == list(range(tail[0], tail[0] + len(tail))), nums
    docker("rm", "-f", "lr")


def test_tty_container(docker):
    docker.names.append("tt")
    docker("run", "--runtime", "torpor", "-t", "--security-opt", "seccomp=unconfined", "--name",
           "tt", "-d", "busybox", "/bin/sh", "-c", SEED)
    docker.wait_numbers("tt", 2)
    docker("checkpoint", "create", "tt", "c1")
    docker.wait_status("tt", "exited")
    before = numbers(docker.logs("tt"))
    docker("start", "--checkpoint", "c1", "tt")
    after = docker.wait_numbers("tt", len(before) + 2)
    _continuous(after)
    docker("rm", "-f", "tt")


def test_default_seccomp_profile(docker):
    """No --security-opt: Docker's default profile (it answers clone3 with ENOSYS; the engine
    traces with PTRACE_O_SUSPEND_SECCOMP) is saved and back after the restore."""
    docker.names.append("sc")
    docker("run", "--runtime", "torpor", "--name", "sc", "-d", "busybox", "/bin/sh", "-c", SEED)
    docker.wait_numbers("sc", 2)
    docker("checkpoint", "create", "sc", "c1")
    docker.wait_status("sc", "exited")
    before = numbers(docker.logs("sc"))
    docker("start", "--checkpoint", "c1", "sc")
    after = docker.wait_numbers("sc", len(before) + 2)
    _continuous(after)
    pid = docker("inspect", "-f", "{{.State.Pid}}", "sc").stdout.strip()
    with open(f"/proc/{pid}/status") as f:
        assert "Seccomp:\t2" in f.read()
    docker("rm", "-f", "sc")


def test_exec_top_update_pause(docker):
    """The rest of the shim's argv through Docker: exec --process F --detach --pid-file,
    ps --format json (docker top), update --resources - (docker update), pause/resume."""
    docker.names.append("ex")
    docker("run", "--runtime", "torpor", "--name", "ex", "-d", "busybox", "sleep", "1000")
    assert docker("exec", "ex", "sh", "-c", "echo hello-$((1+1))").stdout.strip() == "hello-2"
    p = docker("exec", "ex", "sh", "-c", "exit 3", check=False)
    assert p.returncode == 3
    assert "sleep 1000" in docker("top", "ex").stdout
    # exec with a terminal: the pty master comes back over --console-socket
    out = docker("exec", "-t", "ex", "sh", "-c", "test -t 1 && tty").stdout
    assert out.strip().startswith("/dev/pts/"), out
    docker("update", "--memory", "64m", "--memory-swap", "64m", "ex")
    cid = docker("inspect", "-f", "{{.Id}}", "ex").stdout.strip()
    with open(f"{CG}/memory/docker/{cid}/memory.limit_in_bytes") as f:
        assert int(f.read()) == 64 << 20
    docker("pause", "ex")
    assert docker.status("ex") == "paused"
    docker("unpause", "ex")
    assert docker.status("ex") == "running"
    docker("rm", "-f", "ex")
    p = docker("exec", "ex", "true", check=False)
    assert p.returncode != 0

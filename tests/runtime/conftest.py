"""Fixtures for runtime tests: a private --root, busybox bundles, and a strict clean-up.

Every container a test creates is deleted (--force) afterwards, and the clean-up checks that
no process, cgroup or state directory of it is left behind.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time

import pytest

from torpor.runtime import busybox
from torpor.runtime.spec import default_spec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CG = "/sys/fs/cgroup"


class Result:
    def __init__(self, p: subprocess.CompletedProcess) -> None:
        self.rc = p.returncode
        self.out = p.stdout
        self.err = p.stderr

    def json(self):
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"Result(rc={self.rc}, out={self.out[-500:]!r}, err={self.err[-500:]!r})"


class Runtime:
    """`python3 -m torpor --root <tmp> ...` with bookkeeping of the containers made."""

    def __init__(self, root: str, tmp: str) -> None:
        self.root = root
        self.tmp = tmp
        self.ids: set[str] = set()
        self.pids: set[int] = set()
        self.n = 0
        self.last_output = ""

    def id(self, name: str = "c") -> str:
        self.n += 1
        cid = f"t{os.getpid()}-{name}-{self.n}"
        self.ids.add(cid)
        return cid

    def __call__(self, *args: str, input: str | None = None, check: bool = True,
                 timeout: float = 60, pass_fds=(), glob: tuple[str, ...] = ()) -> Result:
        cmd = [sys.executable, "-m", "torpor", "--root", self.root, *glob, *args]
        env = {**os.environ, "PYTHONPATH": REPO}
        if args and (args[0] == "create" or (args[0] == "exec" and "-d" in args)):
            # the init inherits the caller's stdio (as a shim wants): give it files, not pipes
            self.n += 1
            out_path = os.path.join(self.tmp, f"create{self.n}.out")
            err_path = os.path.join(self.tmp, f"create{self.n}.err")
            with open(out_path, "w") as out, open(err_path, "w") as err:
                p = subprocess.run(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                   timeout=timeout, cwd=REPO, pass_fds=pass_fds, env=env)
            with open(out_path) as out, open(err_path) as err:
                p = subprocess.CompletedProcess(cmd, p.returncode, out.read(), err.read())
            self.last_output = out_path
        else:
            p = subprocess.run(cmd, input=input, capture_output=True, text=True,
                               timeout=timeout, cwd=REPO, pass_fds=pass_fds, env=env,
                               stdin=None if input is not None else subprocess.DEVNULL)
        r = Result(p)
        if check and r.rc != 0:
            raise AssertionError(f"torpor {' '.join(args)} failed: {r}")
        return r

    def state(self, cid: str) -> dict:
        s = self("state", cid).json()
        if s.get("pid"):
            self.pids.add(s["pid"])
        return s

    def status(self, cid: str) -> str:
        return self.state(cid)["status"]

    def wait_status(self, cid: str, want: str, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            s = self.state(cid)
            if s["status"] == want or time.monotonic() > deadline:
                assert s["status"] == want, s
                return s
            time.sleep(0.05)

    def logs(self, cid: str) -> str:
        return self("logs", cid).out

    def wait_log(self, cid: str, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while True:
            out = self.logs(cid)
            if text in out or time.monotonic() > deadline:
                assert text in out, out
                return out
            time.sleep(0.05)


def cgroup_leftovers(cid: str) -> list[str]:
    out = []
    for ctrl in os.listdir(CG):
        path = os.path.join(CG, ctrl, "torpor", cid)
        if os.path.isdir(path):
            out.append(path)
    return out


@pytest.fixture
def rt(tmp_path):
    root = str(tmp_path / "root")
    r = Runtime(root, str(tmp_path))
    yield r
    problems = []
    for cid in sorted(r.ids):
        d = os.path.join(root, cid)
        if os.path.exists(os.path.join(d, "state.json")):
            try:
                with open(os.path.join(d, "state.json")) as f:
                    pid = json.load(f).get("pid")
                if pid:
                    r.pids.add(pid)
            except (OSError, ValueError):
                pass
        res = r("delete", "--force", cid, check=False)
        if res.rc != 0:
            problems.append(f"delete --force {cid}: {res.err.strip()}")
        if os.path.exists(d):
            problems.append(f"state dir {d} left")
        problems += [f"cgroup {p} left" for p in cgroup_leftovers(cid)]
    with open("/proc/self/mountinfo") as f:
        mounts = [line for line in f if r.tmp in line or "/busybox" in line]
    problems += [f"mount left: {line.strip()}" for line in mounts]
    deadline = time.monotonic() + 5
    for pid in r.pids:
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.02)
        if _running(pid):
            problems.append(f"process {pid} left")
            try:
                os.kill(pid, 9)
            except OSError:
                pass
    assert not problems, problems


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(")") + 2] not in "ZX"


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("busybox") / "rootfs")
    busybox.build(path)
    return path


@pytest.fixture
def bundle(tmp_path, rootfs):
    """make(args, **changes) -> bundle dir with a config.json over the shared busybox root."""
    counter = [0]

    def make(args: list[str], edit=None, raw: str | None = None, terminal: bool = False) -> str:
        counter[0] += 1
        d = tmp_path / f"bundle{counter[0]}"
        d.mkdir()
        spec = default_spec(args, rootfs=rootfs, terminal=terminal)
        spec["process"]["capabilities"] = None
        del spec["process"]["capabilities"]
        spec["process"]["noNewPrivileges"] = False
        spec = copy.deepcopy(spec)
        if edit is not None:
            edit(spec)
        (d / "config.json").write_text(raw if raw is not None else json.dumps(spec, indent=1))
        return str(d)

    return make


COUNTER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"

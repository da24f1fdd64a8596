from __future__ import annotations

import os
import subprocess
import sys
import time

from runtime.conftest import REPO, cgroup_leftovers

FAST = "i=0; while true; do echo $i; i=$(expr $i + 1); sleep 0.2; done"


def numbers(text: str) -> list[int]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.isdigit():
            out.append(int(line))
    return out


def assert_continuous(text: str, at_least: int = 0) -> list[int]:
    nums = numbers(text)
    assert nums == list(range(len(nums))), f"counter not continuous: {nums}"
    assert len(nums) >= at_least, nums
    return nums


def wait_count(rt, cid: str, n: int, timeout: float = 15) -> list[int]:
    """Wait until the log of cid holds at least n counter lines."""
    deadline = time.monotonic() + timeout
    while True:
        nums = numbers(rt.logs(cid))
        if len(nums) >= n or time.monotonic() > deadline:
            assert len(nums) >= n, nums
            return nums
        time.sleep(0.05)


def torpor_to_files(rt, *args: str, name: str = "out", timeout: float = 60):
    """Run torpor with stdio on files (a restored init inherits them); (rc, out path, err)."""
    cmd = [sys.executable, "-m", "torpor", "--root", rt.root, *args]
    out = os.path.join(rt.tmp, f"{name}.out")
    err = os.path.join(rt.tmp, f"{name}.err")
    with open(out, "w") as fo, open(err, "w") as fe:
        p = subprocess.run(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, cwd=REPO,
                           env={**os.environ, "PYTHONPATH": REPO}, timeout=timeout)
    with open(err) as f:
        return p.returncode, out, f.read()


def nothing_left(rt, cid: str) -> None:
    assert not os.path.exists(os.path.join(rt.root, cid)), f"state dir of {cid} left"
    assert not cgroup_leftovers(cid), cgroup_leftovers(cid)


def init_vpid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    raise AssertionError("no NSpid")

"""Cgroup limits are applied (read back from the cgroup) and enforced."""

from __future__ import annotations

import time

CG = "/sys/fs/cgroup/{}/torpor/{}/{}"


def read(ctrl, cid, name):
    with open(CG.format(ctrl, cid, name)) as f:
        return f.read().strip()


def test_limits_applied(rt, bundle):
    def edit(s):
        s["linux"]["resources"].update(memory={"limit": 32 << 20, "reservation": 16 << 20},
                                       pids={"limit": 50},
                                       cpu={"shares": 256, "quota": 50000, "period": 100000})

    cid = rt.id()
    rt("run", "-d", "--bundle", bundle(["sleep", "100"], edit=edit), cid)
    pid = rt.state(cid)["pid"]
    assert read("memory", cid, "memory.limit_in_bytes") == str(32 << 20)
    assert read("memory", cid, "memory.soft_limit_in_bytes") == str(16 << 20)
    assert read("pids", cid, "pids.max") == "50"
    assert read("cpu", cid, "cpu.shares") == "256"
    assert read("cpu", cid, "cpu.cfs_quota_us") == "50000"
    assert read("cpu", cid, "cpu.cfs_period_us") == "100000"
    for ctrl in ("memory", "pids", "cpu", "freezer", "devices"):
        assert str(pid) in read(ctrl, cid, "cgroup.procs").split()
    with open(f"/proc/{pid}/cgroup") as f:
        assert f"/torpor/{cid}" in f.read()


def test_cgroups_path(rt, bundle):
    cid = rt.id()
    path = f"/torpor/custom-{cid}"
    rt("run", "-d", "--bundle", bundle(["sleep", "100"],
                                        edit=lambda s: s["linux"].update(cgroupsPath=path)), cid)
    pid = rt.state(cid)["pid"]
    with open(f"/sys/fs/cgroup/pids{path}/cgroup.procs") as f:
        assert str(pid) in f.read().split()
    rt("delete", "--force", cid)
    import os

    assert not os.path.exists(f"/sys/fs/cgroup/pids{path}")


def test_fork_bomb_stopped_by_pids_limit(rt, bundle):
    bomb = "b() { b | b & }; b; sleep 1; echo survived"

    def edit(s):
        s["linux"]["resources"]["pids"] = {"limit": 24}

    cid = rt.id()
    rt("run", "-d", "--bundle", bundle(["sh", "-c", bomb], edit=edit), cid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if int(read("pids", cid, "pids.events").split()[1]) > 0:
            break
        time.sleep(0.05)
    assert int(read("pids", cid, "pids.events").split()[1]) > 0  # forks were refused
    assert int(read("pids", cid, "pids.current")) <= 24
    rt("delete", "--force", cid)


def test_memory_limit_enforced(rt, bundle):
    def edit(s):
        s["linux"]["resources"]["memory"] = {"limit": 16 << 20}

    cid = rt.id()
    # a 64 MiB string cannot live in a 16 MiB cgroup without swap: the OOM killer ends it
    r = rt("run", "--bundle", bundle(["sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a);"
                                             " echo ${#x}"], edit=edit), cid, check=False)
    assert r.rc != 0 and "67108864" not in r.out

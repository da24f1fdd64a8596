"""The runsc workflow: checkpoint --image-path P [--leave-running] ID; restore into the same
id, a new id (config from the image or from `create --bundle`), containerd's argv, and after
the whole --root is gone."""

from __future__ import annotations

import os
import shutil
import time

from .helpers import (
    FAST,
    assert_continuous,
    init_vpid,
    numbers,
    torpor_to_files,
    wait_count,
)


def test_checkpoint_stops_and_restore_goes_on(rt, tmp_path):
    cid = rt.id("ck")
    img = str(tmp_path / "img")
    rt("run", "-d", cid, "--", "sh", "-c", FAST)
    wait_count(rt, cid, 4)
    rt("checkpoint", "--image-path", img, cid)
    s = rt.state(cid)
    assert s["status"] == "stopped" and s["pid"] == 0
    assert rt("ps", "--format", "json", cid, check=False).out.strip() in ("", "[]", "null")
    before = rt.logs(cid)
    time.sleep(0.6)
    assert rt.logs(cid) == before  # stands still while checkpointed
    rt("restore", "--image-path", img, cid)
    s = rt.wait_status(cid, "running")
    assert init_vpid(s["pid"]) == 1
    n = len(numbers(before))
    wait_count(rt, cid, n + 4)
    assert_continuous(rt.logs(cid), n + 4)
    # the image survives for another restore: ps shows the restored tree
    assert len(rt("ps", "--format", "json", cid).json()) == 2


def test_leave_running_then_restore_into_new_id(rt, tmp_path):
    c1, c2 = rt.id("orig"), rt.id("copy")
    img = str(tmp_path / "img")
    rt("run", "-d", c1, "--", "sh", "-c",
       "echo data > /tmp/file; echo shm > /dev/shm/seg; " + FAST)
    wait_count(rt, c1, 3)
    pid1 = rt.state(c1)["pid"]
    rt("checkpoint", "--leave-running", "--image-path", img, c1)
    assert rt.state(c1) == {**rt.state(c1), "status": "running", "pid": pid1}
    at_ck = len(numbers(rt.logs(c1)))
    rt("restore", "--image-path", img, c2)  # config and bundle from the image
    s = rt.wait_status(c2, "running")
    assert s["pid"] != pid1 and init_vpid(s["pid"]) == 1
    out = rt("exec", c2, "--", "sh", "-c", "hostname; cat /tmp/file /dev/shm/seg").out.split()
    assert out == [c1, "data", "shm"]  # UTS and tmpfs contents as they were
    nums = wait_count(rt, c2, 3)
    assert nums == list(range(nums[0], nums[0] + len(nums)))
    assert 0 < nums[0] <= at_ck + 1
    assert rt.status(c1) == "running"  # the original goes on
    wait_count(rt, c1, at_ck + 2)


def test_create_then_restore_bundle_state(rt, bundle, tmp_path):
    def edit(spec):
        spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                               "options": ["nosuid", "nodev", "mode=1777"]})
        spec["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 50}}

    b = bundle(["sh", "-c", FAST], edit=edit)
    c1, c2 = rt.id("src"), rt.id("dst")
    img = str(tmp_path / "img")
    rt("run", "-d", "-b", b, c1)
    wait_count(rt, c1, 2)
    rt("exec", c1, "--", "sh", "-c",
       "ip addr add 10.11.12.13/24 dev lo && hostname changed && echo x > /tmp/x")
    rt("checkpoint", "--image-path", img, c1)
    assert rt.status(c1) == "stopped"
    rt("create", "--bundle", b, c2)
    assert rt.status(c2) == "created"
    created_pid = rt.state(c2)["pid"]
    rt("restore", "--image-path", img, c2)  # replaces the created init
    s = rt.wait_status(c2, "running")
    assert s["pid"] != created_pid and init_vpid(s["pid"]) == 1
    out = rt("exec", c2, "--", "sh", "-c", "hostname; cat /tmp/x; ip addr show lo").out
    assert out.startswith("changed\nx\n") and "10.11.12.13/24" in out
    assert "127.0.0.1/8" in out
    cg = "/sys/fs/cgroup"
    with open(f"{cg}/memory/torpor/{c2}/memory.limit_in_bytes") as f:
        assert int(f.read()) == 64 << 20
    with open(f"{cg}/pids/torpor/{c2}/pids.max") as f:
        assert f.read().strip() == "50"
    with open(f"{cg}/pids/torpor/{c2}/cgroup.procs") as f:
        assert s["pid"] in [int(x) for x in f.read().split()]
    wait_count(rt, c2, 2)


def test_containerd_restore_argv(rt, bundle, tmp_path):
    b = bundle(["sh", "-c", FAST])
    cid = rt.id("shim")
    img, work = str(tmp_path / "img"), str(tmp_path / "work")
    rt("run", "-d", "-b", b, cid)
    wait_count(rt, cid, 3)
    at_ck = len(numbers(rt.logs(cid)))
    rt("checkpoint", "--image-path", img, "--work-path", work, "--leave-running", cid)
    rt("delete", "--force", cid)
    pidfile = str(tmp_path / "init.pid")
    rc, out, err = torpor_to_files(rt, "restore", "--image-path", img, "--work-path", work,
                                   "--detach", "--pid-file", pidfile, "-no-subreaper",
                                   "--bundle", b, cid)
    assert rc == 0, err
    s = rt.state(cid)
    assert s["status"] == "running"
    with open(pidfile) as f:
        assert int(f.read()) == s["pid"]
    for what in ("dump", "restore"):  # the work path holds both commands' statistics
        assert os.path.exists(os.path.join(work, f"torpor-{what}-stats.json")), what
    deadline = time.monotonic() + 10
    while len(numbers(open(out).read())) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    nums = numbers(open(out).read())  # the restored init writes to restore's stdout
    assert len(nums) >= 3 and nums == list(range(nums[0], nums[0] + len(nums)))
    assert 0 < nums[0] <= at_ck + 2


def test_restore_after_root_deleted(rt, tmp_path):
    cid = rt.id("reboot")
    img = str(tmp_path / "img")
    rt("run", "-d", cid, "--", "sh", "-c", FAST)
    wait_count(rt, cid, 3)
    rt("checkpoint", "--image-path", img, cid)
    last = numbers(rt.logs(cid))[-1]
    rt("delete", cid)
    shutil.rmtree(rt.root)  # "the host restarted": only the image is left
    rt("restore", "--image-path", img, cid)
    assert rt.wait_status(cid, "running")
    assert os.path.isfile(os.path.join(rt.root, ".busybox", "rootfs", "bin", "busybox"))
    nums = wait_count(rt, cid, 3)
    assert nums == list(range(last + 1, last + 1 + len(nums)))


def test_paused_container(rt, tmp_path):
    """containerd wraps checkpoint as pause, checkpoint, resume."""
    cid = rt.id("paused")
    rt("run", "-d", cid, "--", "sh", "-c", FAST)
    wait_count(rt, cid, 2)
    rt("pause", cid)
    rt("checkpoint", "--leave-running", "--image-path", str(tmp_path / "a"), cid)
    assert rt.status(cid) == "paused"
    n = len(numbers(rt.logs(cid)))
    time.sleep(0.5)
    assert len(numbers(rt.logs(cid))) == n
    rt("resume", cid)
    wait_count(rt, cid, n + 2)
    rt("pause", cid)
    rt("checkpoint", "--image-path", str(tmp_path / "b"), cid)
    assert rt.status(cid) == "stopped"
    rt("restore", "--image-path", str(tmp_path / "b"), cid)
    assert rt.status(cid) == "running"
    m = len(numbers(rt.logs(cid)))
    wait_count(rt, cid, m + 2)
    assert_continuous(rt.logs(cid), m + 2)


def test_tree_pids_inside_kept(rt, tmp_path):
    cid = rt.id("tree")
    rt("run", "-d", cid, "--", "sh", "-c",
       "(sleep 1000 & sleep 1000 & wait) & " + FAST)
    wait_count(rt, cid, 2)

    def tree():
        """(pid, ppid, comm) inside the container: the shells and the two long sleeps (the
        counter's short sleep, a child of PID 1, comes and goes)."""
        out = rt("exec", cid, "--", "ps", "-o", "pid,ppid,comm").out.splitlines()[1:]
        rows = [tuple(line.split()) for line in out]
        return sorted(r for r in rows if r[2] == "sh" or (r[2] == "sleep" and r[1] != "1"))

    before = tree()
    rt("checkpoint", "--image-path", str(tmp_path / "img"), cid)
    rt("restore", "--image-path", str(tmp_path / "img"), cid)
    after = tree()
    assert before == after and ("1", "0", "sh") in after
    assert len([t for t in after if t[2] == "sleep"]) == 2


def test_lazy_restore_of_a_container(rt, tmp_path):
    """restore --lazy: the container runs at once, its memory served by the page server."""
    cid = rt.id("lazy")
    img = str(tmp_path / "img")
    rt("run", "-d", cid, "--", "sh", "-c", FAST)
    wait_count(rt, cid, 4)
    rt("checkpoint", "--image-path", img, cid)
    n = len(numbers(rt.logs(cid)))
    rt("restore", "--lazy", "--image-path", img, cid)
    s = rt.wait_status(cid, "running")
    assert init_vpid(s["pid"]) == 1
    wait_count(rt, cid, n + 4)
    assert_continuous(rt.logs(cid), n + 4)

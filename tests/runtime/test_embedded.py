"""The embedded default (busybox root, no bundle), the monitor, logs and the demo."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from .conftest import REPO, cgroup_leftovers


def test_embedded_run_logs_exit_status(rt):
    cid = rt.id()
    rt("run", "-d", cid, "--", "sh", "-c", "echo out; echo err >&2; echo $$; hostname;"
       " ls /tmp | wc -l; sleep 0.3; exit 3")
    s = rt.wait_status(cid, "stopped")
    assert s["exitStatus"] == 3
    assert s["annotations"] == {"org.torpor.embedded": "busybox"}
    out = rt.logs(cid)
    assert out.split("\n")[:5] == ["out", "err", "1", cid, "0"]
    # the rootfs is built once and cached under the root
    assert os.path.isfile(os.path.join(rt.root, ".busybox", "rootfs", "bin", "busybox"))


def test_monitor_is_parent_and_subreaper(rt):
    cid = rt.id()
    rt("run", "-d", cid, "--", "sleep", "100")
    pid = rt.state(cid)["pid"]
    ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    assert "torpor" in open(f"/proc/{ppid}/cmdline").read()
    # the monitor holds no pytest pipe: its stdio is /dev/null
    assert os.readlink(f"/proc/{ppid}/fd/1") == "/dev/null"
    rt("kill", cid, "KILL")
    assert rt.wait_status(cid, "stopped")["exitStatus"] == 137
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{ppid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{ppid}/cmdline") or "torpor" not in open(
        f"/proc/{ppid}/cmdline").read()


def test_logs_follow_ends_when_stopped(rt):
    cid = rt.id()
    rt("run", "-d", cid, "--", "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done")
    t0 = time.monotonic()
    r = rt("logs", "-f", cid, timeout=20)
    assert r.out == "line1\nline2\nline3\n"
    assert time.monotonic() - t0 < 10


def test_logs_without_monitor(rt, bundle):
    cid = rt.id()
    rt("create", "--bundle", bundle(["true"]), cid)
    r = rt("logs", cid, check=False)
    assert r.rc != 0 and "has no log" in r.err


def test_terminal_under_monitor(rt):
    cid = rt.id()
    rt("run", "-d", "-t", cid, "--", "sh", "-c", "tty; test -t 1 && echo isatty")
    rt.wait_status(cid, "stopped")
    out = rt.wait_log(cid, "isatty")
    assert "/dev/pts/" in out or "/dev/console" in out


def test_demo_fresh_root(tmp_path):
    root = str(tmp_path / "fresh")
    p = subprocess.run([sys.executable, "-m", "torpor", "--root", root, "demo", "--seconds", "2.5",
                        "--id", f"demo{os.getpid()}"], capture_output=True, text=True,
                       timeout=120, cwd=REPO, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert '"status": "running"' in p.stdout
    assert "\n0\n1\n" in p.stdout
    assert f"container demo{os.getpid()} deleted" in p.stdout
    assert [n for n in os.listdir(root) if not n.startswith(".")] == []
    assert not cgroup_leftovers(f"demo{os.getpid()}")

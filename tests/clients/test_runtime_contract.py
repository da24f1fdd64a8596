"""The argv contract of ../shared/design/oci-clients.md, line by line, with no daemon: the
launcher the clients exec is called with the exact argv containerd's shim, Docker and
Podman/conmon pass, against real busybox bundles."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

from containers.helpers import numbers

from clients.conftest import run
from torpor.runtime import criu_files
from torpor.runtime.console import recv_fd

COUNT = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"


class Caller:
    """Calls the launcher as a client would: stdio on files (a created or restored init
    inherits them, as with the shim's fifos), extra fds passed like the shim's 3 and 4."""

    def __init__(self, launcher: str, tmp: str) -> None:
        self.launcher = launcher
        self.tmp = tmp
        self.n = 0

    def __call__(self, *argv: str, stdin: str | None = None, pass_fds=(), check: bool = True,
                 timeout: float = 60):
        self.n += 1
        out = os.path.join(self.tmp, f"call{self.n}.out")
        err = os.path.join(self.tmp, f"call{self.n}.err")
        fin = open(stdin) if stdin else subprocess.DEVNULL  # noqa: SIM115
        try:
            with open(out, "w") as fo, open(err, "w") as fe:
                p = subprocess.run([self.launcher, *argv], stdin=fin, stdout=fo, stderr=fe,
                                   pass_fds=pass_fds, timeout=timeout)
        finally:
            if stdin:
                fin.close()
        with open(out) as fo, open(err) as fe:
            res = subprocess.CompletedProcess(argv, p.returncode, fo.read(), fe.read())
        res.out_path = out  # type: ignore[attr-defined]
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {p.returncode}: {res.stderr}")
        return res


def log_lines(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]  # every line one JSON object


def fds_of(pid: int) -> list[int]:
    return sorted(int(x) for x in os.listdir(f"/proc/{pid}/fd"))


def wait_numbers(path: str, n: int, timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        with open(path) as f:
            nums = numbers(f.read())
        if len(nums) >= n or time.monotonic() > deadline:
            assert len(nums) >= n, nums
            return nums
        time.sleep(0.05)


def test_version_runc_style(launcher):
    p = run([launcher, "--version"])
    lines = p.stdout.splitlines()
    assert lines[0].startswith("runc version "), lines
    assert any(x.startswith("commit: ") for x in lines), lines
    assert any(x.startswith("spec: 1.") for x in lines), lines


def test_checkpoint_help_exits_0(launcher):
    p = run([launcher, "checkpoint", "--help"])
    assert "--image-path" in p.stdout and "--work-path" in p.stdout


def test_shim_lifecycle(rt, bundle, launcher, tmp_path):
    """containerd's shim: create/start/state/ps/update/exec/pause/resume/kill/delete, with the
    global flags first, the shim's fds 3 and 4 open, and a JSON log."""
    call = Caller(launcher, str(tmp_path))
    cid = rt.id()
    b = bundle(["sh", "-c", COUNT])
    log = os.path.join(b, "log.json")
    G = ["--root", rt.root, "--log", log, "--log-format", "json"]
    r3, w3 = os.pipe()
    r4, w4 = os.pipe()
    try:
        os.dup2(r3, 30)
        os.dup2(w4, 40)
        call(*G, "create", "--bundle", b, "--pid-file", f"{b}/init.pid", cid, pass_fds=(30, 40))
    finally:
        for fd in (r3, w3, r4, w4):
            os.close(fd)
        for fd in (30, 40):
            try:
                os.close(fd)
            except OSError:
                pass
    pid = int(open(f"{b}/init.pid").read())
    rt.pids.add(pid)
    call(*G, "start", cid)
    st = json.loads(call(*G, "state", cid).stdout)
    assert st["status"] == "running" and st["pid"] == pid and st["id"] == cid
    time.sleep(0.3)
    assert fds_of(pid) == [0, 1, 2], "an fd of the runtime leaked into the container"
    pids = json.loads(call(*G, "ps", "--format", "json", cid).stdout)
    assert pid in pids and all(isinstance(x, int) for x in pids), pids

    res = tmp_path / "res.json"
    res.write_text(json.dumps({"pids": {"limit": 123}, "memory": {"limit": 64 << 20}}))
    call(*G, "update", "--resources", "-", cid, stdin=str(res))
    with open(f"/sys/fs/cgroup/pids/torpor/{cid}/pids.max") as f:
        assert f.read().strip() == "123"
    # what `docker update --memory 32m` sends: every field, the unset ones as 0 (runc: unset)
    res.write_text(json.dumps({
        "memory": {"limit": 32 << 20, "reservation": 0, "swap": 0, "kernel": 0, "kernelTCP": 0,
                   "swappiness": None, "disableOOMKiller": False},
        "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0,
                "realtimePeriod": 0, "cpus": "", "mems": ""},
        "pids": {"limit": 0}, "blockIO": {"weight": 0}}))
    call(*G, "update", "--resources", "-", cid, stdin=str(res))
    with open(f"/sys/fs/cgroup/pids/torpor/{cid}/pids.max") as f:
        assert f.read().strip() == "123"
    with open(f"/sys/fs/cgroup/memory/torpor/{cid}/memory.limit_in_bytes") as f:
        assert int(f.read()) == 32 << 20

    proc = tmp_path / "process.json"
    proc.write_text(json.dumps({"args": ["sh", "-c", "echo from-exec > /tmp/x; sleep 30"],
                                "cwd": "/", "env": ["PATH=/bin:/sbin"],
                                "user": {"uid": 0, "gid": 0}}))
    epid_file = str(tmp_path / "exec.pid")
    call(*G, "exec", "--process", str(proc), "--detach", "--pid-file", epid_file, cid)
    epid = int(open(epid_file).read())
    rt.pids.add(epid)
    time.sleep(0.3)
    assert fds_of(epid) == [0, 1, 2], "an fd of the runtime leaked into the exec'd process"
    assert {pid, epid} <= set(json.loads(call(*G, "ps", "--format", "json", cid).stdout))

    call(*G, "pause", cid)
    assert json.loads(call(*G, "state", cid).stdout)["status"] == "paused"
    call(*G, "resume", cid)
    assert json.loads(call(*G, "state", cid).stdout)["status"] == "running"
    call(*G, "kill", "--all", cid, "9")
    deadline = time.monotonic() + 10
    while json.loads(call(*G, "state", cid).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    call(*G, "delete", cid)
    call(*G, "delete", "--force", cid)  # gone: still succeeds
    assert call(*G, "state", cid, check=False).returncode != 0
    lines = log_lines(log)
    assert lines[-1]["level"] == "error" and cid in lines[-1]["msg"], lines[-1]


def test_errors_in_json_log(rt, launcher, tmp_path):
    call = Caller(launcher, str(tmp_path))
    log = str(tmp_path / "log.json")
    G = ["--root", rt.root, "--log", log, "--log-format", "json"]
    p = call(*G, "start", "no-such-id", check=False)
    assert p.returncode == 1 and p.stderr.startswith("torpor: ")
    p = call(*G, "checkpoint", "--no-such-flag", "x", check=False)
    assert p.returncode == 2
    lines = log_lines(log)
    assert [x["level"] for x in lines] == ["error", "error"], lines
    assert "no-such-id" in lines[0]["msg"] and "--no-such-flag" in lines[1]["msg"]


def test_kill_signals_and_delete_force_of_gone_id(rt, bundle, launcher, tmp_path):
    call = Caller(launcher, str(tmp_path))
    G = ["--root", rt.root, "--log", str(tmp_path / "log.json"), "--log-format", "json"]
    call(*G, "delete", "--force", "never-existed")
    cid = rt.id()
    b = bundle(["sleep", "100"])
    call(*G, "create", "--bundle", b, "--pid-file", f"{b}/init.pid", cid)
    call(*G, "start", cid)
    pid = int(open(f"{b}/init.pid").read())
    rt.pids.add(pid)
    call(*G, "kill", cid, "10")  # USR1: sleep as PID 1 has no handler -> ignored
    assert json.loads(call(*G, "state", cid).stdout)["status"] == "running"
    call(*G, "kill", cid, "9")
    deadline = time.monotonic() + 10
    while json.loads(call(*G, "state", cid).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    call(*G, "delete", "--force", cid)
    call(*G, "delete", "--force", cid)


def test_console_socket_create(rt, bundle, launcher, tmp_path):
    call = Caller(launcher, str(tmp_path))
    G = ["--root", rt.root, "--log", str(tmp_path / "log.json"), "--log-format", "json"]
    sock = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock)
    srv.listen(1)
    cid = rt.id()
    b = bundle(["sh", "-c", "test -t 0 && echo on-a-tty; sleep 30"], terminal=True)
    try:
        call(*G, "create", "--bundle", b, "--pid-file", f"{b}/init.pid", "--console-socket",
             sock, cid)
        conn, _ = srv.accept()
        fd, name = recv_fd(conn)
        conn.close()
    finally:
        srv.close()
    try:
        rt.pids.add(int(open(f"{b}/init.pid").read()))
        assert name.startswith("/dev/pts/")
        assert os.readlink(f"/proc/self/fd/{fd}") == "/dev/ptmx"  # the master
        call(*G, "start", cid)
        out = b""
        deadline = time.monotonic() + 10
        while b"on-a-tty" not in out and time.monotonic() < deadline:
            out += os.read(fd, 4096)
        assert b"on-a-tty" in out
    finally:
        os.close(fd)


def _check_work_files(image: str, work: str) -> dict:
    assert os.path.isfile(os.path.join(image, "inventory.img"))
    with open(os.path.join(image, "inventory.img"), "rb") as f:
        data = f.read()
    assert int.from_bytes(data[:4], "little") == criu_files.INVENTORY_MAGIC
    with open(os.path.join(work, "dump.log")) as f:
        assert "Dumping finished successfully" in f.read()
    with open(os.path.join(work, "stats-dump"), "rb") as f:
        stats = criu_files.read_stats(f.read())["dump"]
    assert stats["pages_written"] > 0 and stats["frozen_time"] > 0, stats
    crit = shutil.which("crit")  # Debian's CRIU tool, when installed: its own decoder agrees
    if crit:
        p = run([crit, "decode", "-i", os.path.join(work, "stats-dump")], check=False)
        if p.returncode == 0:
            assert json.loads(p.stdout)["entries"][0]["dump"]["pages_written"] == \
                stats["pages_written"]
    return stats


def test_containerd_checkpoint_restore_argv(rt, bundle, launcher, tmp_path):
    """The shim: pause, checkpoint --image-path --work-path --file-locks, resume; then
    restore --image-path --work-path --detach --pid-file -no-subreaper --bundle into a new id."""
    call = Caller(launcher, str(tmp_path))
    cid, cid2 = rt.id(), rt.id()
    b = bundle(["sh", "-c", COUNT])
    G = ["--root", rt.root, "--log", f"{b}/log.json", "--log-format", "json"]
    create = call(*G, "create", "--bundle", b, "--pid-file", f"{b}/init.pid", cid)
    call(*G, "start", cid)
    rt.pids.add(int(open(f"{b}/init.pid").read()))
    wait_numbers(create.out_path, 3)
    image, work = str(tmp_path / "img"), str(tmp_path / "work")
    call(*G, "pause", cid)
    call(*G, "checkpoint", "--image-path", image, "--work-path", work, "--file-locks",
         "--tcp-established", cid)
    call(*G, "resume", cid, check=False)  # the shim tries; the container is stopped
    _check_work_files(image, work)
    n = len(wait_numbers(create.out_path, 1))
    call(*G, "delete", cid)

    b2 = bundle(["sh", "-c", COUNT])
    work2 = str(tmp_path / "work2")
    restored = call(*G, "restore", "--image-path", image, "--work-path", work2, "--detach",
                    "--pid-file", f"{b2}/init.pid", "-no-subreaper", "--bundle", b2, cid2)
    pid = int(open(f"{b2}/init.pid").read())
    rt.pids.add(pid)
    assert json.loads(call(*G, "state", cid2).stdout)["status"] == "running"
    with open(os.path.join(work2, "stats-restore"), "rb") as f:
        assert "restore" in criu_files.read_stats(f.read())
    with open(os.path.join(work2, "restore.log")) as f:
        assert "Restore finished successfully" in f.read()
    nums = wait_numbers(restored.out_path, 3)
    assert nums[0] == n, (n, nums)  # the counter goes on where it stopped, no gap
    assert fds_of(pid) == [0, 1, 2]


def test_podman_checkpoint_restore_argv(rt, bundle, launcher, tmp_path):
    """conmon/Podman: no global flags, a flag given twice, --tcp-established, --file-locks,
    work path = bundle; restore into the same id after delete --force."""
    call = Caller(launcher, str(tmp_path))
    cid = rt.id()
    b = bundle(["sh", "-c", COUNT])
    rud = tmp_path / "rud"
    rud.mkdir()
    env_root = ["--root", rt.root]  # (Podman passes --root too when configured; here: private)
    create = call(*env_root, "create", "--bundle", b, "--pid-file", f"{rud}/pidfile", cid)
    call(*env_root, "start", cid)
    rt.pids.add(int(open(f"{rud}/pidfile").read()))
    wait_numbers(create.out_path, 3)
    assert call("checkpoint", "--help").returncode == 0
    image = f"{b}/checkpoint"
    call(*env_root, "checkpoint", "--image-path", image, "--work-path", b, "--leave-running",
         "--leave-running", "--tcp-established", "--file-locks", cid)
    _check_work_files(image, b)
    assert json.loads(call(*env_root, "state", cid).stdout)["status"] == "running"
    call(*env_root, "kill", cid, "9")
    call(*env_root, "delete", "--force", cid)
    restored = call(*env_root, "restore", "--bundle", b, "--pid-file", f"{rud}/pidfile",
                    "--detach", "--image-path", image, "--work-path", b, "--tcp-established",
                    "--file-locks", cid)
    rt.pids.add(int(open(f"{rud}/pidfile").read()))
    assert json.loads(call(*env_root, "state", cid).stdout)["status"] == "running"
    wait_numbers(restored.out_path, 2)
    assert os.path.isfile(os.path.join(b, "stats-restore"))


def test_failed_checkpoint_is_in_dump_log_and_json_log(rt, launcher, tmp_path):
    call = Caller(launcher, str(tmp_path))
    log, work = str(tmp_path / "log.json"), str(tmp_path / "work")
    p = call("--root", rt.root, "--log", log, "--log-format", "json", "checkpoint",
             "--image-path", str(tmp_path / "img"), "--work-path", work, "missing", check=False)
    assert p.returncode == 1
    with open(os.path.join(work, "dump.log")) as f:
        assert "missing" in f.read()
    assert not os.path.exists(os.path.join(work, "stats-dump"))
    assert log_lines(log)[-1]["level"] == "error"


def test_restore_into_fresh_rootfs_with_created_mount_point(rt, bundle, rootfs, launcher,
                                                            tmp_path):
    """containerd restores into a new snapshot of the image: the mount point the runtime made
    in the first rootfs (/out) is not there yet; that is not a changed rootfs."""
    call = Caller(launcher, str(tmp_path))
    first, fresh = str(tmp_path / "rootfs1"), str(tmp_path / "rootfs2")
    shutil.copytree(rootfs, first, symlinks=True)
    shutil.copytree(rootfs, fresh, symlinks=True)
    out = tmp_path / "out"
    out.mkdir()

    def edit_for(root):
        def edit(s):
            s["root"] = {"path": root, "readonly": False}
            s["mounts"].append({"destination": "/out", "type": "bind", "source": str(out),
                                "options": ["rbind", "rw"]})
        return edit

    cid, cid2 = rt.id(), rt.id()
    b = bundle(["sh", "-c", COUNT], edit=edit_for(first))
    G = ["--root", rt.root, "--log", f"{b}/log.json", "--log-format", "json"]
    create = call(*G, "create", "--bundle", b, "--pid-file", f"{b}/init.pid", cid)
    call(*G, "start", cid)
    rt.pids.add(int(open(f"{b}/init.pid").read()))
    wait_numbers(create.out_path, 2)
    assert os.path.isdir(os.path.join(first, "out"))
    image = str(tmp_path / "img")
    call(*G, "checkpoint", "--image-path", image, "--work-path", str(tmp_path / "w"), cid)
    call(*G, "delete", cid)
    b2 = bundle(["sh", "-c", COUNT], edit=edit_for(fresh))
    call(*G, "restore", "--image-path", image, "--detach", "--pid-file", f"{b2}/init.pid",
         "-no-subreaper", "--bundle", b2, cid2)
    rt.pids.add(int(open(f"{b2}/init.pid").read()))
    assert json.loads(call(*G, "state", cid2).stdout)["status"] == "running"
    # a really changed rootfs is still refused
    cid3 = rt.id()
    call(*G, "checkpoint", "--image-path", str(tmp_path / "img2"), "--leave-running", cid2)
    with open(os.path.join(fresh, "bin", "new-tool"), "w") as f:
        f.write("x")
    b3 = bundle(["sh", "-c", COUNT], edit=edit_for(fresh))
    p = call(*G, "restore", "--image-path", str(tmp_path / "img2"), "--detach", "--pid-file",
             f"{b3}/init.pid", "--bundle", b3, cid3, check=False)
    assert p.returncode == 1 and "bin changed" in p.stderr, p.stderr


def test_podman_seccomp_leave_running_and_image_path_reused(rt, bundle, launcher, tmp_path):
    """Podman applies a seccomp profile, checkpoints --leave-running, and checkpoints again
    into the same <userdata>/checkpoint (also after a failed attempt left an INCOMPLETE
    image there): both work; a directory with other files is still refused."""
    from containers.test_seccomp import DENY

    call = Caller(launcher, str(tmp_path))
    cid = rt.id()
    b = bundle(["sh", "-c", COUNT], edit=lambda s: s["linux"].__setitem__("seccomp", DENY))
    R = ["--root", rt.root]
    create = call(*R, "create", "--bundle", b, "--pid-file", f"{b}/pidfile", cid)
    call(*R, "start", cid)
    rt.pids.add(int(open(f"{b}/pidfile").read()))
    wait_numbers(create.out_path, 3)
    image = f"{b}/checkpoint"
    for _ in range(2):
        call(*R, "checkpoint", "--image-path", image, "--work-path", b, "--leave-running",
             "--leave-running", cid)
        _check_work_files(image, b)
        assert json.loads(call(*R, "state", cid).stdout)["status"] == "running"
    with open(os.path.join(image, "INCOMPLETE"), "w") as f:  # as an aborted checkpoint
        f.write("x")
    os.unlink(os.path.join(image, "manifest.json"))
    call(*R, "checkpoint", "--image-path", image, "--work-path", b, cid)  # stops it
    assert not os.path.exists(os.path.join(image, "INCOMPLETE"))
    assert not [n for n in os.listdir(b) if n.startswith(".torpor-new-")]
    restored = call(*R, "restore", "--bundle", b, "--pid-file", f"{b}/pidfile", "--detach",
                    "--image-path", image, "--work-path", b, cid)
    pid = int(open(f"{b}/pidfile").read())
    rt.pids.add(pid)
    wait_numbers(restored.out_path, 2)
    with open(f"/proc/{pid}/status") as f:
        assert "Seccomp:\t2" in f.read()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    p = call(*R, "checkpoint", "--image-path", str(other), "--leave-running", cid, check=False)
    assert p.returncode == 1 and "not empty" in p.stderr
    assert (other / "notes.txt").read_text() == "mine"


def test_exec_console_socket_pty_of_the_container(rt, bundle, launcher, tmp_path):
    """exec --process F (terminal: true) --console-socket S --detach: as with runc, the pty is
    one of the container's own /dev/pts, so ttyname() works inside (`docker exec -t c tty`)."""
    call = Caller(launcher, str(tmp_path))
    G = ["--root", rt.root, "--log", str(tmp_path / "log.json"), "--log-format", "json"]
    cid = rt.id()
    b = bundle(["sleep", "100"])
    call(*G, "create", "--bundle", b, "--pid-file", f"{b}/init.pid", cid)
    call(*G, "start", cid)
    rt.pids.add(int(open(f"{b}/init.pid").read()))
    proc = tmp_path / "process.json"
    proc.write_text(json.dumps({"args": ["sh", "-c", "tty; ls /dev/pts; sleep 1"], "cwd": "/",
                                "terminal": True, "env": ["PATH=/bin"],
                                "user": {"uid": 0, "gid": 0}}))
    sock = str(tmp_path / "exec.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock)
    srv.listen(1)
    try:
        call(*G, "exec", "--process", str(proc), "--console-socket", sock, "--detach",
             "--pid-file", str(tmp_path / "exec.pid"), cid)
        conn, _ = srv.accept()
        fd, name = recv_fd(conn)
        conn.close()
    finally:
        srv.close()
    rt.pids.add(int(open(tmp_path / "exec.pid").read()))
    out = b""
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and out.count(b"\n") < 2:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    finally:
        os.close(fd)
    lines = out.decode().split()
    assert lines[0] == name and name.startswith("/dev/pts/"), (name, out)
    assert name.rsplit("/", 1)[1] in lines[1:], out

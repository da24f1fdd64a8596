"""Checkpoint/restore of whole process trees (issue 4): shells with their children, pipelines
with data in flight, shared memory and pipes between workers, daemons and groups whose leader
has exited, zombies, shared open file descriptions, --leave-running, and a 50-process tree.

Every process a test starts or restores is tracked by PID and start time and SIGKILLed at the
end; pytest is a child subreaper here (conftest.py) so killed and restored trees are reaped by
us and their PIDs are free again at once.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import PYTHON, assert_consecutive, checkpoint, proc_stat, torpor, wait_until
from treeutil import (
    Tracker,
    assert_all_back,
    assert_running_untraced,
    assert_tree_like,
    checkpoint_tree,
    image_tree,
    image_view,
    kcmp_file,
    pipe_bytes_in_flight,
    read_ints,
    reap_all,
    restore_tree,
    tree_view,
    wait_pids_free,
)

SEED = "i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done"


@pytest.fixture
def tracker(tmp_path: Path) -> Iterator[Tracker]:
    t = Tracker(tmp_path)
    try:
        yield t
    finally:
        t.kill_all()
        reap_all()


def wait_ints(path: Path, n: int, timeout: float = 10.0) -> list[int]:
    wait_until(lambda: len(read_ints(path)) >= n, timeout, f"{n} lines in {path}")
    return read_ints(path)


def wait_more(path: Path, extra: int = 2, timeout: float = 10.0) -> list[int]:
    """Wait until PATH grows by EXTRA complete lines (progress after a restore)."""
    have = len(read_ints(path))
    return wait_ints(path, have + extra, timeout)


def py_script(tmp: Path, name: str, body: str) -> Path:
    p = tmp / name
    p.write_text(textwrap.dedent(body))
    return p


# ------------------------------------------------------------------ 1. the seed workload


@pytest.mark.timeout(90)
@pytest.mark.parametrize("shell", [["/bin/busybox", "sh"], ["/bin/dash"]], ids=["busybox", "dash"])
def test_seed_shell_loop_generations(tracker: Tracker, tmp_path: Path, shell: list[str]) -> None:
    out = tmp_path / "seed.out"
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    print(f"\nseed workload with {shell[0]}: random seed {seed}", end="")
    p = tracker.start([*shell, "-c", SEED], out=out.name, cwd=tmp_path)
    root = p.pid
    wait_ints(out, 1)
    comms_seen: list[str] = []
    for gen in range(5):
        time.sleep(rnd.uniform(0.2, 1.5))
        before = tree_view(root)
        image = tmp_path / f"img{gen}"
        view = checkpoint_tree(tracker, root, image)
        if gen == 0:
            p.wait(timeout=5)  # our Popen child: let subprocess know it is gone
        comms_seen += [f"{q['comm']}" for q in image_tree(image) if q["pid"] != root]
        assert_tree_like(before, view, root, f"gen {gen}: image vs before")
        lines = read_ints(out)
        time.sleep(0.05)
        assert read_ints(out) == lines, "output after the checkpoint killed the tree"
        after = restore_tree(tracker, image, root)
        assert_tree_like(view, after, root, f"gen {gen}: after restore vs image")
        wait_more(out, 1, timeout=5)
    vals = wait_more(out, 1)
    assert_consecutive(vals, start=0, what=f"{shell[0]} counter")
    print(f"; children in images: {comms_seen}; counter reached {vals[-1]}")


# ------------------------------------------------------------------ 2. a pipeline

PRODUCER = """\
import os, time
i = 0
while True:
    os.write(1, b"%d\\n" % i)
    i += 1
    time.sleep(0.002)
"""

CONSUMER = """\
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
buf = b""
while True:
    d = os.read(0, 32)  # small reads: the backlog stays in the pipe, not in our buffer
    if not d:
        break
    buf += d
    while b"\\n" in buf:
        line, buf = buf.split(b"\\n", 1)
        os.write(fd, line + b"\\n")
        time.sleep(0.01)
"""


@pytest.mark.timeout(90)
def test_pipeline_with_data_in_pipes(tracker: Tracker, tmp_path: Path) -> None:
    prod = py_script(tmp_path, "producer.py", PRODUCER)
    cons = py_script(tmp_path, "consumer.py", CONSUMER)
    out = tmp_path / "consumed"
    cmd = f"{PYTHON} {prod} | cat | {PYTHON} {cons} {out}"
    p = tracker.start(["/bin/dash", "-c", cmd], out="sh.log", cwd=tmp_path)
    root = p.pid
    wait_ints(out, 20)
    for gen in range(3):
        time.sleep(random.uniform(0.5, 1.2))
        image = tmp_path / f"img{gen}"
        view = checkpoint_tree(tracker, root, image)
        comms = sorted(q["comm"] for q in image_tree(image))
        assert len(view) == 4, f"expected sh + 3 pipeline processes in the image, got {comms}"
        inflight = pipe_bytes_in_flight(image)
        assert inflight > 0, "no data in the pipes at checkpoint (the test would prove nothing)"
        n = len(read_ints(out))
        after = restore_tree(tracker, image, root)
        assert_all_back(view, after, root)
        print(f"\npipeline gen {gen}: {inflight} bytes in pipes, {n} lines consumed")
        wait_ints(out, n + 20)
    vals = read_ints(out)
    assert_consecutive(vals, start=0, what="consumed lines")


# ------------------------------------------------------------------ 3. shared memory and a pipe

WORKERS = """\
import mmap, os, struct, sys, time
N = 3
log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
shm = mmap.mmap(-1, 4096)  # MAP_SHARED | MAP_ANONYMOUS
r, w = os.pipe()           # carries one token: whoever holds it may increment
for k in range(N):
    if os.fork() == 0:
        while True:
            assert os.read(r, 1) == b"t"
            v = struct.unpack_from("Q", shm, 0)[0] + 1
            struct.pack_into("Q", shm, 0, v)
            mine = struct.unpack_from("Q", shm, 8 * (k + 1))[0] + 1
            struct.pack_into("Q", shm, 8 * (k + 1), mine)
            os.write(log, b"%d w%d\\n" % (v, k))
            os.write(w, b"t")
            time.sleep(0.02)
os.write(w, b"t")
rep = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
while True:
    time.sleep(0.1)
    os.write(rep, b"%d\\n" % struct.unpack_from("Q", shm, 0)[0])
"""


@pytest.mark.timeout(90)
def test_workers_share_memory_and_pipe(tracker: Tracker, tmp_path: Path) -> None:
    prog = py_script(tmp_path, "workers.py", WORKERS)
    log, rep = tmp_path / "workers.log", tmp_path / "parent.log"
    p = tracker.start([PYTHON, prog, log, rep], out="py.log", cwd=tmp_path)
    root = p.pid

    def counters() -> list[int]:
        return [int(ln.split()[0]) for ln in Path(log).read_text().splitlines()] if log.exists() else []

    wait_until(lambda: len(counters()) >= 10, 10, "workers' progress")
    for gen in range(3):
        time.sleep(random.uniform(0.3, 1.0))
        image = tmp_path / f"img{gen}"
        view = checkpoint_tree(tracker, root, image)
        assert len(view) == 4, f"expected parent + 3 workers: {view}"
        n, nrep = len(counters()), len(read_ints(rep))
        after = restore_tree(tracker, image, root)
        assert_all_back(view, after, root)
        wait_until(lambda n=n: len(counters()) >= n + 15, 10, "workers' progress after restore")
        wait_until(lambda nrep=nrep: len(read_ints(rep)) >= nrep + 2, 10, "parent's reports after restore")
    c = counters()
    # one counter in shared memory, incremented under one token: 1, 2, 3, ... over all workers
    assert_consecutive(c, start=1, what="shared counter")
    workers = {ln.split()[1] for ln in Path(log).read_text().splitlines()[-30:]}
    assert len(workers) == 3, f"not all workers progress after restore: {workers}"
    # the parent sees the workers' writes (a shared page, not a private copy)
    wait_until(lambda: read_ints(rep)[-1] >= c[-1], 5,
               f"the parent to see the workers' counter {c[-1]} (it reports {read_ints(rep)[-3:]})")
    # the parent's reports never go backwards
    r = read_ints(rep)
    assert r == sorted(r), "the parent's view of the shared counter went backwards"


# ------------------------------------------------------------------ 4. daemons and orphaned groups

DAEMON = """\
import os, sys, time
out, mode = sys.argv[1], sys.argv[2]
if os.fork() == 0:
    os.setsid()
    if mode == "group-exits":
        if os.fork():  # the session leader: waits for the group leader, then exits
            os.wait()
            os._exit(0)
        os.setpgid(0, 0)  # a group of its own in the session; it exits once the daemon runs
    if os.fork() == 0:  # the daemon
        os.chdir("/")
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        i = 0
        while True:
            os.write(fd, b"%d\\n" % i)
            i += 1
            time.sleep(0.05)
    if mode in ("leader-exits", "group-exits"):
        os._exit(0)
    while True:  # the session leader stays (a supervisor)
        time.sleep(1)
if mode in ("leader-exits", "group-exits"):
    os.wait()
# the launcher exits: the leader (or the daemon) is re-parented to pytest, the subreaper
"""


def _daemon(tracker: Tracker, tmp_path: Path, mode: str) -> tuple[int, int, Path]:
    """Start the daemon; return (session leader or 0, daemon, its output file)."""
    prog = py_script(tmp_path, "daemon.py", DAEMON)
    out = tmp_path / "daemon.out"
    p = tracker.start([PYTHON, prog, out, mode], out="launcher.log", cwd=tmp_path)
    p.wait(timeout=10)
    wait_ints(out, 3)
    mine = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if str(prog).encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                    mine.append(int(name))
            except OSError:
                pass
    tracker.add(mine)
    assert len(mine) == (2 if mode == "leader-stays" else 1), f"daemon processes: {mine}"
    if mode != "leader-stays":
        return 0, mine[0], out
    leader, daemon = sorted(mine, key=lambda q: int(proc_stat(q)[3]) == os.getpid(), reverse=True)
    return leader, daemon, out


@pytest.mark.timeout(60)
def test_daemon_by_session_leader(tracker: Tracker, tmp_path: Path) -> None:
    leader, daemon, out = _daemon(tracker, tmp_path, "leader-stays")
    assert int(proc_stat(daemon)[3]) == leader and int(proc_stat(daemon)[5]) == leader
    view = checkpoint_tree(tracker, leader, tmp_path / "img")
    assert set(view) == {leader, daemon}, view
    assert view[daemon] == (leader, leader, leader), view
    n = len(read_ints(out))
    after = restore_tree(tracker, tmp_path / "img", leader)
    assert_all_back(view, after, leader)
    assert after[leader][1:3] == (leader, leader), f"session leader lost its session: {after}"
    wait_ints(out, n + 5)
    assert_consecutive(read_ints(out), start=0, what="daemon counter")


@pytest.mark.timeout(60)
def test_daemon_whose_session_leader_exited(tracker: Tracker, tmp_path: Path) -> None:
    _, daemon, out = _daemon(tracker, tmp_path, "leader-exits")
    st = proc_stat(daemon)
    ppid, pgid, sid = int(st[3]), int(st[4]), int(st[5])
    assert ppid == os.getpid() and pgid == sid and sid != daemon and not os.path.exists(f"/proc/{sid}")
    view = checkpoint_tree(tracker, daemon, tmp_path / "img")
    assert view[daemon][1:] == (sid, sid), view
    n = len(read_ints(out))
    after = restore_tree(tracker, tmp_path / "img", daemon)
    assert after[daemon][1:3] == (sid, sid), f"daemon restored with pgid/sid {after[daemon][1:3]}, was {sid}"
    assert not os.path.exists(f"/proc/{sid}"), "the exited session leader's pid is taken after restore"
    wait_ints(out, n + 5)
    assert_consecutive(read_ints(out), start=0, what="daemon counter")


@pytest.mark.timeout(90)
def test_daemon_whose_session_and_group_leaders_exited(tracker: Tracker, tmp_path: Path) -> None:
    """Session leader and group leader both gone (pgid != sid): restore recreates both as
    short-lived stand-ins. It used to hang: the process waiting for the group helper still
    held the pipes the restorer reads to EOF."""
    _, daemon, out = _daemon(tracker, tmp_path, "group-exits")
    st = proc_stat(daemon)
    ppid, pgid, sid = int(st[3]), int(st[4]), int(st[5])
    assert ppid == os.getpid() and len({pgid, sid, daemon}) == 3
    assert not os.path.exists(f"/proc/{sid}") and not os.path.exists(f"/proc/{pgid}")
    view = checkpoint_tree(tracker, daemon, tmp_path / "img")
    assert view[daemon][1:] == (pgid, sid), view
    n = len(read_ints(out))
    after = restore_tree(tracker, tmp_path / "img", daemon)
    assert after[daemon][1:3] == (pgid, sid), f"daemon restored with pgid/sid {after[daemon][1:3]}"
    wait_ints(out, n + 5)
    assert_consecutive(read_ints(out), start=0, what="daemon counter")


ORPHAN_GROUP = """\
import os, signal, sys, time
leader = os.fork()
if leader == 0:
    os.setpgid(0, 0)
    while True:
        time.sleep(1)
os.setpgid(leader, leader)
members = []
for k in range(2):
    c = os.fork()
    if c == 0:
        os.setpgid(0, leader)
        fd = os.open(sys.argv[1] + str(k), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        i = 0
        while True:
            os.write(fd, b"%d\\n" % i)
            i += 1
            time.sleep(0.05)
    try:
        os.setpgid(c, leader)
    except PermissionError:  # EACCES: the child already ran setpgid (and exec'd nothing)
        pass
    members.append(c)
os.kill(leader, signal.SIGKILL)
os.waitpid(leader, 0)
with open(sys.argv[1] + "ready", "w") as f:
    f.write("%d %s\\n" % (leader, " ".join(map(str, members))))
while True:
    time.sleep(1)
"""


@pytest.mark.timeout(60)
def test_group_whose_leader_exited(tracker: Tracker, tmp_path: Path) -> None:
    prog = py_script(tmp_path, "group.py", ORPHAN_GROUP)
    base = tmp_path / "member"
    p = tracker.start([PYTHON, prog, base], out="group.log", cwd=tmp_path)
    root = p.pid
    ready = Path(str(base) + "ready")
    wait_until(lambda: ready.exists() and ready.read_text().endswith("\n"), 10, "group set up")
    leader, *members = map(int, ready.read_text().split())
    tracker.add(members)
    wait_pids_free([leader], 5)
    for m in members:
        assert int(proc_stat(m)[4]) == leader, "member not in the leader's group"
    for gen in range(2):
        image = tmp_path / f"img{gen}"
        view = checkpoint_tree(tracker, root, image)
        assert set(view) == {root, *members}, view
        assert all(view[m] == (root, leader, root) for m in members), view
        ns = [len(read_ints(Path(f"{base}{k}"))) for k in range(2)]
        after = restore_tree(tracker, image, root)
        assert_all_back(view, after, root)
        assert after[root][1:3] == (root, root), f"root's group/session: {after[root]}"
        assert not os.path.exists(f"/proc/{leader}"), f"group leader pid {leader} exists after restore"
        for k in range(2):
            wait_ints(Path(f"{base}{k}"), ns[k] + 3)
    for k in range(2):
        assert_consecutive(read_ints(Path(f"{base}{k}")), start=0, what=f"member {k}")


# ------------------------------------------------------------------ 5. zombies

ZOMBIES = """\
import os, signal, sys, time
out, how = sys.argv[1], sys.argv[2]
a = os.fork()
if a == 0:
    if how == "signal":
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
    os._exit(7)
c = os.fork()
if c == 0:
    while True:
        time.sleep(1)

def reap(signum, frame):
    got, st = os.waitpid(a, 0)
    with open(out, "a") as f:
        f.write("%d %d %d\\n" % (got, os.WIFEXITED(st) and os.WEXITSTATUS(st),
                                  os.WIFSIGNALED(st) and os.WTERMSIG(st)))

signal.signal(signal.SIGUSR1, reap)
with open(out + ".pids", "w") as f:
    f.write("%d %d\\n" % (a, c))
while True:
    time.sleep(0.1)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["exit", "signal"])
def test_zombie_keeps_pid_and_status(tracker: Tracker, tmp_path: Path, how: str) -> None:
    """A child that exited 7 (or was killed by SIGTERM) and was not reaped, next to a live
    child: restored as a zombie with its PID; the parent reaps it later and gets the status."""
    prog = py_script(tmp_path, "zombies.py", ZOMBIES)
    out = tmp_path / "reaped"
    pids_file = Path(str(out) + ".pids")
    p = tracker.start([PYTHON, prog, out, how], out="zombies.log", cwd=tmp_path)
    root = p.pid
    wait_until(lambda: pids_file.exists() and pids_file.read_text().endswith("\n"), 10, "children")
    z, c = map(int, pids_file.read_text().split())
    tracker.add([z, c])
    wait_until(lambda: (st := proc_stat(z)) and st[2] == "Z", 10, "the zombie")
    image = tmp_path / "img"
    view = checkpoint_tree(tracker, root, image)
    procs = {q["pid"]: q for q in image_tree(image)}
    want = 7 << 8 if how == "exit" else int(signal.SIGTERM)
    assert procs[z].get("zombie") and not procs[c].get("zombie"), f"image: {procs.keys()}"
    assert procs[z].get("exit_status") == want, f"saved status {procs[z].get('exit_status')}"
    after = restore_tree(tracker, image, root)
    assert_all_back(view, after, root)
    assert after[z][3] == "Z", f"the zombie is not restored as a zombie: {after}"
    assert after[c][3] != "Z", f"the live child is a zombie: {after}"
    time.sleep(0.2)
    assert not out.exists(), "the parent reaped before being asked to"
    os.kill(root, signal.SIGUSR1)
    wait_until(lambda: out.exists() and out.read_text().endswith("\n"), 10, "the parent to reap")
    expect = f"{z} 7 0" if how == "exit" else f"{z} 0 {int(signal.SIGTERM)}"
    assert out.read_text().split("\n")[0] == expect
    wait_pids_free([z], 5)
    assert proc_stat(c) is not None and proc_stat(c)[2] != "Z", "live child gone"


# ------------------------------------------------------------------ 6. shared open file description

SHARED_FILE = """\
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # no O_APPEND
r1, w1 = os.pipe()
r2, w2 = os.pipe()
pid = os.fork()
me, rd, wr = ("C", r1, w2) if pid == 0 else ("P", r2, w1)
if pid != 0:
    os.write(w2, b"x")  # the parent goes first
private = os.open(sys.argv[1] + "." + me, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
i = 0
while True:
    os.read(rd, 1)
    os.write(fd, b"%s %06d\\n" % (me.encode(), i))
    os.write(private, b"%d\\n" % i)
    i += 1
    time.sleep(0.01)
    os.write(wr, b"x")
"""


@pytest.mark.timeout(60)
def test_shared_file_offset_after_fork(tracker: Tracker, tmp_path: Path) -> None:
    prog = py_script(tmp_path, "shared.py", SHARED_FILE)
    out = tmp_path / "shared.out"
    p = tracker.start([PYTHON, prog, out], out="shared.log", cwd=tmp_path)
    root = p.pid
    wait_until(lambda: out.exists() and out.stat().st_size > 200, 10, "writes")
    kids = [q for q in tree_view(root) if q != root]
    assert len(kids) == 1
    child = kids[0]
    fd_of = {}
    for pid in (root, child):
        for name in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{name}") == str(out):
                fd_of[pid] = int(name)
    assert kcmp_file(root, fd_of[root], child, fd_of[child]) == 0
    for gen in range(2):
        time.sleep(random.uniform(0.2, 0.8))
        image = tmp_path / f"img{gen}"
        view = checkpoint_tree(tracker, root, image)
        size = out.stat().st_size
        after = restore_tree(tracker, image, root)
        assert_all_back(view, after, root)
        assert kcmp_file(root, fd_of[root], child, fd_of[child]) == 0, "offset no longer shared"
        # the private files: each process's own description, not shared with the other
        priv = {}
        for pid in (root, child):
            for name in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{name}").startswith(str(out) + "."):
                    priv[pid] = int(name)
        assert kcmp_file(root, priv[root], child, priv[child]) != 0, "private descriptions merged"
        wait_until(lambda size=size: out.stat().st_size >= size + 200, 10, "writes after restore")
    data = out.read_bytes()
    lines = data.decode(errors="replace").split("\n")[:-1]
    bad = [ln for ln in lines if len(ln) != 8 or ln[0] not in "PC"]
    assert not bad, f"overwritten or torn lines (offset not shared): {bad[:5]}"
    assert len(data) == 9 * len(lines) + (len(data) % 9), "holes in the file"
    for who in "CP":
        assert_consecutive([int(ln[2:]) for ln in lines if ln[0] == who], start=0, what=who)
    # strict turns: P C P C ...
    assert [ln[0] for ln in lines] == ["P", "C"] * (len(lines) // 2) + ["P"] * (len(lines) % 2)


# ------------------------------------------------------------------ 7. --leave-running on a tree


@pytest.mark.timeout(60)
def test_leave_running_tree_then_restore(tracker: Tracker, tmp_path: Path) -> None:
    out = tmp_path / "seed.out"
    # no O_APPEND: the restored shell writes at its saved offset, over the same numbers
    p = tracker.start(["/bin/dash", "-c", SEED], out=out.name, append=False, cwd=tmp_path)
    root = p.pid
    wait_ints(out, 2)
    time.sleep(random.uniform(0.2, 1.0))
    image = tmp_path / "img"
    st_before = {q: proc_stat(q)[21] for q in tree_view(root)}
    view = checkpoint_tree(tracker, root, image, "--leave-running")
    now = tree_view(root)
    for q in set(view) & set(now):
        assert proc_stat(q)[21] == st_before.get(q, proc_stat(q)[21]), f"pid {q} is a new process"
    assert_tree_like(view, now, root, "left running")
    assert_running_untraced([root])
    n = len(read_ints(out))
    wait_ints(out, n + 2)
    assert_running_untraced([root])
    assert_consecutive(read_ints(out), start=0, what="left running")
    # now kill the whole session and restore the image
    os.killpg(root, signal.SIGKILL)
    p.wait(timeout=5)
    wait_pids_free(tree_view(root) | view, 10)
    after = restore_tree(tracker, image, root)
    assert_tree_like(view, after, root, "after restore")
    m = len(read_ints(out))
    wait_ints(out, m + 1)
    assert_consecutive(read_ints(out), start=0, what="after restore from a left-running image")


# ------------------------------------------------------------------ 8. scale: 50 processes


@pytest.mark.timeout(90)
def test_fifty_processes(tracker: Tracker, tmp_path: Path) -> None:
    p = tracker.start(["/bin/dash", "-c", "for i in $(seq 49); do sleep 1000 & done; wait"],
                      out="fifty.log", cwd=tmp_path)
    root = p.pid
    wait_until(lambda: len(tree_view(root)) == 50, 20, "50 processes")
    before = tree_view(root)
    image = tmp_path / "img"
    tracker.add(before)
    t0 = time.monotonic()
    checkpoint(root, image)
    t_ckpt = time.monotonic() - t0
    view = image_view(image)
    assert set(view) == set(before), "the image does not hold the 50 processes"
    assert_tree_like(before, view, root, "image")
    wait_pids_free(view, 10)
    t0 = time.monotonic()
    try:
        res = torpor("restore", "--image-path", image, timeout=30)
    finally:
        t_rest = time.monotonic() - t0
        tracker.add(q for q in view if os.path.exists(f"/proc/{q}"))
    assert res.stdout.split()[-1] == str(root), res.stdout
    after = tree_view(root, with_state=True)
    assert set(after) == set(before), f"missing {sorted(set(before) - set(after))}"
    assert_all_back(view, after, root)
    assert_running_untraced(after)
    sys.stdout.write(f"\n50 processes: `torpor checkpoint` {t_ckpt:.3f} s, "
                     f"`torpor restore` {t_rest:.3f} s (wall, CLI start included)\n")

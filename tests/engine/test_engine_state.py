"""The `state` workload sets a broad set of process attributes and reports them (and checksums
of every kind of memory) about every 100 ms; the last report before a checkpoint must equal the
reports after the restore. One test per attribute group (so a failure names the feature) and
one with everything at once.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
from pathlib import Path

import pytest
from engutil import (
    GROUPS,
    checkpoint_kill,
    cycle,
    reports,
    restore_same,
    sanity,
    stable,
    wait_reports,
)
from helpers import (
    REPO,
    assert_clean_error,
    assert_consecutive,
    assert_same_process_view,
    read_lines,
    snapshot,
    torpor,
    wait_for_lines,
    wait_gone,
    wait_until,
)

pytestmark = pytest.mark.timeout(45)

PAGE = 4096


def file_digest(path: Path, skip: tuple[int, ...] = ()) -> str:
    data = bytearray(path.read_bytes())
    for off in skip:  # words the program rewrites in every report
        data[off : off + 8] = b"\0" * 8
    return hashlib.sha256(data).hexdigest()


def run_state(compile_c, procs, tmp_path: Path, groups: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "out"
    p = procs.start([compile_c("state"), out, work, groups])
    wait_reports(out, 2)
    sel = set(GROUPS) if groups == "all" else set(groups.split(","))

    before = snapshot(p.pid)
    digests = {}
    if "fileprivate" in sel:
        digests["private.dat"] = file_digest(work / "private.dat")
    if "fileshared" in sel:
        digests["shared.dat"] = file_digest(work / "shared.dat", skip=(4 * PAGE + 64,))
    delafter_ranges = [ln.split()[0] for ln in before["maps"] if "delafter.dat" in ln]

    def between() -> None:
        if "delafter" in sel:
            (work / "delafter.dat").unlink()

    cycle(procs, p.pid, tmp_path / "img", out, between=between)
    last = reports(out)[-1]
    sanity(last)
    after_reps = wait_reports(out, int(last["seq"]) + 2)
    first_after = after_reps[int(last["seq"])]
    assert int(first_after["seq"]) == int(last["seq"]) + 1, "report numbers are not consecutive"
    b, a = stable(last), stable(first_after)
    diff = {k: (b.get(k), a.get(k)) for k in sorted(set(b) | set(a)) if b.get(k) != a.get(k)}
    assert not diff, f"report differs after restore (key: (before, after)): {diff}"
    sanity(first_after)

    after = snapshot(p.pid)
    if delafter_ranges:  # the file is gone now; the mapping's name may say so
        for snap in (before, after):
            snap["maps"] = [ln for ln in snap["maps"] if ln.split()[0] not in delafter_ranges]
    assert_same_process_view(before, after)
    if "fileprivate" in sel:
        assert file_digest(work / "private.dat") == digests["private.dat"], (
            "private.dat changed: copy-on-write pages were written to the file"
        )
    if "fileshared" in sel:
        assert file_digest(work / "shared.dat", skip=(4 * PAGE + 64,)) == digests["shared.dat"]

    if "itimer" in sel:
        n0 = int(first_after["var.alarms"])
        wait_until(lambda: int(reports(out)[-1]["var.alarms"]) >= n0 + 10, 5,
                   "ITIMER_REAL to keep firing")  # fmt: skip
        assert int(first_after["var.alarms"]) >= int(last["var.alarms"])
    if sel & {"sig", "altstack"}:
        os.kill(p.pid, signal.SIGUSR1)
        lines = wait_for_lines(out, 1, timeout=5, match="^drain done$")
        drained = [ln for ln in lines if ln.startswith("drained ")]
        if "sig" in sel:
            got = [tuple(int(x) for x in re.findall(r"=(-?\d+)", ln)) for ln in drained]
            want = [(46, 333, -1, p.pid, 0), (12, 0x1234, -1, p.pid, 0),
                    (45, 111, -1, p.pid, 0), (45, 222, -1, p.pid, 0)]  # fmt: skip
            assert got == want, "pending signals (sig, value, code, pid, uid) differ"
        if "altstack" in sel:
            assert "usr1 altstack=1" in lines, "SIGUSR1 handler did not run on the sigaltstack"


# A file mapped at checkpoint time and deleted before the restore is "a missing file the image
# needs" (files deleted *before* the checkpoint have their content saved: group delbefore).
RESTORABLE = [g for g in GROUPS if g != "delafter"]


@pytest.mark.parametrize("group", RESTORABLE)
def test_state_group(compile_c, procs, tmp_path: Path, group: str) -> None:
    run_state(compile_c, procs, tmp_path, group)


def test_state_all(compile_c, procs, tmp_path: Path) -> None:
    run_state(compile_c, procs, tmp_path, ",".join(RESTORABLE))


def test_mapped_file_deleted_after_checkpoint_is_refused(compile_c, procs, tmp_path: Path) -> None:
    """The restore names the missing file in one line, exits non-zero, leaves nothing behind;
    with the file back in place the same image restores."""
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "out"
    p = procs.start([compile_c("state"), out, work, "delafter"])
    wait_reports(out, 2)
    checkpoint_kill(procs, p.pid, tmp_path / "img", out)
    saved = (work / "delafter.dat").read_bytes()
    (work / "delafter.dat").unlink()
    res = torpor("restore", "--image-path", tmp_path / "img", check=False)
    assert_clean_error(res, "restore without a mapped file")
    assert "delafter.dat" in res.stderr
    assert not os.path.exists(f"/proc/{p.pid}"), "a failed restore left a process behind"
    (work / "delafter.dat").write_bytes(saved)
    restore_same(procs, tmp_path / "img", p.pid)
    n = int(reports(out)[-1]["seq"])
    wait_reports(out, n + 2)


def test_fd_file_deleted_since_checkpoint(compile_c, procs, tmp_path: Path) -> None:
    """The file behind an open fd is deleted between checkpoint and restore: the restore may
    refuse (one clear line, nothing left behind) or bring the fd back with its content and
    position; anything in between is a bug."""
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "out"
    p = procs.start([compile_c("state"), out, work, "fds"])
    wait_reports(out, 2)
    checkpoint_kill(procs, p.pid, tmp_path / "img", out)
    last = reports(out)[-1]
    (work / "rw.dat").unlink()
    res = torpor("restore", "--image-path", tmp_path / "img", check=False)
    if res.returncode != 0:
        assert_clean_error(res, "restore with a missing file")
        wait_gone(p.pid, timeout=3)
        return
    procs.adopt(p.pid)
    reps = wait_reports(out, int(last["seq"]) + 1)
    after = reps[int(last["seq"])]
    assert after["fd.100"].split("|")[1:] == last["fd.100"].split("|")[1:]
    assert after["rw.pread"] == "1"


def test_hard_limit_above_the_restorers_is_capped_with_a_warning(compile_c, procs, tmp_path: Path) -> None:
    """Without CAP_SYS_RESOURCE no task may raise a hard limit: restored under a restorer
    whose RLIMIT_NOFILE hard limit is lower than the saved one, the process gets the
    restorer's, with a warning, and the rest of its limits as saved."""
    import resource
    import subprocess
    import sys

    out = tmp_path / "out"
    p = procs.start([compile_c("counter"), out])
    wait_for_lines(out, 3)
    saved_hard = resource.prlimit(p.pid, resource.RLIMIT_NOFILE)[1]
    lower = 1024
    assert saved_hard > lower
    n = len(checkpoint_kill(procs, p.pid, tmp_path / "img", out))

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (lower, lower))

    res = subprocess.run([sys.executable, "-m", "torpor", "restore", "--image-path", tmp_path / "img"],
                         capture_output=True, text=True, timeout=40, preexec_fn=lower_limit,
                         stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO)
    assert res.returncode == 0, res.stderr
    pid = int(res.stdout.split()[-1])
    procs.adopt(pid)
    assert f"rlimit 7: hard limit {saved_hard} capped at {lower}" in res.stderr
    assert resource.prlimit(pid, resource.RLIMIT_NOFILE) == (lower, lower)
    wait_for_lines(out, n + 3)
    assert_consecutive([int(x) for x in read_lines(out)])


HIGH_FD_PROGRAM = """
import os, sys, time
os.dup2(os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), 3000)  # > 1024
i = 0
while True:
    os.write(3000, f"{i}\\n".encode())
    i += 1
    time.sleep(0.02)
"""


def test_fd_above_the_restorers_soft_limit(procs, tmp_path: Path) -> None:
    """A process whose fd numbers exceed the restorer's soft RLIMIT_NOFILE: the root task
    raises its own soft limit (within the hard one) before it arranges the fds, and the
    restored program writes on through fd 3000."""
    import resource
    import subprocess
    import sys

    out = tmp_path / "out"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard >= 8192

    def limits(soft: int):
        return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    p = subprocess.Popen([sys.executable, "-c", HIGH_FD_PROGRAM, out], preexec_fn=limits(4096),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.adopt(p.pid)
    wait_for_lines(out, 3)
    n = len(checkpoint_kill(procs, p.pid, tmp_path / "img", out))
    res = subprocess.run([sys.executable, "-m", "torpor", "restore", "--image-path", tmp_path / "img"],
                         capture_output=True, text=True, timeout=40, preexec_fn=limits(1024),
                         stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO)
    assert res.returncode == 0, res.stderr
    pid = int(res.stdout.split()[-1])
    procs.adopt(pid)
    assert resource.prlimit(pid, resource.RLIMIT_NOFILE) == (4096, hard)  # its own, as saved
    wait_for_lines(out, n + 3)
    assert_consecutive([int(x) for x in read_lines(out)], start=0)

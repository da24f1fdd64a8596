"""Checkpoint/restore of the kernel objects of issue 6 held by real programs: FIFOs between
two processes with data in flight, eventfd, epoll (nested, level- and edge-triggered),
signalfd, timerfd, inotify and memfd, and the refusal of an fd of an unknown kind.

Every process a test starts or restores is tracked by PID and start time (helpers.Procs) and
SIGKILLed at the end; pytest is a child subreaper here (conftest.py)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import statistics
import time
from pathlib import Path

import pytest
from fileutil import (
    PROGRAMS,
    build,
    cycle,
    epoll_entries,
    fdinfo_field,
    getfd,
    wait_match,
)
from helpers import (
    PYTHON,
    assert_clean_error,
    checkpoint,
    proc_stat,
    read_lines,
    restore,
    status,
    torpor,
)

F_GETPIPE_SZ = 1032


def _ready(out: Path) -> dict[str, int]:
    m = wait_match(out, r"ready (.*)")[0]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m[1])}


def _image_files(image: Path) -> list[dict]:
    res = torpor("image", "show", image, "--format", "json")
    return json.loads(res.stdout)["tree"]["files"]


def test_selectors_eventfd_timerfd(procs, tmp_path: Path) -> None:
    """Python selectors (epoll) over a 100 ms timerfd and an eventfd: ticks go on, numbered
    without gap, every 100 ms after restore; a semaphore eventfd keeps its count and mode."""
    out = tmp_path / "selectors_timer.log"
    p = procs.start([PYTHON, PROGRAMS / "selectors_timer.py"], cwd=tmp_path, name="selectors_timer")
    m = wait_match(out, r"fds timer=(\d+) event=(\d+) sem=(\d+) epoll=(\d+)")[0]
    tfd, efd, sem, ep = (int(x) for x in m.groups())
    wait_match(out, r"^tick n=", n=5)
    entries = epoll_entries(p.pid, ep)
    assert {e[0] for e in entries} == {tfd, efd}
    cycle(procs, tmp_path / "img", [p.pid])
    assert epoll_entries(p.pid, ep) == entries
    assert fdinfo_field(p.pid, sem, "eventfd-semaphore") == "1"
    assert int(fdinfo_field(p.pid, sem, "flags"), 8) & os.O_NONBLOCK
    assert fdinfo_field(p.pid, tfd, "it_interval") == "(0, 100000000)"
    assert fdinfo_field(p.pid, tfd, "clockid") == "1"
    ticks = wait_match(out, r"^tick n=(\d+) ev=(\d+) t=([\d.]+)", n=len(read_lines(out)) + 12)
    ns = [int(t[1]) for t in ticks]
    assert ns == list(range(1, len(ns) + 1)), f"ticks not consecutive: {ns}"
    evs = [int(t[2]) for t in ticks]
    assert evs[-1] >= ns[-1] - 2, "the eventfd stopped delivering"
    times = [float(t[3]) for t in ticks[-10:]]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert 0.07 < statistics.median(gaps) < 0.15, f"timer interval after restore: {gaps}"
    (tmp_path / "go").touch()
    assert wait_match(out, r"sem reads=(\d+)")[0][1] == "3"


def test_epoll_nested_c(procs, tmp_path: Path) -> None:
    """C: an epoll inside an epoll over a pipe (level-triggered) and an eventfd (edge-triggered):
    data in flight at the checkpoint is reported after restore, EPOLL_CTL_MOD still finds the
    entry by its fd number, new data still wakes it."""
    exe = build("epollnest", tmp_path)
    out = tmp_path / "epollnest.log"
    p = procs.start([exe], cwd=tmp_path)
    fds = _ready(out)

    def feed(data: bytes, val: int) -> None:
        w, e = getfd(p.pid, fds["pipe_w"]), getfd(p.pid, fds["efd"])
        try:
            os.write(w, data)
            os.eventfd_write(e, val)
        finally:
            os.close(w)
            os.close(e)

    feed(b"ab", 3)
    wait_match(out, r"pipe byte=b data=1111222233334444")
    wait_match(out, r"efd val=3 data=e0e0e0e0e0")
    os.kill(p.pid, signal.SIGUSR1)
    wait_match(out, r"paused=1")
    feed(b"xy", 7)
    inner, outer = epoll_entries(p.pid, fds["inner"]), epoll_entries(p.pid, fds["outer"])
    assert inner == sorted([(fds["pipe_r"], 0x19, 0x1111222233334444),
                            (fds["efd"], 0x80000019, 0xE0E0E0E0E0)])
    cycle(procs, tmp_path / "img", [p.pid])
    assert epoll_entries(p.pid, fds["inner"]) == inner
    assert epoll_entries(p.pid, fds["outer"]) == outer
    os.kill(p.pid, signal.SIGUSR1)
    wait_match(out, r"paused=0")
    wait_match(out, r"pipe byte=y data=1111222233334444")
    wait_match(out, r"efd val=7 data=e0e0e0e0e0")
    os.kill(p.pid, signal.SIGUSR2)
    assert wait_match(out, r"mod rc=(-?\d+)")[0][1] == "0"
    feed(b"z", 1)
    wait_match(out, r"pipe byte=z data=5555")
    wait_match(out, r"efd val=1 data=e0e0e0e0e0")
    lines = [ln for ln in read_lines(out) if ln.startswith("n=")]
    assert [int(ln.split()[0][2:]) for ln in lines] == list(range(1, len(lines) + 1))
    assert [ln.split()[2] for ln in lines if " pipe " in ln] == \
        ["byte=a", "byte=b", "byte=x", "byte=y", "byte=z"]


def test_signalfd(procs, tmp_path: Path) -> None:
    """C: signalfd over SIGUSR1/SIGUSR2; a signal pending at the checkpoint is read from the
    signalfd after restore, and new ones too."""
    exe = build("sigfd", tmp_path)
    out = tmp_path / "sigfd.log"
    p = procs.start([exe], cwd=tmp_path)
    sfd = _ready(out)["sfd"]
    mask = fdinfo_field(p.pid, sfd, "sigmask")
    os.kill(p.pid, signal.SIGUSR1)
    cycle(procs, tmp_path / "img", [p.pid])
    assert fdinfo_field(p.pid, sfd, "sigmask") == mask == f"{(1 << 9) | (1 << 11):016x}"
    (tmp_path / "read").touch()
    assert [m[1] for m in wait_match(out, r"sig=(\d+)")] == ["10"]
    wait_match(out, r"^drained")
    os.kill(p.pid, signal.SIGUSR2)
    (tmp_path / "read").touch()
    assert [m[1] for m in wait_match(out, r"sig=(\d+)", n=2)] == ["10", "12"]


def test_inotify(procs, tmp_path: Path) -> None:
    """inotify watching a directory and a file: same watch descriptors and masks after restore,
    a file created after restore is reported."""
    d = tmp_path / "watched"
    d.mkdir()
    f = tmp_path / "file"
    f.write_text("x")
    out = tmp_path / "inotify_watch.log"
    p = procs.start([PYTHON, PROGRAMS / "inotify_watch.py", d, f], cwd=tmp_path,
                    name="inotify_watch")
    r = _ready(out)
    assert r["wd_dir"] > 1
    (d / "before").touch()
    wait_match(out, rf"ev wd={r['wd_dir']} mask=0x100 name=before")
    watches = re.findall(r"inotify wd:\S+ ino:\S+ sdev:\S+ mask:\S+",
                         Path(f"/proc/{p.pid}/fdinfo/{r['ifd']}").read_text())
    cycle(procs, tmp_path / "img", [p.pid])
    after = re.findall(r"inotify wd:\S+ ino:\S+ sdev:\S+ mask:\S+",
                       Path(f"/proc/{p.pid}/fdinfo/{r['ifd']}").read_text())
    assert sorted(after) == sorted(watches)
    (d / "after").touch()
    wait_match(out, rf"ev wd={r['wd_dir']} mask=0x100 name=after")
    with open(f, "a") as fh:
        fh.write("more")
    wait_match(out, rf"ev wd={r['wd_file']} mask=0x2 name=$")
    assert not [ln for ln in read_lines(out) if "mask=0x8000" in ln], "IN_IGNORED leaked"


def test_fifo_tree(procs, tmp_path: Path) -> None:
    """A FIFO between a parent and its child with data in flight: every line arrives once, in
    order, after restore; the pipe size and O_NONBLOCK are kept."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = tmp_path / "fifo_tree.log"
    p = procs.start([PYTHON, PROGRAMS / "fifo_tree.py", fifo], cwd=tmp_path, name="fifo_tree")
    rfd = int(wait_match(out, r"parent ready fd=(\d+)")[0][1])
    wait_match(out, r"child ready")
    child = int(Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()[0])
    procs.adopt(child)
    wait_match(out, r"^got ", n=20)  # the writer is 4x faster: lines pile up in the FIFO
    cycle(procs, tmp_path / "img", [p.pid, child])
    fifos = [f for f in _image_files(tmp_path / "img") if f.get("type") == "fifo"]
    assert len(fifos) == 2 and {f["path"] for f in fifos} == {str(fifo)}
    assert fifos[0]["data_len"] > 0, "no data in flight at the checkpoint"
    assert fifos[0]["size"] == 128 * 1024
    assert int(fdinfo_field(p.pid, rfd, "flags"), 8) & os.O_NONBLOCK
    have = len(read_lines(out))
    got = wait_match(out, r"^got (\d+)", n=have + 10)
    nums = [int(g[1]) for g in got]
    assert nums == list(range(1, len(nums) + 1)), f"lines lost or repeated: {nums}"
    dup = getfd(p.pid, rfd)
    try:
        assert fcntl.fcntl(dup, F_GETPIPE_SZ) == 128 * 1024
    finally:
        os.close(dup)


def test_memfd(procs, tmp_path: Path) -> None:
    """A memfd held as an fd and mapped: same name, position, seals and content, and the fd
    and the mapping are still the same memory."""
    out = tmp_path / "memfd_hold.log"
    p = procs.start([PYTHON, PROGRAMS / "memfd_hold.py"], cwd=tmp_path, name="memfd_hold")
    fd = _ready(out)["fd"]
    cycle(procs, tmp_path / "img", [p.pid])
    assert os.readlink(f"/proc/{p.pid}/fd/{fd}") == "/memfd:torpor-test (deleted)"
    assert fdinfo_field(p.pid, fd, "pos") == "5"
    (tmp_path / "go").touch()
    m = wait_match(out, r"state pos=(\d+) seals=(\d+) map=(.*)")[0]
    assert m[1] == "7" and m[2] == "6", m[0]
    assert m[3] == repr(b"helloXYorld, memfd\n")


@pytest.mark.parametrize("kind", ["userfaultfd", "perf_event"])
def test_unknown_kind_refused(procs, tmp_path: Path, kind: str) -> None:
    """An fd of a kind torpor does not know: the checkpoint fails naming the process, the fd and
    the kind; the process runs on untouched and no image is left."""
    out = tmp_path / "unknown_fd.log"
    p = procs.start([PYTHON, PROGRAMS / "unknown_fd.py", kind], cwd=tmp_path, name="unknown_fd")
    fd = _ready(out)["fd"]
    wait_match(out, r"^n=", n=3)
    res = checkpoint(p.pid, tmp_path / "img", check=False)
    assert_clean_error(res, f"checkpoint with a {kind} fd")
    assert f"process {p.pid} fd {fd}" in res.stderr and kind in res.stderr, res.stderr
    assert not (tmp_path / "img" / "manifest.json").exists()
    have = len(read_lines(out))
    wait_match(out, r"^n=", n=have + 3)
    st = proc_stat(p.pid)
    assert st is not None and st[2] not in ("t", "T", "Z")
    assert status(p.pid)["TracerPid"] == "0"


def test_timerfd_unread_and_absolute(procs, tmp_path: Path) -> None:
    """Expirations not read at the checkpoint are kept and an interval timer stays periodic;
    an absolute CLOCK_REALTIME timer keeps its wall-clock deadline (it passed while the process
    was checkpointed: it has fired on restore)."""
    out = tmp_path / "timers_idle.log"
    p = procs.start([PYTHON, PROGRAMS / "timers_idle.py"], cwd=tmp_path, name="timers_idle")
    r = _ready(out)
    time.sleep(0.3)
    checkpoint(p.pid, tmp_path / "img")
    procs.reap(p.pid, timeout=5)
    saved = {f["id"]: f for f in _image_files(tmp_path / "img") if f.get("type") == "timerfd"}
    per = next(f for f in saved.values() if f["clockid"] == 1)
    assert per["interval_ns"] == 50_000_000 and per["ticks"] >= 4, per
    absrec = next(f for f in saved.values() if f["clockid"] == 0)
    assert absrec.get("ticks", 0) == 0 and absrec["settime_flags"] == 1, absrec
    time.sleep(1.0)  # the absolute deadline passes while nothing runs
    assert restore(tmp_path / "img", procs) == p.pid
    assert fdinfo_field(p.pid, r["abs"], "ticks") == "1"
    assert fdinfo_field(p.pid, r["abs"], "settime flags") == "01"
    assert fdinfo_field(p.pid, r["per"], "it_interval") == "(0, 50000000)"
    assert int(fdinfo_field(p.pid, r["per"], "ticks")) >= per["ticks"]


def test_kind_tables_name_every_kind_module_by_its_own_tag() -> None:
    """The lazy registry's tables (files/__init__.py) must agree with the modules they name."""
    from torpor.engine.resources import files

    listed = {n for names in files.CANDIDATES.values() for n in names}
    assert listed == set(files.BY_TAG.values())
    for tag, name in files.BY_TAG.items():
        assert files.kind_module(name).TAG == tag, name

"""The host-process checkpoint/restore contract of the CLI: generations, --leave-running,
refusals that leave everything as it was, `image show`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from engutil import assert_running_untraced, checkpoint_kill, cycle, restore_same
from helpers import (
    REPO,
    Procs,
    assert_clean_error,
    assert_consecutive,
    assert_same_process_view,
    checkpoint,
    free_pid,
    maps,
    read_lines,
    snapshot,
    start_time,
    status,
    tids,
    torpor,
    wait_for_lines,
    wait_gone,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


def ints(path: Path) -> list[int]:
    return [int(x) for x in read_lines(path)]


def counter_pids(binary: Path) -> set[int]:
    """Every process running BINARY now."""
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink(f"/proc/{d}/exe") == str(binary):
                    out.add(int(d))
            except OSError:
                pass
    return out


def test_ten_generations(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("counter"), out, "20"])
    wait_for_lines(out, 3)
    first = snapshot(p.pid)
    for gen in range(10):
        n = len(cycle(procs, p.pid, tmp_path / f"img{gen}", out))
        wait_for_lines(out, n + 3)
        assert_consecutive(ints(out), what=f"generation {gen + 1}")
        assert_same_process_view(first, snapshot(p.pid))


def test_leave_running(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    binary = compile_c("counter")
    p = procs.start([binary, out])
    wait_for_lines(out, 5)
    before = snapshot(p.pid)
    t0 = start_time(p.pid)
    n_before = len(read_lines(out))
    checkpoint(p.pid, tmp_path / "img", "--leave-running")
    n_after = len(read_lines(out))
    # the original goes on, untouched
    assert start_time(p.pid) == t0
    assert_running_untraced(p.pid)
    wait_for_lines(out, n_after + 3)
    assert_consecutive(ints(out), what="original after --leave-running")
    assert_same_process_view(before, snapshot(p.pid))

    procs.kill(p.pid)
    out.write_text("")  # the restored counter appends (O_APPEND) into an empty file
    restore_same(procs, tmp_path / "img", p.pid)
    wait_for_lines(out, 3)
    vals = ints(out)
    assert n_before < vals[0] <= n_after + 1, (
        f"restored counter starts at {vals[0]}, the checkpoint happened between {n_before} and {n_after}"
    )
    assert_consecutive(vals, start=vals[0], what="restored counter")
    assert read_lines(out)[0] == str(vals[0]), "output does not start at the file's end (O_APPEND lost?)"


def test_restore_refused_while_pid_in_use(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    binary = compile_c("counter")
    p = procs.start([binary, out])
    wait_for_lines(out, 3)
    checkpoint(p.pid, tmp_path / "img", "--leave-running")
    t0 = start_time(p.pid)
    before = snapshot(p.pid)
    running = counter_pids(binary)
    res = torpor("restore", "--image-path", tmp_path / "img", check=False)
    assert_clean_error(res, "restore while the PID is in use")
    assert str(p.pid) in res.stderr, f"the error should name the PID: {res.stderr!r}"
    assert counter_pids(binary) == running, "a failed restore left a process behind"
    assert start_time(p.pid) == t0
    assert_running_untraced(p.pid)
    n = len(read_lines(out))
    wait_for_lines(out, n + 3)
    assert_consecutive(ints(out))
    assert_same_process_view(before, snapshot(p.pid))


def test_checkpoint_nonexistent_pid(tmp_path: Path) -> None:
    pid = free_pid()
    res = checkpoint(pid, tmp_path / "img", check=False)
    assert_clean_error(res, "checkpoint of a PID that does not exist")
    assert not os.path.exists(f"/proc/{pid}")


def test_failed_checkpoint_leaves_process_running(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("counter"), out])
    wait_for_lines(out, 3)
    t0 = start_time(p.pid)
    before = snapshot(p.pid)
    img = tmp_path / "img"
    img.mkdir()
    (img / "keep").write_text("precious")
    res = checkpoint(p.pid, img, check=False)
    assert_clean_error(res, "checkpoint into a non-empty directory")
    assert sorted(os.listdir(img)) == ["keep"] and (img / "keep").read_text() == "precious"
    assert start_time(p.pid) == t0
    assert_running_untraced(p.pid)
    n = len(read_lines(out))
    wait_for_lines(out, n + 3)
    assert_consecutive(ints(out))
    assert_same_process_view(before, snapshot(p.pid))
    # and it can still be checkpointed and restored properly
    n = len(cycle(procs, p.pid, tmp_path / "img2", out))
    wait_for_lines(out, n + 3)
    assert_consecutive(ints(out))


# ---------------------------------------------------------------- damaged images


@pytest.fixture(scope="module")
def golden(compile_c, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, Path]]:
    """(image, pid, output file) of a counter checkpointed (and killed) once for the module."""
    d = tmp_path_factory.mktemp("golden")
    procs = Procs(d)
    try:
        out = d / "out"
        p = procs.start([compile_c("counter"), out])
        wait_for_lines(out, 3)
        checkpoint_kill(procs, p.pid, d / "img", out)
        yield d / "img", p.pid, out
    finally:
        procs.cleanup()


def refuse(image: Path, pid: int, what: str) -> None:
    res = torpor("restore", "--image-path", image, check=False)
    if res.returncode == 0:  # do not leave it running
        words = res.stdout.split()
        if words and words[-1].isdigit() and int(words[-1]) == pid:
            os.kill(pid, signal.SIGKILL)
    assert_clean_error(res, what)
    # a half-built process may linger as a zombie re-parented to us (subreaper): reap it
    wait_gone(pid, timeout=3)


def image_files(image: Path) -> list[Path]:
    return sorted(f for f in image.rglob("*") if f.is_file())


def test_refuse_missing_image(golden, tmp_path: Path) -> None:
    _, pid, _ = golden
    refuse(tmp_path / "nope", pid, "restore from a missing directory")


def test_refuse_empty_dir(golden, tmp_path: Path) -> None:
    _, pid, _ = golden
    (tmp_path / "empty").mkdir()
    refuse(tmp_path / "empty", pid, "restore from an empty directory")


def test_refuse_incomplete_image(golden, tmp_path: Path) -> None:
    image, pid, _ = golden
    copy = tmp_path / "img"
    shutil.copytree(image, copy)
    (copy / "INCOMPLETE").write_text("")
    refuse(copy, pid, "restore from an image marked INCOMPLETE")


@pytest.mark.parametrize("damage", ["truncate", "flip", "remove"])
def test_refuse_damaged_image(golden, tmp_path: Path, damage: str) -> None:
    """Each file of the image in turn: truncated to half / one byte flipped / removed."""
    image, pid, _ = golden
    files = image_files(image)
    assert files, "empty image"
    for i, f in enumerate(files):
        copy = tmp_path / f"img{i}"
        shutil.copytree(image, copy)
        victim = copy / f.relative_to(image)
        data = bytearray(victim.read_bytes())
        if damage == "truncate":
            victim.write_bytes(data[: len(data) // 2])
        elif damage == "flip":
            if not data:
                continue
            data[len(data) // 2] ^= 0x40
            victim.write_bytes(data)
        else:
            victim.unlink()
        refuse(copy, pid, f"restore with {f.relative_to(image)} damaged ({damage})")


def test_golden_image_restores(golden, procs, tmp_path: Path) -> None:
    """The undamaged image does restore (the refusals above were about the damage)."""
    image, pid, out = golden
    copy = tmp_path / "img"
    shutil.copytree(image, copy)
    n = len(read_lines(out))
    restore_same(procs, copy, pid)
    wait_for_lines(out, n + 3)
    assert_consecutive(ints(out))
    procs.kill(pid)


# ---------------------------------------------------------------- image show


def test_image_show(compile_c, procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("threads"), out])
    wait_for_lines(out, 12)
    threads = tids(p.pid)
    stack = next(ln for ln in maps(p.pid) if ln.endswith("[stack]"))
    checkpoint(p.pid, tmp_path / "img", "--leave-running")
    res = torpor("image", "show", tmp_path / "img")
    text = res.stdout
    assert re.search(rf"\b{p.pid}\b", text), f"pid {p.pid} not in image show:\n{text}"
    for tid in threads:
        assert re.search(rf"\b{tid}\b", text), f"thread {tid} not in image show:\n{text}"
    lo = stack.split("-")[0].lstrip("0")
    assert lo in text.lower(), f"stack area {stack} not in image show:\n{text}"
    assert str(out) in text, f"fd of {out} not in image show:\n{text}"


def test_image_show_refuses_missing(tmp_path: Path) -> None:
    res = torpor("image", "show", tmp_path / "nope", check=False)
    assert_clean_error(res, "image show of a missing directory")


def test_cli_does_not_leak_into_restored(compile_c, procs, tmp_path: Path) -> None:
    """torpor restore with pipes as stdout/stderr returns (the restored process must not keep
    the CLI's pipes open) and the restored process has exactly the fds it had."""
    out = tmp_path / "out"
    p = procs.start([compile_c("counter"), out])
    wait_for_lines(out, 3)
    before = snapshot(p.pid)
    checkpoint_kill(procs, p.pid, tmp_path / "img", out)
    try:
        res = subprocess.run(
            [sys.executable, "-m", "torpor", "restore", "--image-path", str(tmp_path / "img")],
            capture_output=True, text=True, timeout=20, cwd=REPO,
        )  # fmt: skip
    finally:
        if os.path.exists(f"/proc/{p.pid}"):
            procs.adopt(p.pid)
    assert res.returncode == 0, res.stderr
    assert_same_process_view(before, snapshot(p.pid))


# ---------------------------------------------------------------- more refusals


def occupy_pid(pid: int, procs: Procs) -> subprocess.Popen | None:
    """Start `sleep` with exactly PID (via ns_last_pid), or None if another fork won the race."""
    for _ in range(5):
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        p = procs.start(["sleep", "60"], name="occupier")
        if p.pid == pid:
            return p
        procs.kill(p.pid)
    return None


def test_restore_refused_when_a_thread_id_is_taken(compile_c, procs, tmp_path: Path) -> None:
    """The main PID is free but one thread's TID is taken: clear error, nothing left behind."""
    out = tmp_path / "out"
    binary = compile_c("threads")
    p = procs.start([binary, out])
    wait_for_lines(out, 20)
    threads = tids(p.pid)
    checkpoint_kill(procs, p.pid, tmp_path / "img", out)
    victim = threads[-1]
    occ = occupy_pid(victim, procs)
    if occ is None:
        pytest.skip(f"could not get pid {victim} for the occupier")
    t0 = start_time(victim)
    res = torpor("restore", "--image-path", tmp_path / "img", check=False)
    assert_clean_error(res, f"restore while thread id {victim} is taken")
    assert str(victim) in res.stderr, f"the error should name the TID: {res.stderr!r}"
    wait_gone(p.pid, timeout=3)
    assert counter_pids(binary) == set(), "a failed restore left a process behind"
    assert start_time(victim) == t0, "the process holding the TID was disturbed"
    procs.kill(victim)
    restore_same(procs, tmp_path / "img", p.pid)
    assert tids(p.pid) == threads


def test_checkpoint_of_traced_process_fails_cleanly(compile_c, procs, tmp_path: Path) -> None:
    """Another tracer holds the process: checkpoint fails, the process is left as it was."""
    out = tmp_path / "out"
    p = procs.start([compile_c("counter"), out])
    wait_for_lines(out, 3)
    ready = tmp_path / "traced"
    tracer = procs.start([sys.executable, "-c", f"""
import ctypes, time, pathlib
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(0x4206, {p.pid}, None, None) != 0:  # PTRACE_SEIZE, does not stop the tracee
    raise SystemExit(ctypes.get_errno())
pathlib.Path("{ready}").write_text("ok")
time.sleep(60)
"""], name="tracer")  # fmt: skip
    wait_until(ready.exists, 5, "the tracer to attach")
    before = snapshot(p.pid)
    t0 = start_time(p.pid)
    res = checkpoint(p.pid, tmp_path / "img", check=False)
    assert_clean_error(res, "checkpoint of a process traced by someone else")
    assert start_time(p.pid) == t0
    assert status(p.pid)["TracerPid"] == str(tracer.pid), "the other tracer lost the process"
    n = len(read_lines(out))
    wait_for_lines(out, n + 3)
    assert_consecutive(ints(out))
    assert_same_process_view(before, snapshot(p.pid))
    procs.kill(tracer.pid)
    wait_until(lambda: status(p.pid)["TracerPid"] == "0", 5, "the tracer to let go")
    n = len(cycle(procs, p.pid, tmp_path / "img2", out))
    wait_for_lines(out, n + 3)
    assert_consecutive(ints(out))


def test_relative_image_path_and_other_cwd(compile_c, procs, tmp_path: Path) -> None:
    """checkpoint and restore with a relative --image-path, run from another directory."""
    out = tmp_path / "out"
    p = procs.start([compile_c("counter"), out])
    wait_for_lines(out, 3)
    work = tmp_path / "elsewhere"
    work.mkdir()
    torpor("checkpoint", "--pid", p.pid, "--image-path", "img", cwd=work)
    assert (work / "img").is_dir()
    procs.reap(p.pid, timeout=5)
    n = len(read_lines(out))
    res = torpor("restore", "--image-path", "img", cwd=work, check=False)
    if os.path.exists(f"/proc/{p.pid}"):
        procs.adopt(p.pid)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-1] == str(p.pid)
    wait_for_lines(out, n + 3)
    assert_consecutive(ints(out))


def test_same_image_restores_twice(compile_c, procs, tmp_path: Path) -> None:
    """A restore does not consume or alter the image: restoring it again starts over from the
    same point."""
    out = tmp_path / "out"
    p = procs.start([compile_c("counter"), out])
    wait_for_lines(out, 3)
    img = tmp_path / "img"
    n = len(checkpoint_kill(procs, p.pid, img, out))
    files = {f: f.read_bytes() for f in image_files(img)}
    for _ in range(2):
        out.write_text("")
        restore_same(procs, img, p.pid)
        wait_for_lines(out, 3)
        vals = ints(out)
        assert vals[0] == n + 1, f"restored counter starts at {vals[0]}, expected {n + 1}"
        assert_consecutive(vals, start=n + 1)
        procs.kill(p.pid)
    assert {f: f.read_bytes() for f in image_files(img)} == files, "restore changed the image"

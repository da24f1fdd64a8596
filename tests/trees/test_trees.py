"""Checkpoint/restore of whole process trees (issue 4): shells with their children, pipelines
with data in flight, shared memory and pipes between workers, daemons and groups whose leader
has exited, zombies, shared open file descriptions, --leave-running, and a 50-process tree.

Every process a test starts or restores is tracked by PID and start time and SIGKILLed at the
end; pytest is a child subreaper here (conftest.py) so killed and restored trees are reaped by
us and their PIDs are free again at once.
"""

from __future__ import annotations

import random
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import assert_consecutive, wait_until
from treeutil import (
    Tracker,
    assert_tree_like,
    checkpoint_tree,
    image_tree,
    read_ints,
    reap_all,
    restore_tree,
    tree_view,
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

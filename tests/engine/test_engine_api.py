"""The engine's Python API as the runtime uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import proc_stat, wait_for_lines

pytestmark = pytest.mark.timeout(60)


def test_on_frozen_runs_while_the_tree_is_stopped(compile_c, procs, tmp_path: Path) -> None:
    """on_frozen adds the caller's state (tmpfs contents, IPC, seccomp filters) to the image: it
    must see the tree stopped even with --leave-running, where memory is copied from snapshots
    after the tree was let go."""
    from torpor.engine.dump import checkpoint_tree

    out = tmp_path / "out"
    p = procs.start([compile_c("counter"), out])
    wait_for_lines(out, 2)
    seen: list[str] = []

    def on_frozen(writer) -> None:
        seen.append(proc_stat(p.pid)[2])
        writer.put_file("extra", b"state")

    checkpoint_tree(p.pid, str(tmp_path / "img"), leave_running=True, on_frozen=on_frozen)
    assert seen == ["t"], f"on_frozen saw the process in state {seen}"
    assert (tmp_path / "img" / "extra").read_bytes() == b"state"
    assert proc_stat(p.pid)[2] in ("S", "R")

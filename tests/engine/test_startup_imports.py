"""What `torpor checkpoint` and `torpor restore` import before they work.

containerd runs torpor for every operation, and a tiny checkpoint or restore is mostly
interpreter and import time: the modules of paths a command does not take (the copy-on-write
copier, the lazy page server) and the heavy standard modules (typing, enum, re) stay out.
The list is sys.modules at the exit of real commands.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, Procs, read_lines, wait_for_lines

pytestmark = pytest.mark.timeout(60)


# what the installed `torpor` script runs (not `python -m torpor`: runpy imports importlib),
# writing the names of the modules loaded when it exits to argv[1]
RUN_AND_LIST = """
import os, sys
listing = sys.argv.pop(1)
leave = os._exit  # torpor leaves by os._exit, past atexit
def dump_and_leave(code):
    with open(listing, "w") as f:
        f.write("\\n".join(name for name, mod in sys.modules.items() if mod is not None))
    leave(code)
os._exit = dump_and_leave
sys.argv[0] = "torpor"
from torpor.cli.main import entry
entry()
"""


def imported(tmp_path: Path, *args: object) -> tuple[set[str], subprocess.CompletedProcess]:
    listing = tmp_path / "modules"
    argv = [sys.executable, "-c", RUN_AND_LIST, listing, *[str(a) for a in args]]
    res = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=40,
                         stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert res.returncode == 0, res.stderr[-2000:]
    return set(listing.read_text().split()), res


# neither a plain checkpoint nor an eager restore takes these paths; the rest is only
# start-up cost: typing (~4 ms), enum (signal's enums, re), json and re, msgspec (its C
# module imports typing, datetime, decimal and uuid: ~20 ms), logging, concurrent.futures,
# importlib (its package imports warnings)
NOT_AT_START = {"torpor.engine.cow", "torpor.engine.lazy", "typing_extensions", "zstandard",
                "logging", "concurrent.futures", "typing", "enum", "signal", "re", "json",
                "msgspec", "datetime", "decimal", "uuid", "dataclasses", "importlib", "warnings"}


def test_checkpoint_and_restore_load_only_their_path(compile_c, procs: Procs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = procs.start([compile_c("memsum"), out, "48"])  # enough for parallel page writers
    wait_for_lines(out, 1)
    img = tmp_path / "img"
    names, _ = imported(tmp_path, "checkpoint", "--pid", p.pid, "--image-path", img)
    assert "torpor.engine.dump" in names  # the list is real
    assert not names & NOT_AT_START, sorted(names & NOT_AT_START)
    procs.reap(p.pid, timeout=5)

    names, res = imported(tmp_path, "restore", "--image-path", img)
    pid = int(res.stdout.split()[-1])
    procs.adopt(pid)
    assert "torpor.engine.restore" in names
    assert not names & NOT_AT_START, sorted(names & NOT_AT_START)
    n = len(read_lines(out))
    wait_for_lines(out, n + 2)  # and the restored program goes on, with the same sums
    assert len({line.split()[1] for line in read_lines(out)}) == 1

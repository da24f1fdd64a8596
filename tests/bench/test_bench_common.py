"""bench/common.py's command timing: the wall time of a command is taken when it exits, not
at the next poll of a timed wait (subprocess.run(timeout=...) polls with sleeps growing to
50 ms, which added 0-50 ms to every timed torpor command and none to the cold start it is
compared with)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import common  # noqa: E402


def test_run_cmd_waits_without_polling(monkeypatch) -> None:
    timeouts: list[object] = []
    real_wait = subprocess.Popen.wait

    def wait(self, timeout=None):
        timeouts.append(timeout)
        return real_wait(self, timeout)

    monkeypatch.setattr(subprocess.Popen, "wait", wait)
    res = common.run_cmd([sys.executable, "-c", "print(42)"])
    assert res.ok() and res.out.strip() == "42"
    assert timeouts and all(t is None for t in timeouts), f"timed waits poll: {timeouts}"


def test_run_cmd_times_out() -> None:
    res = common.run_cmd([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.3)
    assert not res.ok() and res.secs < 10

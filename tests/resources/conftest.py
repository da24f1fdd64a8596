"""Per-process resource tests (POSIX timers, file locks) run real programs on the host and
need root."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

import pytest

PR_SET_CHILD_SUBREAPER = 36


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/resources/" in str(item.fspath) and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root"))


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> Iterator[None]:
    """Restored processes are re-parented to pytest (a child subreaper for each module), so
    they are reaped at once and their PIDs are free again (init here reaps only every ~2 s)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass

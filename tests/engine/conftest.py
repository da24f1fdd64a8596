"""Engine tests run real workloads on the host (no container) and need root."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator

import pytest

PR_SET_CHILD_SUBREAPER = 36


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/engine/" in str(item.fspath) and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root"))


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> Iterator[None]:
    """A restored process is detached from `torpor restore`: with pytest as child subreaper it
    is re-parented to us, so we can reap it as soon as it dies and its PID is free at once
    (init here reaps orphans only every ~2 s). Switched off again after each module."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)

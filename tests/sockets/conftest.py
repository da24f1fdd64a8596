"""Socket tests run real programs on the host (no container) and need root."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator

import pytest
from runtime.conftest import bundle, rootfs, rt  # noqa: F401 - fixtures (container test)

PR_SET_CHILD_SUBREAPER = 36


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/sockets/" in str(item.fspath) and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root"))


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> Iterator[None]:
    """Restored processes are re-parented to pytest (child subreaper) so that they are reaped
    at once when they die and their PIDs are free again (init reaps slowly here)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)

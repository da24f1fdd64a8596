"""Shared fixtures: compiled test workloads and per-test process bookkeeping."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Procs
from helpers import compile_c as _compile_c


@pytest.fixture(scope="session")
def compile_c(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """compile_c("counter") -> path of tests/programs/counter.c built with -O2 -static -pthread
    (compiled once per session)."""
    outdir = tmp_path_factory.mktemp("bin")
    cache: dict[str, Path] = {}
    lock = threading.Lock()

    def build(name: str) -> Path:
        with lock:
            if name not in cache:
                cache[name] = _compile_c(name, outdir)
            return cache[name]

    return build


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Start/adopt processes through this; all of them are SIGKILLed and reaped afterwards."""
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.cleanup()

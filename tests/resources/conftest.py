"""Per-process resource tests (POSIX timers, file locks) run real programs on the host and
need root."""

from __future__ import annotations

from helpers import needs_root, subreaper_fixture

pytest_collection_modifyitems = needs_root("tests/resources/")
subreaper = subreaper_fixture()

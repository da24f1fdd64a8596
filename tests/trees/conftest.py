"""Process-tree tests run real workloads on the host and need root."""

from __future__ import annotations

from helpers import needs_root, subreaper_fixture

pytest_collection_modifyitems = needs_root("tests/trees/")
subreaper = subreaper_fixture()

"""File-kind tests (issue 6) run real programs on the host and need root."""

from __future__ import annotations

from helpers import needs_root, subreaper_fixture

pytest_collection_modifyitems = needs_root("tests/files/")
subreaper = subreaper_fixture()

"""Socket tests run real programs on the host (no container) and need root."""

from __future__ import annotations

from helpers import needs_root, subreaper_fixture
from runtime.conftest import bundle, rootfs, rt  # noqa: F401 - fixtures (container test)

pytest_collection_modifyitems = needs_root("tests/sockets/")
subreaper = subreaper_fixture()

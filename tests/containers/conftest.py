"""Fixtures for container checkpoint/restore tests: those of tests/runtime (a private
--root, busybox bundles, the strict clean-up), plus helpers for counters and images."""

from __future__ import annotations

from runtime.conftest import bundle, rootfs, rt  # noqa: F401 - fixtures

"""Summaries of an image for `torpor image show` (plain data; the CLI does the printing)."""

from __future__ import annotations

import datetime

from torpor.image.store import ImageReader

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms

if TYPE_CHECKING:
    from typing import Any

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def format_size(n: int | float) -> str:
    """1536 -> '1.5 KiB'; 512 -> '512 B'; 0 -> '0 B' (binary units, one decimal above bytes)."""
    n = float(n)
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit in _UNITS:
        if n < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{sign}{int(n)} B"
            return f"{sign}{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def describe(reader: ImageReader) -> dict[str, Any]:
    """The manifest summary of an image as a JSON-friendly dict: identity, what the image needs
    from the host (kernel, arch, xfeatures) and its files with sizes."""
    m = reader.manifest
    files = []
    total = 0
    for name, e in sorted(m.files.items()):
        f: dict[str, Any] = {"name": name, "kind": e.kind, "size": e.size, "xxh3_128": e.xxh3_128}
        if e.compression:
            f["compression"] = e.compression
            f["raw_size"] = e.raw_size
        files.append(f)
        total += e.size
    created = datetime.datetime.fromtimestamp(m.created, tz=datetime.UTC)
    return {
        "path": reader.path,
        "format": m.format,
        "format_version": m.format_version,
        "torpor_version": m.torpor_version,
        "kind": m.kind,
        "created": m.created,
        "created_iso": created.isoformat(timespec="seconds"),
        "kernel": m.kernel,
        "arch": m.arch,
        "xfeatures": m.xfeatures,
        "xfeatures_hex": hex(m.xfeatures),
        "files": files,
        "total_size": total,
        "total_size_human": format_size(total),
        "meta": m.meta,
    }

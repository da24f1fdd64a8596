"""torpor.image.show: the manifest summary and size formatting."""

from __future__ import annotations

import json
import os

import pytest
from imgutil import BLOB, PAGES, make_image, read_all

from torpor.image.manifest import FORMAT_VERSION
from torpor.image.show import describe, format_size
from torpor.image.store import ImageReader


@pytest.mark.parametrize(
    "n, text",
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 << 20, "5.0 MiB"),
        (int(2.5 * (1 << 30)), "2.5 GiB"),
        (3 << 40, "3.0 TiB"),
        (1 << 70, "1024.0 EiB"),
        (-2048, "-2.0 KiB"),
    ],
)
def test_format_size(n, text):
    assert format_size(n) == text


@pytest.mark.parametrize("compress", [None, "zstd"])
def test_describe(tmp_path, compress):
    p = tmp_path / "img"
    make_image(str(p), compress=compress)
    with ImageReader(p) as r:
        d = describe(r)
    json.dumps(d)  # JSON-friendly
    assert d["path"] == str(p)
    assert d["format"] == "torpor-image" and d["format_version"] == FORMAT_VERSION
    assert d["kind"] == "process-tree"
    assert d["kernel"] == os.uname().release
    assert d["xfeatures"] == 0xE7 and d["xfeatures_hex"] == "0xe7"
    assert d["meta"] == {"root_pid": 10}
    assert d["created_iso"].endswith("+00:00")
    files = {f["name"]: f for f in d["files"]}
    assert files["rootfs.tar"]["size"] == len(BLOB) and files["rootfs.tar"]["kind"] == "blob"
    assert files["tree.rec"]["kind"] == "record"
    if compress:
        assert files["pages.img"]["compression"] == "zstd"
        assert files["pages.img"]["raw_size"] == len(PAGES)
        assert "pages.idx" in files
    else:
        assert files["pages.img"]["size"] == len(PAGES)
        assert "compression" not in files["pages.img"]
    assert d["total_size"] == sum(os.path.getsize(p / f) for f in files)
    assert d["total_size_human"] == format_size(d["total_size"])


def test_extra_files_are_ignored(tmp_path):
    p = tmp_path / "img"
    make_image(str(p))
    (p / "notes.txt").write_bytes(os.urandom(100))
    (p / ".tree.rec.tmp").write_bytes(b"left over")
    before = read_all(str(p))
    with ImageReader(p) as r:
        assert "notes.txt" not in {f["name"] for f in describe(r)["files"]}
    assert read_all(str(p)) == before


def test_page_fd_belongs_to_the_reader(tmp_path):
    p = tmp_path / "img"
    make_image(str(p))
    r = ImageReader(p)
    fd = r.page_fd("pages")
    os.fstat(fd)
    r.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    r.close()  # idempotent

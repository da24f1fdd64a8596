"""zstd page files: independent frames + index, random access by logical offset."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imgutil import PAGES, TREE, Tree, make_image, read_all

from torpor.errors import ImageError
from torpor.image.store import ImageReader, ImageWriter


def test_round_trip_compressed(tmp_path):
    p = str(tmp_path / "img")
    make_image(p, compress="zstd", chunk_size=4096)
    got = read_all(p)
    assert got["pages"] == PAGES and got["tree"] == TREE
    assert sorted(os.listdir(p)) == [
        "manifest.json",
        "pages.idx",
        "pages.img",
        "rootfs.tar",
        "tasks.rec",
        "tree.rec",
    ]
    with ImageReader(p) as r:
        e = r.manifest.files["pages.img"]
        assert e.compression == "zstd" and e.raw_size == len(PAGES)
        assert e.size < len(PAGES)  # the zero page and the repeated pattern compress
        assert r.pages_size("pages") == len(PAGES)
        with pytest.raises(ImageError, match="compressed"):
            r.page_fd("pages")
        r.verify()


def test_compressed_is_append_only(tmp_path):
    w = ImageWriter(tmp_path / "i", compress="zstd", sync=False)
    pf = w.page_file("pages")
    assert pf.compressed
    for op in (lambda: pf.fd, lambda: pf.reserve(10), lambda: pf.pwrite(b"x", 0)):
        with pytest.raises(ImageError, match="compressed"):
            op()
    w.commit()


def test_large_writes_use_parallel_frames(tmp_path):
    data = os.urandom(1 << 20) + bytes(3 << 20) + os.urandom(12345)
    w = ImageWriter(tmp_path / "i", compress="zstd", chunk_size=256 << 10, sync=False)
    pf = w.page_file("pages")
    assert pf.write(data[:100]) == 0
    assert pf.write(data[100:]) == 100  # many full chunks at once -> thread pool
    assert pf.size == len(data)
    w.commit()
    with ImageReader(tmp_path / "i") as r:
        r.verify_pages()
        assert r.read_pages("pages", 0, len(data)) == data
        assert r.read_pages("pages", (256 << 10) - 5, 10) == data[(256 << 10) - 5 : (256 << 10) + 5]
        assert r.manifest.files["pages.img"].size < len(data) // 2


def test_damaged_frame_or_index(tmp_path):
    p = tmp_path / "img"
    make_image(str(p), compress="zstd", chunk_size=4096)
    with open(p / "pages.img", "r+b") as f:
        f.seek(30)
        b = f.read(1)
        f.seek(30)
        f.write(bytes([b[0] ^ 1]))
    with ImageReader(p) as r:
        with pytest.raises(ImageError, match="pages.img: checksum mismatch"):
            r.verify_pages()
        with pytest.raises(ImageError, match="pages.img"):
            r.read_pages("pages", 0, 100)
        # frames after the damaged one still read
        assert r.read_pages("pages", 8192, 10) == PAGES[8192:8202]
    with open(p / "pages.idx", "r+b") as f:
        f.write(b"\xff")
    with ImageReader(p) as r, pytest.raises(ImageError, match="pages.idx: checksum mismatch"):
        r.read_pages("pages", 8192, 10)


writes = st.lists(st.integers(min_value=0, max_value=5000), min_size=0, max_size=12)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=writes,
    vectored=st.lists(st.booleans(), min_size=12, max_size=12),
    chunk=st.sampled_from([1, 7, 512, 4096, 1 << 20]),
    compress=st.sampled_from([None, "zstd"]),
    reads=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), max_size=20),
    data=st.data(),
)
def test_random_access(tmp_path_factory, sizes, vectored, chunk, compress, reads, data):
    blob = (os.urandom(3000) + bytes(3000)) * 10
    p = tmp_path_factory.mktemp("ra") / "img"
    w = ImageWriter(p, compress=compress, chunk_size=chunk, sync=False)
    pf = w.page_file("pages")
    want = bytearray()
    for i, n in enumerate(sizes):
        piece = blob[len(want) % 1000 : len(want) % 1000 + n]
        if vectored[i]:
            k = data.draw(st.integers(0, len(piece)))
            off = pf.write_vectored([piece[:k], bytearray(piece[k:])])
        else:
            off = pf.write(piece)
        assert off == len(want)
        want += piece
    w.put_record("tree", TREE)
    w.commit()
    with ImageReader(p) as r:
        r.verify()
        assert r.record("tree", Tree) == TREE
        assert r.pages_size("pages") == len(want)
        assert r.read_pages("pages", 0, len(want)) == want
        for a, b in reads:
            off = int(a * len(want))
            n = int(b * (len(want) - off))
            assert r.read_pages("pages", off, n) == want[off : off + n]


def test_decompress_pages_to_fd_in_parallel(tmp_path):
    """restore unpacks a compressed page file into a memfd, frames on every CPU at once."""
    data = os.urandom(300 << 10) + bytes(1 << 20) + os.urandom(777)
    w = ImageWriter(tmp_path / "i", compress="zstd", chunk_size=64 << 10, sync=False)
    w.page_file("pages").write(data)
    w.commit()
    fd = os.memfd_create("t", os.MFD_CLOEXEC)
    try:
        with ImageReader(tmp_path / "i") as r:
            assert r.decompress_pages_to("pages", fd) == len(data)
        assert os.pread(fd, len(data) + 1, 0) == data
    finally:
        os.close(fd)
    with open(tmp_path / "i" / "pages.img", "r+b") as f:  # damage a frame in the middle
        f.seek(os.path.getsize(tmp_path / "i" / "pages.img") // 2)
        f.write(b"\xff" * 64)
    fd = os.memfd_create("t", os.MFD_CLOEXEC)
    try:
        with ImageReader(tmp_path / "i") as r, pytest.raises(ImageError, match="pages.img.*damaged"):
            r.decompress_pages_to("pages", fd)
    finally:
        os.close(fd)

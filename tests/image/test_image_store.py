"""ImageWriter / ImageReader: round trips, permissions, refusals, damage detection."""

from __future__ import annotations

import os
import random
import stat

import pytest
from imgutil import (
    BLOB,
    PAGES,
    TREE,
    Task,
    Tree,
    load_manifest_doc,
    make_image,
    read_all,
    replace_file,
    write_manifest_doc,
)

from torpor.errors import AlreadyExists, ImageError, TorporError
from torpor.image import codec, store
from torpor.image.manifest import FORMAT_VERSION, Manifest
from torpor.image.store import ImageReader, ImageWriter


@pytest.fixture
def img(tmp_path):
    p = str(tmp_path / "img")
    make_image(p)
    return p


def one_line(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg and msg
    return msg


# ---- round trips --------------------------------------------------------------------------


def test_round_trip(img):
    got = read_all(img)
    assert got["tree"] == TREE
    assert got["tasks"] == TREE.tasks
    assert got["pages"] == PAGES
    assert got["blob"] == BLOB
    assert got["meta"] == {"root_pid": 10}
    assert got["xfeatures"] == 0xE7
    assert got["kind"] == "process-tree"
    with ImageReader(img) as r:
        m = r.manifest
        assert isinstance(m, Manifest)
        assert m.format == "torpor-image" and m.format_version == FORMAT_VERSION
        assert m.kernel == os.uname().release
        assert set(m.files) == {"tree.rec", "tasks.rec", "pages.img", "rootfs.tar"}
        assert m.files["pages.img"].size == len(PAGES)
        assert sorted(r.records()) == ["tasks", "tree"]
        assert r.page_files() == ["pages"]
        fd = r.page_fd("pages")
        assert os.pread(fd, 100, 300) == PAGES[300:400]
        assert r.page_fd("pages") == fd
        assert r.read_pages("pages", 4990, 20) == PAGES[4990:5010]
        r.verify()
    assert sorted(os.listdir(img)) == [
        "manifest.json",
        "pages.img",
        "rootfs.tar",
        "tasks.rec",
        "tree.rec",
    ]


def test_commit_returns_manifest_and_takes_kind_from_meta(tmp_path):
    w = ImageWriter(tmp_path / "i", sync=False)
    m = w.commit({"kind": "container", "xfeatures": 7, "config": {"a": [1, 2]}})
    assert (m.kind, m.xfeatures) == ("container", 7)
    with ImageReader(tmp_path / "i") as r:
        assert r.manifest.kind == "container"
        assert r.manifest.meta["config"] == {"a": [1, 2]}
    w = ImageWriter(tmp_path / "j", sync=False)
    m = w.commit({"kind": "container"}, kind="process-tree", xfeatures=3)
    assert (m.kind, m.xfeatures) == ("process-tree", 3)


def test_durable_commit(tmp_path):
    """The default (sync=True) path: every fsync taken."""
    w = ImageWriter(tmp_path / "i")
    w.put_record("tree", TREE)
    w.page_file("pages").write(PAGES)
    w.commit()
    assert ImageReader(tmp_path / "i").record("tree", Tree) == TREE


def test_empty_page_file_and_zero_writes(tmp_path):
    w = ImageWriter(tmp_path / "i", sync=False)
    pf = w.page_file("pages")
    assert pf.write(b"") == 0
    assert pf.write_vectored([]) == 0
    assert w.page_file("pages") is pf
    w.commit()
    with ImageReader(tmp_path / "i") as r:
        r.verify_pages()
        assert r.pages_size("pages") == 0
        assert r.read_pages("pages", 0, 0) == b""


def test_write_vectored_many_buffers_and_types(tmp_path):
    bufs = [os.urandom(random.randrange(1, 64)) for _ in range(3000)]  # > IOV_MAX
    bufs[5] = bytearray(bufs[5])
    bufs[6] = memoryview(bufs[6])
    import array

    arr = array.array("Q", range(8))
    w = ImageWriter(tmp_path / "i", sync=False)
    pf = w.page_file("pages")
    assert pf.write(b"x") == 0
    assert pf.write_vectored(bufs) == 1
    off = pf.write(arr)
    w.commit()
    want = b"x" + b"".join(bytes(b) for b in bufs) + arr.tobytes()
    assert off == len(want) - 64
    with ImageReader(tmp_path / "i") as r:
        r.verify_pages()
        assert r.read_pages("pages", 0, len(want)) == want


@pytest.mark.parametrize("offload", [False, True])
def test_short_writes(tmp_path, monkeypatch, offload):
    if offload:  # hash on the worker thread while writing, even for small writes
        monkeypatch.setattr(store, "HASH_OFFLOAD", 1)
    real_write, real_writev = os.write, os.writev

    def short_write(fd, data):
        return real_write(fd, memoryview(data)[: max(1, len(data) // 3)])

    def short_writev(fd, bufs):
        bufs = list(bufs)
        total = sum(len(b) for b in bufs)
        n = real_writev(fd, bufs)
        assert n == total
        # pretend only part got written: rewind the file offset and truncate
        keep = max(1, total * 2 // 5)
        os.lseek(fd, keep - total, os.SEEK_CUR)
        os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR))
        return keep

    monkeypatch.setattr(store.os, "write", short_write)
    monkeypatch.setattr(store.os, "writev", short_writev)
    bufs = [os.urandom(n) for n in (1, 100, 4096, 7, 50000, 3)]
    w = ImageWriter(tmp_path / "i", sync=False)
    pf = w.page_file("pages")
    pf.write(PAGES)
    pf.write_vectored(bufs)
    pf.write_vectored(bufs[::-1])
    w.commit()
    monkeypatch.undo()
    want = PAGES + b"".join(bufs) + b"".join(bufs[::-1])
    with ImageReader(tmp_path / "i") as r:
        r.verify_pages()
        assert r.read_pages("pages", 0, len(want)) == want


def test_reserve_and_pwrite_through_fd(tmp_path):
    w = ImageWriter(tmp_path / "i", sync=False)
    pf = w.page_file("pages")
    assert pf.write(b"a" * 100) == 0
    off = pf.reserve(4096)
    assert off == 100
    assert pf.write(b"b" * 10) == 4196
    os.pwritev(pf.fd, [b"c" * 96, b"d" * 4000], off)
    off2 = pf.reserve(50)  # left as a hole: zeros
    pf.pwrite(b"e" * 10, off2 + 20)
    # the engine appends through the fd itself (e.g. copy_file_range with the file offset)
    os.write(pf.fd, b"f" * 7)
    assert pf.write(b"g") == off2 + 50 + 7
    w.commit()
    want = b"a" * 100 + b"c" * 96 + b"d" * 4000 + b"b" * 10 + b"\0" * 20 + b"e" * 10 + b"\0" * 20
    want += b"f" * 7 + b"g"
    with ImageReader(tmp_path / "i") as r:
        r.verify_pages()
        assert r.read_pages("pages", 0, r.pages_size("pages")) == want


def test_reserve_at_end_keeps_size(tmp_path):
    w = ImageWriter(tmp_path / "i", sync=False)
    pf = w.page_file("pages")
    pf.write(b"x")
    assert pf.reserve(1000) == 1
    w.commit()
    with ImageReader(tmp_path / "i") as r:
        r.verify_pages()
        assert r.read_pages("pages", 0, 1001) == b"x" + b"\0" * 1000


# ---- permissions ----------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o777, 0o000])
def test_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        p = tmp_path / "img"
        make_image(str(p), compress="zstd" if umask == 0 else None)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o700
    names = os.listdir(p)
    assert "manifest.json" in names and "INCOMPLETE" not in names
    for name in names:
        st = os.stat(p / name)
        assert stat.S_ISREG(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600, name


def test_existing_empty_dir_is_used_and_made_private(tmp_path):
    p = tmp_path / "img"
    p.mkdir(mode=0o755)
    make_image(str(p))
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o700
    assert read_all(str(p))["tree"] == TREE


def test_missing_parents_are_created(tmp_path):
    p = tmp_path / "a" / "b" / "img"
    make_image(str(p))
    assert read_all(str(p))["pages"] == PAGES


# ---- refusals on writing ----------------------------------------------------------------------


def test_refuses_non_empty_dir(tmp_path):
    p = tmp_path / "img"
    p.mkdir()
    (p / "something").write_bytes(b"x")
    with pytest.raises(AlreadyExists) as ei:
        ImageWriter(p)
    assert one_line(ei.value) == f"image path {p} is not empty: an image path is used once"
    assert os.listdir(p) == ["something"]


def test_refuses_existing_image_and_file(tmp_path, img):
    with pytest.raises(AlreadyExists):
        ImageWriter(img)
    f = tmp_path / "file"
    f.write_bytes(b"")
    with pytest.raises(AlreadyExists):
        ImageWriter(f)


def test_refuses_bad_names_and_duplicates(tmp_path):
    w = ImageWriter(tmp_path / "i", sync=False)
    for bad in ["", "a/b", ".hidden", "manifest.json", "INCOMPLETE", "x" * 300]:
        with pytest.raises(ImageError):
            w.put_file(bad, b"")
    w.put_record("tree", TREE)
    with pytest.raises(ImageError, match="tree.rec is written twice"):
        w.put_record("tree", TREE)
    with pytest.raises(ImageError):
        w.put_file("tree.rec", b"")
    w.page_file("pages")
    with pytest.raises(ImageError):
        w.put_file("pages.img", b"")
    with pytest.raises(ImageError, match="cannot encode record"):
        w.put_record("bad", object())
    with pytest.raises(ImageError, match="cannot encode meta"):
        w.commit({"x": object()})
    w.commit()  # a refused commit (bad meta) can be retried
    with pytest.raises(ImageError, match="already committed"):
        w.put_record("more", TREE)
    with pytest.raises(ImageError):
        w.commit()
    with pytest.raises(ImageError):
        ImageWriter(tmp_path / "j", compress="lz4")


# ---- INCOMPLETE -------------------------------------------------------------------------------


def test_incomplete_while_writing_and_after_abort(tmp_path):
    p = tmp_path / "img"
    w = ImageWriter(p, sync=False)
    assert os.listdir(p) == ["INCOMPLETE"]
    w.put_record("tree", TREE)
    w.page_file("pages").write(PAGES)
    with pytest.raises(ImageError) as ei:
        ImageReader(p)
    assert one_line(ei.value) == f"image {p} is incomplete (checkpoint did not finish)"
    w.abort()
    assert "INCOMPLETE" in os.listdir(p)
    with pytest.raises(ImageError, match="is incomplete"):
        ImageReader(p)
    w.abort()  # idempotent
    with pytest.raises(ImageError, match="aborted"):
        w.put_record("x", TREE)


def test_abort_remove(tmp_path):
    p = tmp_path / "img"
    w = ImageWriter(p, sync=False)
    w.page_file("pages").write(b"x")
    w.abort(remove=True)
    assert not p.exists()


def test_exception_in_with_block_leaves_incomplete(tmp_path):
    p = tmp_path / "img"
    with pytest.raises(RuntimeError):
        with ImageWriter(p, sync=False) as w:
            w.put_record("tree", TREE)
            raise RuntimeError("engine failed")
    with pytest.raises(ImageError, match="is incomplete"):
        ImageReader(p)
    with ImageWriter(tmp_path / "ok", sync=False) as w:
        w.commit()
    ImageReader(tmp_path / "ok").close()


def test_crash_before_commit(tmp_path):
    """A writer that never commits (the process died): whatever it wrote is refused."""
    p = tmp_path / "img"
    w = ImageWriter(p, sync=False)
    w.put_record("tree", TREE)
    w.page_file("pages").write(PAGES)
    del w  # no commit, no abort
    with pytest.raises(ImageError, match="incomplete"):
        ImageReader(p)


def test_crash_after_manifest_before_marker_removal(tmp_path, img):
    """manifest.json and INCOMPLETE both present: still incomplete."""
    (open(os.path.join(img, "INCOMPLETE"), "w")).close()
    with pytest.raises(ImageError, match="incomplete"):
        ImageReader(img)


def test_missing_manifest(tmp_path, img):
    os.unlink(os.path.join(img, "manifest.json"))
    with pytest.raises(ImageError) as ei:
        ImageReader(img)
    assert one_line(ei.value).startswith(f"image {img} is incomplete (checkpoint did not finish)")


def test_missing_and_not_a_directory(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        ImageReader(tmp_path / "nope")
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(ImageError, match="not a directory"):
        ImageReader(tmp_path / "f")


# ---- damage -----------------------------------------------------------------------------------


def test_truncated_page_file(img):
    os.truncate(os.path.join(img, "pages.img"), len(PAGES) - 4096)
    with pytest.raises(ImageError) as ei:
        ImageReader(img)
    msg = one_line(ei.value)
    assert img in msg and "pages.img is truncated" in msg


def test_missing_and_grown_files(img):
    with open(os.path.join(img, "tree.rec"), "ab") as f:
        f.write(b"\0")
    with pytest.raises(ImageError, match="tree.rec is longer than recorded"):
        ImageReader(img)
    os.unlink(os.path.join(img, "tree.rec"))
    with pytest.raises(ImageError, match="tree.rec is missing"):
        ImageReader(img)


def test_symlink_instead_of_file(tmp_path, img):
    target = tmp_path / "elsewhere"
    target.write_bytes(BLOB)
    os.unlink(os.path.join(img, "rootfs.tar"))
    os.symlink(target, os.path.join(img, "rootfs.tar"))
    with pytest.raises(ImageError, match="not a regular file"):
        ImageReader(img)


def flip(path: str, pos: int) -> None:
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ 0x10]))


def test_flipped_byte_in_record(img):
    flip(os.path.join(img, "tree.rec"), 5)
    with ImageReader(img) as r:  # opening checks sizes only
        with pytest.raises(ImageError) as ei:
            r.record("tree", Tree)
        assert one_line(ei.value) == f"image {img}: tree.rec: checksum mismatch (damaged image)"
        assert r.record("tasks", list[Task]) == TREE.tasks
        with pytest.raises(ImageError):
            r.verify()


def test_flipped_byte_in_page_file(img):
    flip(os.path.join(img, "pages.img"), len(PAGES) - 1)
    with ImageReader(img) as r:
        with pytest.raises(ImageError) as ei:
            r.verify_pages()
        assert one_line(ei.value) == f"image {img}: pages.img: checksum mismatch (damaged image)"


def test_flipped_byte_in_blob(img):
    flip(os.path.join(img, "rootfs.tar"), 0)
    with ImageReader(img) as r, pytest.raises(ImageError, match="rootfs.tar: checksum mismatch"):
        r.file("rootfs.tar")


def test_record_of_the_wrong_type(img):
    with ImageReader(img) as r:
        with pytest.raises(ImageError) as ei:
            r.record("tree", list[Task])
        assert "tree.rec: invalid record" in one_line(ei.value)
        with pytest.raises(ImageError, match="has no record file nope.rec"):
            r.record("nope", Tree)
        with pytest.raises(ImageError):
            r.file("tree.rec")  # a record is not a blob
        with pytest.raises(ImageError):
            r.page_fd("tree")


def test_garbage_record_with_valid_checksum(img):
    """Damage the checksum cannot see (a bug in a writer): still one ImageError."""
    for data in [b"", b"\xc1", b"\x92\x01", b"[1, 2", b"\"\xff\"", b"[" * 100000, os.urandom(50),
                 codec.encode({"a": 1}), codec.encode({"schema_version": "1"})]:
        replace_file(img, "tree.rec", data)
        with ImageReader(img) as r, pytest.raises(ImageError, match="tree.rec: "):
            r.record("tree", Tree)


def test_read_beyond_end(img):
    with ImageReader(img) as r:
        for off, n in [(len(PAGES), 1), (len(PAGES) - 1, 2), (-1, 1), (0, -1)]:
            with pytest.raises(ImageError, match="beyond its end"):
                r.read_pages("pages", off, n)


# ---- foreign or incompatible ---------------------------------------------------------------------


def test_foreign_directory(tmp_path):
    p = tmp_path / "foreign"
    p.mkdir()
    for i in range(5):
        (p / f"file{i}").write_bytes(os.urandom(100))
    with pytest.raises(ImageError, match="incomplete"):
        ImageReader(p)
    (p / "manifest.json").write_bytes(os.urandom(100))
    with pytest.raises(ImageError, match="manifest.json is not valid JSON"):
        ImageReader(p)
    for doc in [b"[1,2]", b'{"format": "oci"}', b'"x"', b"{}"]:
        (p / "manifest.json").write_bytes(doc)
        with pytest.raises(ImageError, match="not a torpor image manifest"):
            ImageReader(p)


def test_newer_format_version(img):
    doc = load_manifest_doc(img)
    doc["format_version"] = FORMAT_VERSION + 1
    doc["new_thing"] = {"x": 1}
    write_manifest_doc(img, doc)
    with pytest.raises(ImageError) as ei:
        ImageReader(img)
    msg = one_line(ei.value)
    assert "newer than this torpor" in msg and img in msg


@pytest.mark.parametrize("version", [0, -1, "1", 1.5, None])
def test_unknown_format_version(img, version):
    doc = load_manifest_doc(img)
    doc["format_version"] = version
    write_manifest_doc(img, doc)
    with pytest.raises(ImageError, match="unknown format_version"):
        ImageReader(img)


def test_unknown_manifest_field_is_ignored(img):
    """A newer writer of the same format version may add fields: they are kept in the checksum
    and ignored by the reader."""
    doc = load_manifest_doc(img)
    doc["future"] = [1, 2, 3]
    doc["files"]["tree.rec"]["future"] = "x"
    write_manifest_doc(img, doc)
    assert read_all(img)["tree"] == TREE


def test_edited_manifest_is_refused(img):
    doc = load_manifest_doc(img)
    doc["created"] += 1
    write_manifest_doc(img, doc, reseal=False)
    with pytest.raises(ImageError, match="manifest.json: checksum mismatch"):
        ImageReader(img)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["files"].__setitem__("../etc/passwd", d["files"].pop("rootfs.tar")),
        lambda d: d["files"]["tree.rec"].__setitem__("kind", "weird"),
        lambda d: d["files"]["tree.rec"].__setitem__("size", "12"),
        lambda d: d["files"]["pages.img"].__setitem__("compression", "lz4"),
        lambda d: d.pop("kernel"),
        lambda d: d.__setitem__("files", []),
    ],
)
def test_bad_manifest_content(img, change):
    doc = load_manifest_doc(img)
    change(doc)
    write_manifest_doc(img, doc)
    with pytest.raises(ImageError):
        ImageReader(img)


@pytest.mark.parametrize("content", [b"[" * 100_000, b"{", b"\xff"])
def test_manifest_that_is_not_json(img, content):
    """Any bytes in manifest.json, nested past the parser's depth too: one ImageError."""
    with open(os.path.join(img, "manifest.json"), "wb") as f:
        f.write(content)
    with pytest.raises(ImageError, match="manifest.json is not valid JSON"):
        ImageReader(img)


def test_errors_are_torpor_errors(img):
    assert issubclass(ImageError, TorporError)


@pytest.mark.parametrize("compress", [None, "zstd"])
def test_write_error_is_one_line_and_image_stays_incomplete(tmp_path, monkeypatch, compress):
    import errno

    monkeypatch.setattr(store, "HASH_OFFLOAD", 1)

    def enospc(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    p = tmp_path / "img"
    w = ImageWriter(p, sync=False, compress=compress, chunk_size=4096)
    pf = w.page_file("pages")
    monkeypatch.setattr(store.os, "write", enospc)
    monkeypatch.setattr(store.os, "writev", lambda fd, bufs: enospc(fd, None))
    with pytest.raises(ImageError) as ei:
        pf.write(PAGES)
    monkeypatch.undo()
    assert one_line(ei.value) == (f"image {p}: pages.img: write failed: No space left on device")
    with pytest.raises(ImageError, match="an earlier write failed"):
        pf.write(b"x")
    with pytest.raises(ImageError):
        w.commit()
    with pytest.raises(ImageError, match="incomplete"):
        ImageReader(p)


def test_messages_stay_one_line_with_odd_paths(tmp_path):
    p = tmp_path / "a\nb"
    make_image(str(p))
    os.unlink(p / "manifest.json")
    with pytest.raises(ImageError) as ei:
        ImageReader(p)
    assert "a\\nb" in one_line(ei.value)
    with pytest.raises(AlreadyExists) as ei:
        ImageWriter(p)
    one_line(ei.value)
    w = ImageWriter(tmp_path / "c", sync=False)
    with pytest.raises(ImageError):
        w.put_file("x\ny", b"")


def test_kind_and_xfeatures_precedence(tmp_path):
    meta = {"kind": "container", "xfeatures": 5}
    m = ImageWriter(tmp_path / "a", sync=False).commit(meta)
    assert (m.kind, m.xfeatures) == ("container", 5)
    m = ImageWriter(tmp_path / "b", sync=False, kind="process-tree", xfeatures=1).commit(meta)
    assert (m.kind, m.xfeatures) == ("process-tree", 1)
    m = ImageWriter(tmp_path / "c", sync=False, kind="process-tree").commit(
        meta, kind="container", xfeatures=2
    )
    assert (m.kind, m.xfeatures) == ("container", 2)
    m = ImageWriter(tmp_path / "d", sync=False).commit()
    assert (m.kind, m.xfeatures, m.meta) == ("process-tree", 0, {})


def test_writer_process_killed_before_commit(tmp_path):
    """A real crash: the writing process dies by SIGKILL in the middle of its page writes."""
    import signal
    import subprocess
    import sys

    p = tmp_path / "img"
    code = (
        "import os, signal, sys\n"
        "from torpor.image.store import ImageWriter\n"
        "w = ImageWriter(sys.argv[1])\n"
        "w.put_record('tree', [1, 2, 3])\n"
        "pf = w.page_file('pages')\n"
        "pf.write(b'x' * (1 << 20))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(p)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": root},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL
    assert "pages.img" in os.listdir(p)
    with pytest.raises(ImageError, match="incomplete"):
        ImageReader(p)

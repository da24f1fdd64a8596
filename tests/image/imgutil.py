"""Helpers shared by the image tests: a sample image, a full reader, re-sealing a manifest."""

from __future__ import annotations

import json
import os

import xxhash

from torpor.image.codec import Record
from torpor.image.store import ImageReader, ImageWriter


class Task(Record, forbid_unknown_fields=True):
    pid: int
    name: str
    regs: bytes
    children: list[int] = []


class Tree(Record, forbid_unknown_fields=True):
    schema_version: int
    root: int
    tasks: list[Task]


TREE = Tree(1, 10, [Task(10, "init", b"\x01" * 27, [11]), Task(11, "worker", b"\x02" * 27)])
PAGES = bytes(range(256)) * 64 + os.urandom(8192) + b"\0" * 4096
BLOB = b"opaque tarball bytes" * 10


def make_image(path: str, compress: str | None = None, chunk_size: int = 4096) -> None:
    kw = {"compress": compress, "chunk_size": chunk_size} if compress else {}
    w = ImageWriter(path, sync=False, xfeatures=0xE7, **kw)
    w.put_record("tree", TREE)
    w.put_record("tasks", TREE.tasks)
    pf = w.page_file("pages")
    assert pf.write(PAGES[:5000]) == 0
    assert pf.write_vectored([PAGES[5000:9000], memoryview(PAGES)[9000:]]) == 5000
    w.put_file("rootfs.tar", BLOB)
    w.commit({"root_pid": 10})


def read_all(path: str) -> dict:
    """Everything a restore would read, after full verification."""
    with ImageReader(path) as r:
        r.verify_pages()
        return {
            "files": {k: (v.size, v.xxh3_128) for k, v in r.manifest.files.items()},
            "meta": r.manifest.meta,
            "created": r.manifest.created,
            "kind": r.manifest.kind,
            "xfeatures": r.manifest.xfeatures,
            "tree": r.record("tree", Tree),
            "tasks": r.record("tasks", list[Task]),
            "pages": r.read_pages("pages", 0, r.pages_size("pages")),
            "blob": r.file("rootfs.tar"),
        }


def load_manifest_doc(path: str) -> dict:
    with open(os.path.join(path, "manifest.json"), "rb") as f:
        return json.loads(f.read())


def write_manifest_doc(path: str, doc: dict, reseal: bool = True) -> None:
    """Write a manifest document back; with reseal, with a valid self-checksum."""
    from torpor.image.manifest import manifest_checksum

    if reseal:
        doc = {k: v for k, v in doc.items() if k != "checksum"}
        doc["checksum"] = manifest_checksum(doc)
    with open(os.path.join(path, "manifest.json"), "wb") as f:
        f.write(json.dumps(doc, separators=(",", ":")).encode())


def replace_file(path: str, filename: str, data: bytes) -> None:
    """Replace a file and fix its manifest entry (size, checksum): damage no checksum sees."""
    with open(os.path.join(path, filename), "wb") as f:
        f.write(data)
    doc = load_manifest_doc(path)
    doc["files"][filename]["size"] = len(data)
    doc["files"][filename]["xxh3_128"] = xxhash.xxh3_128_hexdigest(data)
    write_manifest_doc(path, doc)

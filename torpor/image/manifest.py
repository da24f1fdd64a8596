"""manifest.json of an image directory: the list of files, their checksums, and what the image needs.

The manifest is JSON so that a person (or `jq`) can read it without torpor. It carries its own
checksum (`checksum`: xxh3_128 of the compact JSON encoding of the manifest with `checksum` set to
""), so a damaged or hand-edited manifest is refused rather than silently believed.
"""

import xxhash

from torpor import jsonlite
from torpor.image import codec
from torpor.image.codec import Record

FORMAT = "torpor-image"
# 2: records are JSON (image/codec.py); 1 had msgpack records, no longer read
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
INCOMPLETE = "INCOMPLETE"

# kinds of file listed in a manifest
RECORD = "record"  # <name>.rec: one record, JSON (image/codec.py)
PAGES = "pages"  # <name>.img: page data (raw, or zstd frames addressed by <name>.idx)
INDEX = "index"  # <name>.idx: frame index of a compressed page file
BLOB = "blob"  # any other opaque file (put_file)


class FileEntry(Record, omit_defaults=True):
    """One file of the image, as stored on disk."""

    size: int  # bytes on disk
    xxh3_128: str  # hex digest of the bytes on disk
    kind: str  # record | pages | index | blob
    compression: str = ""  # "" (raw) or "zstd" for page files
    raw_size: int = -1  # page files: logical (uncompressed) size; -1 = same as size


class Manifest(Record, omit_defaults=True):
    format: str
    format_version: int
    torpor_version: str
    created: float  # unix time
    kernel: str  # uname release
    arch: str  # uname machine
    kind: str  # "process-tree" | "container"
    xfeatures: int  # XCR0 mask the image needs
    files: dict[str, FileEntry]
    meta: dict[str, object] = {}
    checksum: str = ""  # xxh3_128 of the compact encoding with checksum = ""


class FrameIndex(Record, array_like=True, forbid_unknown_fields=True):
    """<name>.idx: page file <name>.img is a sequence of independent zstd frames; frame i holds
    logical bytes [i * chunk_size, min((i + 1) * chunk_size, raw_size)) and occupies physical
    bytes [offsets[i], offsets[i + 1]) of the file."""

    version: int
    compression: str
    chunk_size: int
    raw_size: int
    offsets: list[int]


def manifest_checksum(doc: dict[str, object]) -> str:
    """xxh3_128 of the compact JSON encoding of a manifest document (as decoded from JSON, keys
    in file order) without its `checksum` key. Unknown keys count too, so a field added by a
    newer writer of the same format_version keeps the checksum valid."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return xxhash.xxh3_128_hexdigest(codec.encode(body))


def encode_manifest(m: Manifest) -> bytes:
    """Pretty JSON for the disk, sealed with its checksum (computed after one JSON round trip
    so that meta values JSON cannot keep exactly, such as tuples or bytes, hash the same as
    what a reader decodes)."""
    doc = codec.to_builtins(m)
    doc.pop("checksum", None)
    doc["checksum"] = manifest_checksum(doc)
    return jsonlite.dumps(doc, indent=2).encode() + b"\n"

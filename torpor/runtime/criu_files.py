"""The few CRIU files the clients read, written in CRIU's own format.

Podman (go-criu's `stats` package) reads `stats-dump` / `stats-restore` in the work path for
`--print-stats` and `--export`, and stat()s `inventory.img` in the image path before restore.
CRIU's image layout (criu/include/magic.h, images/*.proto; go-criu magic/types.go):

    stats-*        u32 IMG_SERVICE_MAGIC, u32 STATS_MAGIC, u32 size, StatsEntry (protobuf)
    inventory.img  u32 INVENTORY_MAGIC, u32 size, InventoryEntry (protobuf; no common magic)

All integers little-endian. The messages are proto2 with required fields, which Go's
proto.Unmarshal checks, so every required field is written (zero when torpor has no figure).
"""

from __future__ import annotations

import struct

IMG_SERVICE_MAGIC = 0x55105940
STATS_MAGIC = 0x57093306
INVENTORY_MAGIC = 0x58313116
CRTOOLS_IMAGES_V1_1 = 2

# field numbers (images/stats.proto)
_DUMP_FIELDS = {  # name: (number, required)
    "freezing_time": (1, True), "frozen_time": (2, True), "memdump_time": (3, True),
    "memwrite_time": (4, True), "pages_scanned": (5, True), "pages_skipped_parent": (6, True),
    "pages_written": (7, True), "pages_lazy": (9, True),
}
_RESTORE_FIELDS = {
    "pages_compared": (1, True), "pages_skipped_cow": (2, True), "forking_time": (3, True),
    "restore_time": (4, True), "pages_restored": (5, False),
}


def _varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("negative varint")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_bytes(number: int, value: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(value)) + value


def _message(fields: dict[str, tuple[int, bool]], values: dict[str, int]) -> bytes:
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    out = b""
    for name, (number, required) in sorted(fields.items(), key=lambda kv: kv[1][0]):
        if name in values or required:
            out += _field_varint(number, int(values.get(name, 0)))
    return out


def _service_file(payload: bytes) -> bytes:
    return struct.pack("<III", IMG_SERVICE_MAGIC, STATS_MAGIC, len(payload)) + payload


def stats_dump(**values: int) -> bytes:
    """A `stats-dump` file: StatsEntry{dump: DumpStatsEntry{values}} (times in microseconds)."""
    return _service_file(_field_bytes(1, _message(_DUMP_FIELDS, values)))


def stats_restore(**values: int) -> bytes:
    """A `stats-restore` file: StatsEntry{restore: RestoreStatsEntry{values}}."""
    return _service_file(_field_bytes(2, _message(_RESTORE_FIELDS, values)))


def inventory() -> bytes:
    """An `inventory.img`: InventoryEntry{img_version: 2 (CRTOOLS_IMAGES_V1_1)}. torpor's own
    image is manifest.json; this only tells CRIU-minded tools what the directory is."""
    payload = _field_varint(1, CRTOOLS_IMAGES_V1_1)
    return struct.pack("<II", INVENTORY_MAGIC, len(payload)) + payload


def decode_varints(payload: bytes) -> dict[int, int | bytes]:
    """Minimal decoder (varint and length-delimited fields) for tests and `image show`."""
    out: dict[int, int | bytes] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = n = 0
        while True:
            b = payload[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(payload):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out[number] = varint()
        elif wire == 2:
            size = varint()
            out[number] = payload[i:i + size]
            i += size
        else:
            raise ValueError(f"wire type {wire} not supported")
    return out


def read_stats(data: bytes) -> dict[str, dict[str, int]]:
    """Parse a stats-dump/stats-restore file as go-criu does: {"dump"|"restore": {field: n}}."""
    magic1, magic2, size = struct.unpack_from("<III", data)
    if magic1 != IMG_SERVICE_MAGIC or magic2 != STATS_MAGIC:
        raise ValueError("not a CRIU stats file")
    entry = decode_varints(data[12:12 + size])
    out: dict[str, dict[str, int]] = {}
    for number, kind, fields in ((1, "dump", _DUMP_FIELDS), (2, "restore", _RESTORE_FIELDS)):
        if number in entry:
            raw = decode_varints(entry[number])  # type: ignore[arg-type]
            names = {num: name for name, (num, _) in fields.items()}
            out[kind] = {names.get(k, str(k)): v for k, v in raw.items()}  # type: ignore[misc]
    return out


def _log_line(path: str, text: str) -> None:
    import time

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(path, "a") as f:
        for line in text.splitlines() or [""]:
            f.write(f"({stamp}) {line}\n")


def write_dump_work(work_path: str, res=None, error: str | None = None,
                    image_path: str | None = None) -> None:
    """`<work>/dump.log` (what was done, or the error) and, on success, `<work>/stats-dump`.
    Best effort: a work path that cannot be written never fails the checkpoint."""
    import os

    try:
        os.makedirs(work_path, exist_ok=True)
        log = os.path.join(work_path, "dump.log")
        if error is not None:
            _log_line(log, f"Error: checkpoint failed: {error}")
            return
        frozen = int(res.frozen_seconds * 1e6)
        total = int(res.total_seconds * 1e6)
        pages = res.pages_bytes // 4096
        _log_line(log, f"torpor checkpoint of pid {res.pid} into {image_path or res.image_path}: "
                       f"{res.processes} processes, {res.threads} threads, "
                       f"{res.pages_bytes} bytes of memory, frozen {frozen} us, total {total} us\n"
                       "Dumping finished successfully")
        data = stats_dump(frozen_time=frozen, memdump_time=frozen,
                          memwrite_time=max(total - frozen, 0), pages_scanned=pages,
                          pages_written=pages)
        with open(os.path.join(work_path, "stats-dump"), "wb") as f:
            f.write(data)
    except (OSError, AttributeError, TypeError, ValueError):
        pass


def write_restore_work(work_path: str, seconds: float = 0.0, pid: int | None = None,
                       error: str | None = None) -> None:
    """`<work>/restore.log` and, on success, `<work>/stats-restore` (restore_time in us)."""
    import os

    try:
        os.makedirs(work_path, exist_ok=True)
        log = os.path.join(work_path, "restore.log")
        if error is not None:
            _log_line(log, f"Error: restore failed: {error}")
            return
        _log_line(log, f"torpor restore: init pid {pid}, {int(seconds * 1e6)} us\n"
                       "Restore finished successfully")
        with open(os.path.join(work_path, "stats-restore"), "wb") as f:
            f.write(stats_restore(restore_time=int(seconds * 1e6)))
    except (OSError, ValueError):
        pass

"""Image directories: atomic, checksummed, versioned.

CONTRACT (implemented by the image owner; the engine codes against exactly this):

    w = ImageWriter(path)                # path must not exist or be an empty dir; creates it 0700,
                                         # writes marker file "INCOMPLETE" first
    w.put_record("tree", record)         # codec Record -> <name>.rec (JSON), 0600, written to a
                                         # temp name then renamed; checksum recorded
    pf = w.page_file("pages")            # PageFile for raw page data, file <name>.img, 0600
    off = pf.write(buf)                  # append bytes-like; returns the file offset it landed at
    off = pf.write_vectored([...])       # writev of many buffers; returns offset of the first
    pf.fd                                # raw fd (for os.pwritev / copy_file_range by the engine)
    pf.reserve(n) -> off                 # reserve n bytes (for filling later by pwrite at off)
    w.put_file("name", bytes)            # any other opaque file (e.g. tmpfs tarball), 0600
    w.commit(meta)                       # fsync files, compute checksums of pages files (xxh3_128,
                                         # streaming while written where possible), write
                                         # manifest.json atomically LAST, remove INCOMPLETE, fsync dir
    w.abort()                            # leaves the directory marked incomplete (or removes it
                                         # when `remove=True`), never a half image without marker

    r = ImageReader(path)                # refuses (ImageError, one line): missing dir, no manifest,
                                         # INCOMPLETE marker, unknown format/version, missing/short
                                         # files, record checksum mismatch
    r.manifest                           # Manifest struct
    r.record("tree", TreeImage)          # decoded, type-checked record (ImageError on mismatch)
    r.verify_pages()                     # checksum every page file (ImageError on mismatch)
    r.page_fd("pages")                   # read-only fd of a page file (caller mmaps or preads)
    r.file("name") -> bytes

Manifest (manifest.json, human readable JSON): format "torpor-image", format_version,
torpor_version, created (unix time), kernel (uname release), arch, kind ("process-tree" or
"container"), xfeatures (int XCR0 mask the image needs), files {name: {size, xxh3_128}},
meta (free-form dict for upper layers: container config, root pid, parent image...).

ADDITIONS (compatible with the contract above):

    ImageWriter(path, *, kind=None, xfeatures=None, compress=None, compress_level=1,
                chunk_size=4 MiB, sync=True)
        compress="zstd": page files are stored as independent zstd frames of `chunk_size` logical
        bytes each plus an index <name>.idx; they are append-only (pf.fd / pf.reserve /
        pf.pwrite raise ImageError). sync=False skips every fsync (tests, benchmarks, tmpfs).
    w.commit(meta, *, kind=None, xfeatures=None) -> Manifest
                                         # kind/xfeatures: argument, else ImageWriter(...), else
                                         # meta["kind"] / meta["xfeatures"]; a commit refused for
                                         # unencodable meta can be retried
    w.abort(remove=False); ImageWriter is a context manager: an exception inside `with` aborts,
        a clean exit without commit() aborts too (the image stays marked INCOMPLETE).
    pf.pwrite(buf, off)                  # positional write into a reserved region (raw files)
    pf.size (logical bytes so far), pf.name, pf.filename, pf.compressed
    r.read_pages(name, offset, length) -> bytes   # raw and compressed page files
    r.pages_size(name) -> int            # logical size of a page file
    r.page_files() -> list[str]; r.records() -> list[str]
    r.verify() (= every record/file/index checksum + verify_pages); r.close(); context manager
    r.page_fd() fds belong to the reader (do not close them; valid until r.close()).
"""

from __future__ import annotations

import _thread  # threading would import functools and collections (~3 ms)
import mmap
import os
import stat
import time

import xxhash

from torpor.errors import AlreadyExists, ImageError
from torpor.image import codec
from torpor.image.manifest import (
    BLOB,
    FORMAT,
    FORMAT_VERSION,
    INCOMPLETE,
    INDEX,
    MANIFEST,
    PAGES,
    RECORD,
    FileEntry,
    FrameIndex,
    Manifest,
    encode_manifest,
    manifest_checksum,
)

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any, TypeVar

    from torpor.image.workers import Workers

    T = TypeVar("T")

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ImageReader",
    "ImageWriter",
    "Manifest",
    "PageFile",
]

DIR_MODE = 0o700
FILE_MODE = 0o600
CHUNK_SIZE = 4 << 20  # logical bytes per zstd frame
HASH_OFFLOAD = 4 << 20  # raw writes at least this large hash on a worker thread during write(2)
COMPRESSIONS = ("zstd",)
IOV_MAX = 1024
READ_CHUNK = 8 << 20
MAX_MANIFEST = 64 << 20
_RESERVED = (MANIFEST, INCOMPLETE)


def _version() -> str:
    try:
        from torpor import __version__
    except ImportError:  # pragma: no cover
        return "unknown"
    return __version__


def _one_line(msg: str) -> str:
    """Messages are one line: control characters (from paths, names or decoder messages quoting
    damaged data) are shown escaped."""
    if msg.isprintable():
        return msg
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in msg)


def _e(msg: str) -> ImageError:
    return ImageError(_one_line(msg))


def _check_name(name: str, what: str = "name") -> None:
    if (
        not isinstance(name, str)
        or not name
        or "/" in name
        or not name.isprintable()
        or name.startswith(".")
        or name in _RESERVED
        or len(name.encode()) > 200
    ):
        raise _e(f"invalid image file {what} {name!r}")


def _hexdigest_view(view: memoryview) -> str:
    h = xxhash.xxh3_128()
    for off in range(0, len(view), READ_CHUNK):
        h.update(view[off : off + READ_CHUNK])
    return h.hexdigest()


def _hexdigest_fd(fd: int, size: int) -> str:
    """xxh3_128 of the first `size` bytes of fd, read back through the page cache: hashed in
    place through a read-only mapping (no copy: 3-5x faster than reading it into a buffer,
    and a restore that maps the file next finds the pages already mapped), or read with
    preadv where the file cannot be mapped."""
    if size > 0:
        if os.fstat(fd).st_size < size:
            raise EOFError(os.fstat(fd).st_size)  # a mapping would SIGBUS past the end
        try:
            m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        except OSError:
            m = None
        if m is not None:
            with memoryview(m) as mv:
                digest = _hexdigest_view(mv)
            m.close()
            return digest
    h = xxhash.xxh3_128()
    buf = bytearray(min(READ_CHUNK, max(size, 1)))
    mv = memoryview(buf)
    off = 0
    while off < size:
        n = os.preadv(fd, [mv[: min(len(buf), size - off)]], off)
        if n <= 0:
            raise EOFError(off)
        h.update(mv[:n])
        off += n
    return h.hexdigest()


def _write_all(fd: int, mv: memoryview) -> None:
    while len(mv):
        n = os.write(fd, mv)
        mv = mv[n:]


def _pwrite_all(fd: int, mv: memoryview, off: int) -> None:
    while len(mv):
        n = os.pwrite(fd, mv, off)
        mv = mv[n:]
        off += n


def _writev_all(fd: int, views: list[memoryview]) -> None:
    """os.writev of every buffer, in batches of IOV_MAX, resuming after short writes."""
    i = 0
    while i < len(views):
        batch = views[i : i + IOV_MAX]
        n = os.writev(fd, batch)
        # skip the fully written buffers, then finish a partly written one with plain writes
        for v in batch:
            if n >= len(v):
                n -= len(v)
                i += 1
            else:
                _write_all(fd, v[n:])
                i += 1
                break


def _bytes_view(buf: Any) -> memoryview:
    mv = memoryview(buf)
    if mv.format != "B" or mv.ndim != 1 or not mv.c_contiguous:
        mv = mv.cast("B") if mv.c_contiguous else memoryview(mv.tobytes())
    return mv


class PageFile:
    """An append-only file of page data, <name>.img, created by ImageWriter.page_file()."""

    def __init__(
        self, writer: ImageWriter, name: str, compress: str | None, level: int, chunk_size: int
    ):
        self._w = writer
        self.name = name
        self.filename = name + ".img"
        self.compressed = compress is not None
        self.compression = compress or ""
        self._fd = writer._create(self.filename)
        self._pos = 0  # raw: next append offset; compressed: physical size
        self._hash: Any = xxhash.xxh3_128()
        self._streaming = True  # _hash covers bytes [0, _pos) exactly
        self._touched = False  # the engine got the fd: resync the append offset before writing
        self._broken: BaseException | None = None
        self._closed = False
        # compression state
        self._level = level
        self._chunk = chunk_size
        self._stage = bytearray()
        self._raw_size = 0
        self._offsets: list[int] = [0]
        self._tls = _thread._local()
        # raw appends and reservations may come from two threads (the engine's copy-on-write
        # copier reserves while the dump appends)
        self._lock = _thread.allocate_lock()

    # ---- the contract ----------------------------------------------------------------------

    @property
    def fd(self) -> int:
        """The raw fd of the page file. Writes through it at reserved offsets are allowed; the
        checksum is then computed at commit by reading the file back."""
        self._check_open()
        if self.compressed:
            raise _e(
                f"image {self._w.path}: {self.filename} is compressed ({self.compression}): "
                "append-only, no raw fd"
            )
        self._touched = True
        self._streaming = False
        return self._fd

    def write(self, buf: Any) -> int:
        """Append `buf`; returns the (logical) offset it landed at."""
        self._check_open()
        mv = _bytes_view(buf)
        if self.compressed:
            return self._zwrite([mv])
        with self._lock:
            return self._write_raw(mv)

    def _write_raw(self, mv: memoryview) -> int:
        off = self._append_offset()
        if not len(mv):
            return off
        hashing = None
        if self._streaming and len(mv) >= HASH_OFFLOAD:
            # overlap: xxh3 holds the GIL on a worker thread while this one sits in write(2)
            hashing = self._w._pool().submit(self._hash.update, mv)
        try:
            _write_all(self._fd, mv)
        except BaseException as e:
            if hashing is not None:
                hashing.result()
            self._fail(e)
            raise
        if hashing is not None:
            hashing.result()  # before returning: the caller may reuse its buffer
        elif self._streaming:
            self._hash.update(mv)
        self._pos = off + len(mv)
        return off

    def write_vectored(self, bufs: Iterable[Any]) -> int:
        """Append every buffer in order with writev; returns the offset of the first."""
        self._check_open()
        views = [v for v in (_bytes_view(b) for b in bufs) if len(v)]
        if self.compressed:
            return self._zwrite(views)
        with self._lock:
            return self._writev_raw(views)

    def _writev_raw(self, views: list) -> int:
        off = self._append_offset()
        if not views:
            return off
        try:
            _writev_all(self._fd, views)
        except BaseException as e:
            self._fail(e)
            raise
        total = 0
        for v in views:
            if self._streaming:
                self._hash.update(v)
            total += len(v)
        self._pos = off + total
        return off

    def reserve(self, n: int) -> int:
        """Reserve n bytes at the end (a hole until filled by pwrite); returns their offset."""
        self._check_open()
        self._no_random_access("reserve")
        if n < 0:
            raise ValueError("reserve: negative size")
        with self._lock:
            return self._reserve(n)

    def _reserve(self, n: int) -> int:
        off = self._append_offset()
        self._streaming = False
        end = off + n
        try:
            if os.fstat(self._fd).st_size < end:
                os.ftruncate(self._fd, end)
            os.lseek(self._fd, end, os.SEEK_SET)
        except OSError as e:
            self._fail(e)
            raise _e(f"image {self._w.path}: {self.filename}: {e.strerror}") from e
        self._pos = end
        return off

    # ---- additions ---------------------------------------------------------------------------

    def pwrite(self, buf: Any, offset: int) -> None:
        """Write `buf` at `offset` (inside a region returned by reserve())."""
        self._check_open()
        self._no_random_access("pwrite")
        self._streaming = False
        try:
            _pwrite_all(self._fd, _bytes_view(buf), offset)
        except BaseException as e:
            self._fail(e)
            raise

    @property
    def size(self) -> int:
        """Logical size written so far."""
        if self.compressed:
            return self._raw_size
        if self._touched and not self._closed:
            return max(self._pos, os.fstat(self._fd).st_size)
        return self._pos

    # ---- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise _e(f"image {self._w.path}: {self.filename} is closed (image committed)")
        if self._broken is not None:
            raise _e(
                f"image {self._w.path}: {self.filename}: an earlier write failed: {self._broken}"
            )

    def _fail(self, e: BaseException) -> None:
        """Mark the file broken (commit() will refuse it); OSError becomes a one-line ImageError."""
        self._broken = e
        self._streaming = False
        if isinstance(e, OSError):
            raise _e(
                f"image {self._w.path}: {self.filename}: write failed: {e.strerror or e}"
            ) from e

    def _no_random_access(self, what: str) -> None:
        if self.compressed:
            raise _e(
                f"image {self._w.path}: {self.filename} is compressed ({self.compression}): "
                f"append-only, {what} is not possible"
            )

    def _append_offset(self) -> int:
        if self._touched:
            # the engine may have appended through the fd (copy_file_range, os.write)
            pos = os.lseek(self._fd, 0, os.SEEK_CUR)
            if pos != self._pos:
                self._streaming = False
                self._pos = pos
        return self._pos

    # compressed page files: the logical stream is cut into chunks of exactly _chunk bytes (the
    # last may be shorter), each compressed into one independent zstd frame.

    def _compressor(self) -> Any:
        c = getattr(self._tls, "c", None)
        if c is None:
            import zstandard

            c = zstandard.ZstdCompressor(
                level=self._level, write_checksum=True, write_content_size=True
            )
            self._tls.c = c
        return c

    def _compress(self, data: Any) -> bytes:
        return self._compressor().compress(data)

    def _zwrite(self, views: Sequence[memoryview]) -> int:
        off = self._raw_size
        chunks: list[Any] = []
        for mv in views:
            pos = 0
            if self._stage:
                take = min(self._chunk - len(self._stage), len(mv))
                self._stage += mv[:take]
                pos = take
                if len(self._stage) == self._chunk:
                    chunks.append(self._stage)
                    self._stage = bytearray()
            while len(mv) - pos >= self._chunk:
                chunks.append(mv[pos : pos + self._chunk])
                pos += self._chunk
            if pos < len(mv):
                self._stage += mv[pos:]
        try:
            self._emit(chunks)
        except BaseException as e:
            self._fail(e)
            raise
        self._raw_size = off + sum(len(v) for v in views)
        return off

    def _emit(self, chunks: list[Any]) -> None:
        if not chunks:
            return
        if len(chunks) == 1:
            frames: Iterable[bytes] = [self._compress(chunks[0])]
        else:
            pool = self._w._pool()
            frames = (f.result() for f in [pool.submit(self._compress, c) for c in chunks])
        for frame in frames:
            _write_all(self._fd, memoryview(frame))
            self._hash.update(frame)
            self._pos += len(frame)
            self._offsets.append(self._pos)

    def _finish(self, sync: bool) -> FileEntry:
        """Flush, fsync and close; return the manifest entry (and write the index if any)."""
        self._check_open()
        try:
            if self.compressed and self._stage:
                stage, self._stage = self._stage, bytearray()
                self._emit([stage])
            size = os.fstat(self._fd).st_size
            if self.compressed or self._streaming and size == self._pos:
                digest = self._hash.hexdigest()
            else:
                digest = _hexdigest_fd(self._fd, size)
            if sync:
                os.fsync(self._fd)
        except OSError as e:
            self._fail(e)
            raise _e(f"image {self._w.path}: {self.filename}: {e.strerror or e}") from e
        finally:
            os.close(self._fd)
            self._closed = True
        if self.compressed:
            return FileEntry(size, digest, PAGES, self.compression, self._raw_size)
        return FileEntry(size, digest, PAGES)

    def _index(self) -> FrameIndex:
        return FrameIndex(1, self.compression, self._chunk, self._raw_size, self._offsets)


class ImageWriter:
    """Writes one image directory. See the module docstring."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        kind: str | None = None,
        xfeatures: int | None = None,
        compress: str | None = None,
        compress_level: int = 1,
        chunk_size: int = CHUNK_SIZE,
        sync: bool = True,
    ):
        self.path = os.fspath(path)
        self.kind = kind
        self.xfeatures = xfeatures
        if compress not in (None, "", *COMPRESSIONS):
            raise _e(f"unknown compression {compress!r} (known: {', '.join(COMPRESSIONS)})")
        self.compress = compress or None
        if self.compress:
            import zstandard  # noqa: F401  (fail now, not in the middle of a checkpoint)
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self._level = compress_level
        self._chunk = chunk_size
        self._sync = sync
        self._files: dict[str, FileEntry] = {}
        self._pages: dict[str, PageFile] = {}
        self._executor: Workers | None = None
        self._done = False
        self._dfd = -1
        self._open_dir()

    # ---- the contract ------------------------------------------------------------------------

    def put_record(self, name: str, struct: Any) -> None:
        _check_name(name, "record name")
        self._check_open()
        try:
            data = codec.encode(struct)
        except (TypeError, ValueError) as e:
            raise _e(f"image {self.path}: {name}.rec: cannot encode record: {e}") from e
        self._put(name + ".rec", data, RECORD)

    def page_file(self, name: str) -> PageFile:
        """The page file <name>.img (created on first use; the same object afterwards)."""
        _check_name(name, "page file name")
        self._check_open()
        pf = self._pages.get(name)
        if pf is None:
            filename = name + ".img"
            self._claim(filename)
            if self.compress:
                self._claim(name + ".idx")
            pf = PageFile(self, name, self.compress, self._level, self._chunk)
            self._pages[name] = pf
        return pf

    def put_file(self, name: str, data: Any) -> None:
        _check_name(name, "file name")
        self._check_open()
        self._put(name, data, BLOB)

    def commit(
        self,
        meta: dict[str, Any] | None = None,
        *,
        kind: str | None = None,
        xfeatures: int | None = None,
    ) -> Manifest:
        self._check_open()
        meta = dict(meta or {})
        try:
            codec.encode(meta)
        except (TypeError, ValueError) as e:
            raise _e(f"image {self.path}: {MANIFEST}: cannot encode meta: {e}") from e
        try:
            for name, pf in self._pages.items():
                self._files[pf.filename] = pf._finish(self._sync)
                if pf.compressed:
                    idx = codec.encode(pf._index())
                    self._put(name + ".idx", idx, INDEX, claimed=True)
            if self._executor is not None:
                self._executor.shutdown()
                self._executor = None
            if self._sync:
                for fname in self._files:
                    if self._files[fname].kind != PAGES:
                        self._fsync_name(fname)
            if kind is None:
                kind = self.kind
            if kind is None:
                mk = meta.get("kind")
                kind = mk if isinstance(mk, str) else "process-tree"
            if xfeatures is None:
                xfeatures = self.xfeatures
            if xfeatures is None:
                xf = meta.get("xfeatures", 0)
                xfeatures = xf if isinstance(xf, int) else 0
            uname = os.uname()
            m = Manifest(
                format=FORMAT,
                format_version=FORMAT_VERSION,
                torpor_version=_version(),
                created=time.time(),
                kernel=uname.release,
                arch=uname.machine,
                kind=kind,
                xfeatures=int(xfeatures),
                files=dict(sorted(self._files.items())),
                meta=meta,
            )
            try:
                data = encode_manifest(m)
            except (TypeError, ValueError) as e:
                raise _e(f"image {self.path}: {MANIFEST}: cannot encode meta: {e}") from e
            self._write_atomic(MANIFEST, data)
            if self._sync:
                os.fsync(self._dfd)
            os.unlink(INCOMPLETE, dir_fd=self._dfd)
            if self._sync:
                os.fsync(self._dfd)
        except OSError as e:
            self._abandon()
            raise _e(f"image {self.path}: commit failed: {e.strerror or e}") from e
        except BaseException:
            self._abandon()
            raise
        self._done = True
        self._close()
        return codec.decode(data, Manifest)

    def abort(self, remove: bool = False) -> None:
        """Give up: the directory stays marked INCOMPLETE, or is removed when remove=True."""
        if self._done:
            return
        self._abandon()
        if remove:
            import shutil

            shutil.rmtree(self.path, ignore_errors=True)

    # ---- context manager ---------------------------------------------------------------------

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._done:
            self.abort()

    def __del__(self) -> None:
        try:
            if not self._done:
                self._abandon()
        except Exception:  # pragma: no cover
            pass

    # ---- internals ---------------------------------------------------------------------------

    def _used(self) -> AlreadyExists:
        return AlreadyExists(
            _one_line(f"image path {self.path} is not empty: an image path is used once")
        )

    def _open_dir(self) -> None:
        path = self.path
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise _e(f"image path {path}: {e.strerror}") from e
        if st is not None:
            if not stat.S_ISDIR(st.st_mode) or os.listdir(path):
                raise self._used()
        else:
            parent = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(parent, exist_ok=True)
                os.mkdir(path, DIR_MODE)
            except FileExistsError as e:
                raise self._used() from e
            except OSError as e:
                raise _e(f"image path {path}: cannot create: {e.strerror}") from e
        try:
            self._dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            os.fchmod(self._dfd, DIR_MODE)
        except OSError as e:
            raise _e(f"image path {path}: {e.strerror}") from e
        try:
            fd = self._create(INCOMPLETE)
        except FileExistsError as e:
            self._close()
            raise self._used() from e
        try:
            _write_all(fd, memoryview(b"torpor: checkpoint in progress (pid %d)\n" % os.getpid()))
        finally:
            os.close(fd)
        if self._sync:
            os.fsync(self._dfd)

    def _create(self, name: str) -> int:
        """A new file in the image directory, 0600 whatever the umask. FileExistsError if taken."""
        try:
            fd = os.open(
                name,
                os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                FILE_MODE,
                dir_fd=self._dfd,
            )
        except FileExistsError:
            raise
        except OSError as e:
            raise _e(f"image {self.path}: {name}: cannot create: {e.strerror}") from e
        try:
            os.fchmod(fd, FILE_MODE)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _check_open(self) -> None:
        if self._done:
            raise _e(f"image {self.path} is already committed")
        if self._dfd < 0:
            raise _e(f"image {self.path} was aborted")

    def _claim(self, filename: str) -> None:
        if filename in self._files or any(
            filename in (pf.filename, pf.name + ".idx") for pf in self._pages.values()
        ):
            raise _e(f"image {self.path}: {filename} is written twice")

    def _put(self, filename: str, data: Any, kind: str, claimed: bool = False) -> None:
        if not claimed:
            self._claim(filename)
        mv = _bytes_view(data)
        self._write_atomic(filename, mv)
        self._files[filename] = FileEntry(len(mv), xxhash.xxh3_128_hexdigest(mv), kind)

    def _write_atomic(self, filename: str, data: Any) -> None:
        """Write to .<filename>.tmp, then rename into place (fsync before the rename when
        the file is the manifest: it must never be visible before its content is durable)."""
        tmp = "." + filename + ".tmp"
        try:
            try:
                os.unlink(tmp, dir_fd=self._dfd)
            except FileNotFoundError:
                pass
            fd = self._create(tmp)
            try:
                _write_all(fd, _bytes_view(data))
                if self._sync and filename == MANIFEST:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, filename, src_dir_fd=self._dfd, dst_dir_fd=self._dfd)
        except OSError as e:
            if isinstance(e, FileExistsError):
                raise _e(f"image {self.path}: {filename} exists already") from e
            raise _e(f"image {self.path}: {filename}: {e.strerror or e}") from e

    def _fsync_name(self, filename: str) -> None:
        fd = os.open(filename, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=self._dfd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _pool(self) -> Workers:
        from torpor.image.workers import Workers

        if self._executor is None:
            self._executor = Workers(max(1, len(os.sched_getaffinity(0))), "torpor-image")
        return self._executor

    def _abandon(self) -> None:
        """Close everything; INCOMPLETE stays (it is only removed by a successful commit)."""
        for pf in self._pages.values():
            if not pf._closed:
                pf._closed = True
                try:
                    os.close(pf._fd)
                except OSError:
                    pass
        self._close()

    def _close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._dfd >= 0:
            os.close(self._dfd)
            self._dfd = -1


class PageCheck:
    """verify_pages of images on a thread of its own: xxh3 releases the GIL, so it runs on
    another CPU while the caller goes on (_thread, not threading: ~3 ms of imports). Images
    are open readers, or paths opened (and closed) on that thread; on_error(err) runs there
    when one is damaged (an ImageError). wait() raises what was found; join() only waits."""

    def __init__(self, images: list, mapped: dict[str, memoryview] | None = None,
                 on_error: Callable[[BaseException], object] | None = None) -> None:
        self.error: BaseException | None = None
        self._done = _thread.allocate_lock()
        self._done.acquire()
        _thread.start_new_thread(self._run, (images, mapped, on_error))

    def _run(self, images: list, mapped: dict[str, memoryview] | None,
             on_error: Callable[[BaseException], object] | None) -> None:
        try:
            for image in images:
                if isinstance(image, ImageReader):
                    image.verify_pages(mapped)
                else:
                    with ImageReader(image) as reader:
                        reader.verify_pages(mapped)
        except BaseException as err:  # noqa: BLE001 - raised by wait() in the caller
            self.error = err
            if on_error is not None and isinstance(err, ImageError):
                on_error(err)
        finally:
            self._done.release()

    def join(self) -> None:
        with self._done:
            pass

    def wait(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


class ImageReader:
    """Reads one committed image directory. See the module docstring."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self._dfd = -1
        self._fds: dict[str, int] = {}
        self._indexes: dict[str, FrameIndex] = {}
        self._cache: tuple[str, int, bytes] | None = None
        self._dctx: Any = None
        try:
            self._dfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise _e(f"image {self.path} does not exist") from e
        except NotADirectoryError as e:
            raise _e(f"image {self.path} is not a directory") from e
        except OSError as e:
            raise _e(f"image {self.path}: {e.strerror}") from e
        try:
            self.manifest: Manifest = self._load()
        except BaseException:
            self.close()
            raise

    # ---- the contract ------------------------------------------------------------------------

    def record(self, name: str, type: type[T]) -> T:
        filename = name + ".rec"
        data = self._read_verified(filename, RECORD)
        try:
            return codec.decode(data, type)
        except codec.ValidationError as e:
            raise _e(f"image {self.path}: {filename}: invalid record: {e}") from e
        except codec.DecodeError as e:
            raise _e(f"image {self.path}: {filename}: cannot decode: {e}") from e

    def verify_pages(self, mapped: dict[str, memoryview] | None = None) -> None:
        """Check the checksum of every page file. mapped: raw page files (by name) the caller
        has mapped already, hashed through that mapping (the pages it faults in serve the
        caller too, rather than being faulted into a second mapping)."""
        for filename, entry in self.manifest.files.items():
            if entry.kind == PAGES:
                view = (mapped or {}).get(filename[: -len(".img")])
                if view is not None and not entry.compression and len(view) == entry.size:
                    digest = _hexdigest_view(view)
                    if digest != entry.xxh3_128:
                        raise _e(f"image {self.path}: {filename}: checksum mismatch (damaged image)")
                    continue
                fd = self._page_fd_raw(filename)
                try:
                    digest = _hexdigest_fd(fd, entry.size)
                except EOFError as e:
                    raise _e(f"image {self.path}: {filename} is truncated (damaged image)") from e
                except OSError as e:
                    raise _e(f"image {self.path}: {filename}: {e.strerror}") from e
                if digest != entry.xxh3_128:
                    raise _e(f"image {self.path}: {filename}: checksum mismatch (damaged image)")

    def page_fd(self, name: str) -> int:
        filename = name + ".img"
        entry = self._entry(filename, PAGES)
        if entry.compression:
            raise _e(
                f"image {self.path}: {filename} is compressed ({entry.compression}): "
                "no raw fd, use read_pages"
            )
        return self._page_fd_raw(filename)

    def file(self, name: str) -> bytes:
        return self._read_verified(name, BLOB)

    # ---- additions ---------------------------------------------------------------------------

    def read_pages(self, name: str, offset: int, length: int) -> bytes:
        """`length` logical bytes at `offset` of page file `name` (raw or compressed)."""
        filename = name + ".img"
        entry = self._entry(filename, PAGES)
        size = entry.raw_size if entry.compression else entry.size
        if offset < 0 or length < 0 or offset + length > size:
            raise _e(
                f"image {self.path}: {filename}: read of {length} bytes at {offset} is beyond "
                f"its end ({size} bytes; damaged image)"
            )
        if not entry.compression:
            return self._pread(filename, self._page_fd_raw(filename), offset, length)
        idx = self._index(name, entry)
        out = bytearray()
        end = offset + length
        pos = offset
        while pos < end:
            i = pos // idx.chunk_size
            frame = self._frame(name, filename, idx, i)
            start = pos - i * idx.chunk_size
            take = min(len(frame) - start, end - pos)
            if length == take:
                return frame[start : start + take]
            out += memoryview(frame)[start : start + take]
            pos += take
        return bytes(out)

    def decompress_pages_to(self, name: str, fd: int) -> int:
        """Write the logical content of page file `name` into fd (e.g. a memfd), frames
        decompressed on every CPU at once (zstd and pwrite release the GIL); returns its size."""
        filename = name + ".img"
        entry = self._entry(filename, PAGES)
        if not entry.compression:
            raise _e(f"image {self.path}: {filename} is not compressed")
        idx = self._index(name, entry)
        os.ftruncate(fd, idx.raw_size)
        nframes = len(idx.offsets) - 1
        self._page_fd_raw(filename)  # opened here, not by two workers at once
        local = _thread._local()

        def one(i: int) -> None:
            if getattr(local, "dctx", None) is None:
                import zstandard

                local.dctx = zstandard.ZstdDecompressor()
            frame = self._decode_frame(filename, idx, i, local.dctx)
            view, pos = memoryview(frame), i * idx.chunk_size
            while view:
                n = os.pwrite(fd, view, pos)
                view, pos = view[n:], pos + n

        ncpu = max(1, len(os.sched_getaffinity(0)))
        if nframes <= 1 or ncpu == 1:
            for i in range(nframes):
                one(i)
            return idx.raw_size
        from torpor.image.workers import Workers

        workers = Workers(ncpu, "torpor-unzstd")
        try:
            jobs = []
            for i in range(nframes):
                jobs.append(workers.submit(one, i))
                if len(jobs) >= 2 * ncpu:  # bounded: frames are 4 MiB each
                    jobs.pop(0).result()
            for job in jobs:
                job.result()
        finally:
            workers.shutdown()
        return idx.raw_size

    def pages_size(self, name: str) -> int:
        entry = self._entry(name + ".img", PAGES)
        return entry.raw_size if entry.compression else entry.size

    def page_files(self) -> list[str]:
        return [f[:-4] for f, e in self.manifest.files.items() if e.kind == PAGES]

    def records(self) -> list[str]:
        return [f[:-4] for f, e in self.manifest.files.items() if e.kind == RECORD]

    def verify(self) -> None:
        """Check every checksum in the image (records, files, indexes and pages)."""
        for filename, entry in self.manifest.files.items():
            if entry.kind != PAGES:
                self._read_verified(filename, entry.kind)
        self.verify_pages()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._cache = None
        if self._dfd >= 0:
            os.close(self._dfd)
            self._dfd = -1

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover
            pass

    # ---- internals ---------------------------------------------------------------------------

    def _incomplete(self, why: str = "") -> ImageError:
        return _e(f"image {self.path} is incomplete (checkpoint did not finish){why}")

    def _load(self) -> Manifest:
        p = self.path
        try:
            os.stat(INCOMPLETE, dir_fd=self._dfd, follow_symlinks=False)
            raise self._incomplete()
        except FileNotFoundError:
            pass
        try:
            fd = os.open(MANIFEST, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=self._dfd)
        except FileNotFoundError as e:
            raise self._incomplete(f": no {MANIFEST}") from e
        except OSError as e:
            raise _e(f"image {p}: {MANIFEST}: {e.strerror}") from e
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST:
                raise _e(f"image {p}: {MANIFEST} is not a torpor image manifest")
            data = self._pread(MANIFEST, fd, 0, st.st_size)
        finally:
            os.close(fd)
        try:
            raw = codec.parse(data)
        except codec.DecodeError as e:
            raise _e(f"image {p}: {MANIFEST} is not valid JSON (damaged image): {e}") from e
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise _e(f"image {p}: {MANIFEST} is not a torpor image manifest")
        version = raw.get("format_version")
        if type(version) is not int or version < 1:
            raise _e(f"image {p}: {MANIFEST}: unknown format_version {version!r}")
        if version < FORMAT_VERSION:
            raise _e(
                f"image {p} has format version {version}, which this torpor ({_version()}) "
                f"no longer reads (it reads {FORMAT_VERSION}): checkpoint again"
            )
        if version > FORMAT_VERSION:
            raise _e(
                f"image {p} has format version {version}, newer than this torpor "
                f"({_version()}) reads ({FORMAT_VERSION}): upgrade torpor"
            )
        if manifest_checksum(raw) != raw.get("checksum"):
            raise _e(f"image {p}: {MANIFEST}: checksum mismatch (damaged or edited image)")
        try:
            m = codec.convert(raw, Manifest)
        except codec.ValidationError as e:
            raise _e(f"image {p}: {MANIFEST}: invalid manifest (damaged image): {e}") from e
        for filename, entry in m.files.items():
            self._check_entry(filename, entry)
        return m

    def _check_entry(self, filename: str, entry: FileEntry) -> None:
        p = self.path
        try:
            _check_name(filename)
        except ImageError as e:
            raise _e(f"image {p}: {MANIFEST} names an invalid file {filename!r}") from e
        if entry.kind not in (RECORD, PAGES, INDEX, BLOB) or entry.size < 0:
            raise _e(f"image {p}: {MANIFEST}: bad entry for {filename}")
        if entry.compression and (entry.kind != PAGES or entry.compression not in COMPRESSIONS):
            raise _e(
                f"image {p}: {filename}: unknown compression {entry.compression!r} (newer torpor?)"
            )
        try:
            st = os.stat(filename, dir_fd=self._dfd, follow_symlinks=False)
        except FileNotFoundError as e:
            raise _e(f"image {p}: {filename} is missing (damaged image)") from e
        except OSError as e:
            raise _e(f"image {p}: {filename}: {e.strerror}") from e
        if not stat.S_ISREG(st.st_mode):
            raise _e(f"image {p}: {filename} is not a regular file (damaged image)")
        if st.st_size != entry.size:
            what = "truncated" if st.st_size < entry.size else "longer than recorded"
            raise _e(
                f"image {p}: {filename} is {what} ({st.st_size} bytes, expected "
                f"{entry.size}; damaged image)"
            )

    def _entry(self, filename: str, kind: str) -> FileEntry:
        entry = self.manifest.files.get(filename)
        if entry is None or entry.kind != kind:
            raise _e(f"image {self.path}: has no {kind} file {filename}")
        return entry

    def _pread(self, filename: str, fd: int, offset: int, length: int) -> bytes:
        try:
            data = os.pread(fd, length, offset)
            if len(data) < length:
                parts = [data]
                got = len(data)
                while got < length:
                    more = os.pread(fd, length - got, offset + got)
                    if not more:
                        raise _e(f"image {self.path}: {filename} is truncated (damaged image)")
                    parts.append(more)
                    got += len(more)
                data = b"".join(parts)
        except OSError as e:
            raise _e(f"image {self.path}: {filename}: {e.strerror}") from e
        return data

    def _read_verified(self, filename: str, kind: str) -> bytes:
        entry = self._entry(filename, kind)
        try:
            fd = os.open(filename, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=self._dfd)
        except FileNotFoundError as e:
            raise _e(f"image {self.path}: {filename} is missing (damaged image)") from e
        except OSError as e:
            raise _e(f"image {self.path}: {filename}: {e.strerror}") from e
        try:
            data = self._pread(filename, fd, 0, entry.size)
            if os.fstat(fd).st_size != entry.size:
                raise _e(f"image {self.path}: {filename} changed size (damaged image)")
        finally:
            os.close(fd)
        if xxhash.xxh3_128_hexdigest(data) != entry.xxh3_128:
            raise _e(f"image {self.path}: {filename}: checksum mismatch (damaged image)")
        return data

    def _page_fd_raw(self, filename: str) -> int:
        fd = self._fds.get(filename)
        if fd is None:
            if self._dfd < 0:
                raise _e(f"image {self.path} is closed")
            try:
                fd = os.open(filename, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=self._dfd)
            except FileNotFoundError as e:
                raise _e(f"image {self.path}: {filename} is missing (damaged image)") from e
            except OSError as e:
                raise _e(f"image {self.path}: {filename}: {e.strerror}") from e
            self._fds[filename] = fd
        return fd

    def _index(self, name: str, entry: FileEntry) -> FrameIndex:
        idx = self._indexes.get(name)
        if idx is not None:
            return idx
        filename = name + ".idx"
        data = self._read_verified(filename, INDEX)
        bad = f"image {self.path}: {filename}: invalid frame index (damaged image)"
        try:
            idx = codec.decode(data, FrameIndex)
        except ValueError as e:  # codec.DecodeError, codec.ValidationError
            raise _e(f"{bad}: {e}") from e
        n = -(-idx.raw_size // idx.chunk_size) if idx.chunk_size > 0 else -1
        offs = idx.offsets
        if (
            idx.version != 1
            or idx.compression != entry.compression
            or idx.raw_size != entry.raw_size
            or n < 0
            or len(offs) != n + 1
            or offs[0] != 0
            or offs[-1] != entry.size
            or any(offs[i] >= offs[i + 1] for i in range(n))
        ):
            raise _e(bad)
        self._indexes[name] = idx
        return idx

    def _frame(self, name: str, filename: str, idx: FrameIndex, i: int) -> bytes:
        c = self._cache
        if c is not None and c[0] == name and c[1] == i:
            return c[2]
        if self._dctx is None:
            import zstandard

            self._dctx = zstandard.ZstdDecompressor()
        out = self._decode_frame(filename, idx, i, self._dctx)
        self._cache = (name, i, out)
        return out

    def _decode_frame(self, filename: str, idx: FrameIndex, i: int, dctx: Any) -> bytes:
        """Frame i, decompressed by dctx (one per thread: a decompressor is not thread-safe)."""
        start, end = idx.offsets[i], idx.offsets[i + 1]
        raw = self._pread(filename, self._page_fd_raw(filename), start, end - start)
        want = min(idx.chunk_size, idx.raw_size - i * idx.chunk_size)
        try:
            import zstandard

            if zstandard.frame_content_size(raw) != want:
                raise _e(
                    f"image {self.path}: {filename}: frame {i} has the wrong size (damaged image)"
                )
            out = dctx.decompress(raw)
        except ImageError:
            raise
        except Exception as e:  # zstandard.ZstdError and friends
            raise _e(
                f"image {self.path}: {filename}: frame {i} is damaged (damaged image): {e}"
            ) from e
        if len(out) != want:
            raise _e(f"image {self.path}: {filename}: frame {i} has the wrong size (damaged image)")
        return out

"""Image directories: atomic, checksummed, versioned.

CONTRACT (implemented by the image owner; the engine codes against exactly this):

    w = ImageWriter(path)                # path must not exist or be an empty dir; creates it 0700,
                                         # writes marker file "INCOMPLETE" first
    w.put_record("tree", struct)         # msgspec Struct -> <name>.rec (msgpack), 0600, written to a
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
"""

from __future__ import annotations

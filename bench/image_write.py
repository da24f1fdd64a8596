"""Write bandwidth of image page files (torpor.image.store.PageFile) against plain os.write.

    python3 bench/image_write.py [--size-mib 1024] [--chunk-mib 64] [--runs 5] [--warmup 1]
                                 [--dir DIR] [--variants os_write,raw,raw_readback,zstd]

Writes `size` MiB of page data in `chunk`-MiB writes, in one directory, for each variant:
  os_write      plain os.write of the same buffers to a file (the baseline)
  raw           PageFile.write, xxh3_128 computed while streaming, then commit()
  raw_readback  pwrite through pf.fd into a reserve()d region: checksum read back at commit
  zstd          ImageWriter(compress="zstd") level 1, 4 MiB frames, then commit()
No fsync (sync=False): this measures the page-cache path; durability costs the disk's speed.
Variants are interleaved run by run, in a rotating order, each timed run preceded by an untimed
write+delete of the same size (the primer), and the median and best are reported: this VM hands
freed memory back to the host and re-touching it is slow, so single timings swing.
Output: one JSON object per line per variant, then a summary line {"bench": ..., "summary": ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from torpor.image.store import ImageWriter  # noqa: E402

MiB = 1 << 20


def page_data(size: int) -> bytes:
    """Semi-compressible pages: per 4 KiB page, 2 KiB random bytes and 2 KiB of a pattern;
    one page in eight all zeros."""
    rnd = os.urandom(size // 2)
    pattern = (b"torpor page data " * 128)[:2048]
    out = bytearray()
    for i in range(size // 4096):
        if i % 8 == 7:
            out += bytes(4096)
        else:
            out += rnd[i * 2048 : (i + 1) * 2048] + pattern
    return bytes(out)


def run_os_write(d: str, buf: bytes, n: int) -> int:
    fd = os.open(os.path.join(d, "plain.img"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for _ in range(n):
            mv = memoryview(buf)
            while mv:
                mv = mv[os.write(fd, mv) :]
    finally:
        os.close(fd)
    return n * len(buf)


def run_image(d: str, buf: bytes, n: int, compress: str | None) -> int:
    w = ImageWriter(os.path.join(d, "img"), compress=compress, sync=False)
    pf = w.page_file("pages")
    for _ in range(n):
        pf.write(buf)
    w.commit()
    return os.path.getsize(os.path.join(d, "img", "pages.img"))


def run_readback(d: str, buf: bytes, n: int) -> int:
    w = ImageWriter(os.path.join(d, "img"), sync=False)
    pf = w.page_file("pages")
    off = pf.reserve(n * len(buf))
    fd = pf.fd
    for i in range(n):
        mv = memoryview(buf)
        pos = off + i * len(buf)
        while mv:
            k = os.pwrite(fd, mv, pos)
            mv, pos = mv[k:], pos + k
    w.commit()
    return n * len(buf)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--chunk-mib", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    ap.add_argument(
        "--no-primer",
        action="store_true",
        help="do not write+delete an untimed file of the same size before each timed run",
    )
    ap.add_argument("--dir", default=None, help="directory to write in (default: a temp dir)")
    ap.add_argument("--variants", default="os_write,raw,raw_readback,zstd")
    a = ap.parse_args(argv)
    chunk = a.chunk_mib * MiB
    n = a.size_mib // a.chunk_mib
    buf = page_data(chunk)
    base = tempfile.mkdtemp(prefix="torpor-bench-", dir=a.dir)
    variants = {
        "os_write": lambda d: run_os_write(d, buf, n),
        "raw": lambda d: run_image(d, buf, n, None),
        "raw_readback": lambda d: run_readback(d, buf, n),
        "zstd": lambda d: run_image(d, buf, n, "zstd"),
    }
    chosen = [v for v in a.variants.split(",") if v]
    times: dict[str, list[float]] = {v: [] for v in chosen}
    stored: dict[str, int] = {}
    try:
        for r in range(a.warmup + a.runs):
            k = r % len(chosen)  # rotate the order: each variant takes each position in turn
            for v in chosen[k:] + chosen[:k]:
                d = tempfile.mkdtemp(dir=base)
                if not a.no_primer:
                    # every timed run starts right after `size` bytes of page cache were freed,
                    # whatever variant ran before (else the one after zstd, which frees less,
                    # pays for memory the VM handed back to the host)
                    run_os_write(d, buf, n)
                    os.unlink(os.path.join(d, "plain.img"))
                t = time.perf_counter()
                stored[v] = variants[v](d)
                if r >= a.warmup:
                    times[v].append(time.perf_counter() - t)
                shutil.rmtree(d)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    total = n * chunk
    results = {}
    for v in chosen:
        rates = [total / MiB / t for t in times[v]]
        results[v] = statistics.median(rates)
        print(
            json.dumps(
                {
                    "bench": "image_write",
                    "variant": v,
                    "bytes": total,
                    "chunk": chunk,
                    "runs": a.runs,
                    "mib_s_median": round(statistics.median(rates), 1),
                    "mib_s_best": round(max(rates), 1),
                    "mib_s_runs": [round(r, 1) for r in rates],
                    "stored_bytes": stored[v],
                    "ratio": round(stored[v] / total, 3),
                }
            )
        )
    best = {v: round(total / MiB / min(times[v]), 1) for v in chosen}
    summary = {
        "bench": "image_write",
        "summary": {k: round(x, 1) for k, x in results.items()},
        "best": best,
    }
    if "os_write" in results:
        summary["relative_to_os_write"] = {
            k: round(x / results["os_write"], 3) for k, x in results.items()
        }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run(ctx) -> None:
    """Suite entry (`python3 -m bench image_write`): runs main() with the suite's --runs and
    work directory (512 MiB, 3 variants by default) and re-emits its lines as suite results."""
    import contextlib
    import io

    from bench.common import emit, log

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["--size-mib", "512", "--runs", str(ctx.runs), "--dir", str(ctx.workdir),
              "--variants", "os_write,raw,zstd"])
    for line in buf.getvalue().splitlines():
        rec = json.loads(line)
        if "variant" in rec:
            rates = rec["mib_s_runs"]
            emit("image_write", f"{rec['variant']}_mib_s", rates, "MiB/s",
                 stored_ratio=rec["ratio"], bytes=rec["bytes"])
            log(f"  {rec['variant']:10s} {rec['mib_s_median']} MiB/s "
                f"[{min(rates)}-{max(rates)}], stored/raw {rec['ratio']}")
        elif "relative_to_os_write" in rec:
            emit("image_write", "relative_to_os_write", None, "ratio",
                 medians=rec["relative_to_os_write"])

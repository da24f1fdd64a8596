"""python3 -m bench [NAME ...] [--runs N] [--sizes 64,512,2048] [--dir DIR]

Runs the benchmarks (all by default), prints one JSON object per result on stdout, writes all
of them to bench/results/latest.json, and a human summary on stderr."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import common

BENCHES = ["limits", "memory", "latency", "tree", "pyapp", "incremental", "image_write"]


class Ctx:
    def __init__(self, a: argparse.Namespace):
        self.runs = a.runs
        self.sizes = [int(x) for x in a.sizes.split(",") if x]
        self.limit_mib = a.limit_mib
        self.workdir = Path(tempfile.mkdtemp(prefix="torpor-bench-", dir=a.dir))
        self.bindir = self.workdir / "bin"
        self.bindir.mkdir()
        self.limits: dict[str, float | None] = {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {BENCHES}")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per measurement (default 3)")
    ap.add_argument("--sizes", default="64,512,2048", help="MiB of dirty memory (memory bench)")
    ap.add_argument("--limit-mib", type=int, default=1024, help="buffer size for limits")
    ap.add_argument("--dir", default=None, help="work directory for images (default: $TMPDIR)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "latest.json"))
    a = ap.parse_args(argv)
    names = a.names or BENCHES
    for n in names:
        if n not in BENCHES:
            ap.error(f"unknown benchmark {n!r}; known: {', '.join(BENCHES)}")
    if os.geteuid() != 0:
        common.log("warning: torpor checkpoint/restore need root")
    common.become_subreaper()
    common.precompile()
    ctx = Ctx(a)
    t0 = time.monotonic()
    try:
        for n in names:
            common.log(f"== {n}")
            mod = importlib.import_module(f"bench.{n}")
            t = time.monotonic()
            try:
                mod.run(ctx)
            except Exception as e:  # noqa: BLE001 - a crashed benchmark is a result too
                common.emit(n, "benchmark", error=f"{type(e).__name__}: {e}")
                common.log(f"  FAILED: {type(e).__name__}: {e}")
            common.log(f"   ({time.monotonic() - t:.1f} s)")
            common.reap_zombies()
    finally:
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    doc = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"kernel": platform.release(), "python": platform.python_version(),
                 "cpus": os.cpu_count()},
        "runs": a.runs,
        "benchmarks": names,
        "seconds": round(time.monotonic() - t0, 1),
        "results": common.RESULTS,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    failed = [r for r in common.RESULTS if "error" in r]
    common.log(f"== {len(common.RESULTS)} results, {len(failed)} with errors, "
               f"{doc['seconds']} s; written to {out}")
    for r in failed:
        common.log(f"  FAILED {r['bench']}/{r['metric']}: {r['error']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

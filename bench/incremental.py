"""Incremental checkpoints and zstd compression, on memhog (bench/programs/memhog.c) with
S MiB (the largest --sizes value up to 512; SIGUSR1 makes it write one byte in every 10th page).

Per run:
  incremental  `checkpoint --leave-running --track-mem` (full image, P0); SIGUSR1 (10% of pages
               written); `checkpoint --leave-running --track-mem --parent-path P0` (P1);
               SIGUSR1; `checkpoint --parent-path P1` (P2, the process stops); `restore` P2
               (pages come from the chain P2 -> P1 -> P0). Wall time and stored MiB of each.
  compress     a new memhog: `checkpoint --leave-running` raw and `--compress zstd`, stored MiB
               (ratio), wall time; then `restore` of the zstd image. memhog's pages hold a
               multiplicative-hash pattern (8-byte words, different in every page): zstd finds
               little to remove, so the ratio is a pessimistic one; the cost is the point."""

from __future__ import annotations

import os
import signal
import time

from bench.common import (
    MiB,
    build_c,
    dir_size,
    drop_pages,
    emit,
    kill_tree,
    log,
    reap_zombies,
    restored_pid,
    spawn,
    torpor,
    wait_file,
    wait_gone,
)

NAME = "incremental"


def _size(ctx) -> int:
    small = [s for s in ctx.sizes if 0 < s <= 512]
    return max(small) if small else 512


def _stored_mib(path) -> float:
    return dir_size(path)[0] / MiB


def _dirty(p, ready, n: int) -> None:
    os.kill(p.pid, signal.SIGUSR1)
    wait_file(ready.with_name(f"{ready.name}.dirty{n}"), proc=p)


def _session(ctx, mib: int, tag: str, acc: dict, steps: list, restore_from: str,
             restore_key: str, dirty: bool) -> None:
    """A memhog of mib MiB in its own directory: `checkpoint` each of steps (name, flags,
    parent image name or None) in order (with dirty, SIGUSR1 between them: 10% of the pages
    written), then it goes and `restore` of restore_from. Wall time and stored MiB of each
    image go to acc[name_s] / acc[name_mib], the restore's to acc[restore_key_s]."""
    hog = build_c("memhog", ctx.bindir)
    d = ctx.workdir / tag
    d.mkdir()
    ready = d / "ready"
    p = spawn([str(hog), str(mib), str(ready)], cwd=str(d))
    rpid = None
    try:
        wait_file(ready, proc=p)
        for i, (name, flags, parent) in enumerate(steps):
            if i and dirty:
                _dirty(p, ready, i)
            extra = ["--parent-path", d / parent] if parent else []
            res = torpor("checkpoint", "--pid", p.pid, "--image-path", d / name, *flags, *extra)
            if not res.ok():
                acc["errors"].setdefault(name, res.why())
                return
            acc[f"{name}_s"].append(res.secs)
            acc[f"{name}_mib"].append(_stored_mib(d / name))
        kill_tree(p.pid)  # gone already when the last checkpoint stopped it
        wait_gone(p.pid)
        reap_zombies()
        res = torpor("restore", "--image-path", d / restore_from)
        rpid = restored_pid(res)
        if rpid is None:
            acc["errors"].setdefault(restore_key, res.why())
            return
        acc[f"{restore_key}_s"].append(res.secs)
    finally:
        kill_tree(rpid)
        kill_tree(p.pid)
        drop_pages(d)


def incremental_run(ctx, mib: int, r: int, acc: dict) -> None:
    steps = [("full", ["--leave-running", "--track-mem"], None),
             ("incr1", ["--leave-running", "--track-mem"], "full"),
             ("incr2", [], "incr1")]
    _session(ctx, mib, f"inc-{r}", acc, steps, "incr2", "restore_chain", dirty=True)


def compress_run(ctx, mib: int, r: int, acc: dict) -> None:
    steps = [("raw", ["--leave-running"], None),
             ("zstd", ["--leave-running", "--compress", "zstd"], None)]
    _session(ctx, mib, f"zstd-{r}", acc, steps[::-1] if r % 2 else steps, "zstd",
             "restore_zstd", dirty=False)


def run(ctx) -> None:
    mib = _size(ctx)
    inc = {k: [] for k in ("full_s", "full_mib", "incr1_s", "incr1_mib", "incr2_s", "incr2_mib",
                           "restore_chain_s")}
    inc["errors"] = {}
    z = {k: [] for k in ("raw_s", "raw_mib", "zstd_s", "zstd_mib", "restore_zstd_s")}
    z["errors"] = {}
    for r in range(ctx.runs):
        log(f"  run {r + 1}/{ctx.runs}: {mib} MiB")
        for step in ((incremental_run, inc), (compress_run, z))[:: 1 if r % 2 == 0 else -1]:
            step[0](ctx, mib, r, step[1])
            time.sleep(0.1)
    b = f"{NAME}.{mib}MiB"
    out = {}
    for key, unit in (("full_s", "s"), ("full_mib", "MiB"), ("incr1_s", "s"), ("incr1_mib", "MiB"),
                      ("incr2_s", "s"), ("incr2_mib", "MiB"), ("restore_chain_s", "s")):
        err = next((v for k, v in inc["errors"].items() if key.startswith(k)), None)
        out[key] = emit(b, key, inc[key], unit, err or (next(iter(inc["errors"].values()), None)
                                                        if not inc[key] else None))
    b = f"compress.{mib}MiB"
    for key, unit in (("raw_s", "s"), ("raw_mib", "MiB"), ("zstd_s", "s"), ("zstd_mib", "MiB"),
                      ("restore_zstd_s", "s")):
        err = next(iter(z["errors"].values()), None) if not z[key] else None
        out["z_" + key] = emit(b, key, z[key], unit, err)
    ratios = [zm / rm for zm, rm in zip(z["zstd_mib"], z["raw_mib"], strict=False) if rm]
    out["ratio"] = emit(b, "zstd_stored_vs_raw", ratios, "ratio")
    m = {k: v.get("median", "FAILED") for k, v in out.items()}
    log(f"  incremental: full {m['full_s']} s / {m['full_mib']} MiB, then 10% written: "
        f"{m['incr1_s']} s / {m['incr1_mib']} MiB and {m['incr2_s']} s / {m['incr2_mib']} MiB; "
        f"restore of the chain {m['restore_chain_s']} s")
    log(f"  compress: raw {m['z_raw_s']} s / {m['z_raw_mib']} MiB, zstd {m['z_zstd_s']} s / "
        f"{m['z_zstd_mib']} MiB (ratio {m['ratio']}); restore of the zstd image "
        f"{m['z_restore_zstd_s']} s")
    for k, v in {**inc["errors"], **z["errors"]}.items():
        log(f"    FAILED {k}: {v}")

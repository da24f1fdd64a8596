"""Checkpoint and restore of a process holding N MiB of dirty anonymous memory (bench/programs/
memhog.c: malloc + fill with a per-page pattern, then a ~1 ms sleep loop that appends a
CLOCK_MONOTONIC timestamp to a file).

Per size and run (sizes interleaved, order rotated run by run):
  1. `torpor checkpoint --pid P --leave-running`: wall time, MiB/s, image size, and the frozen
     time = the largest gap between consecutive timestamps of the process around the command;
  2. `torpor checkpoint --pid P` (the process is stopped and killed): wall time, MiB/s, and
     its ratio to the page-cache write of N MiB measured just before it;
  3. `torpor restore` of that image: wall time (it returns when the process runs), MiB/s, and
     its ratio to the first touch of N MiB measured just before it.
MiB/s = dirty MiB / wall time of the whole command (interpreter start included)."""

from __future__ import annotations

import os
import struct
import time

from bench.common import (
    MiB,
    build_c,
    drop_pages,
    emit,
    kill_tree,
    log,
    reap_zombies,
    restored_pid,
    rotate,
    spawn,
    torpor,
    wait_file,
    wait_gone,
)

NAME = "memory"


def _timestamps(ts_path) -> list[float]:
    """memhog's CLOCK_MONOTONIC timestamps, in seconds."""
    data = ts_path.read_bytes()
    return [x / 1e9 for x in struct.unpack(f"<{len(data) // 8}Q", data[: len(data) // 8 * 8])]


def frozen_ms(ts_path, t0: float, t1: float) -> float | None:
    ts = _timestamps(ts_path)
    before = [t for t in ts if t < t0]
    inside = [t for t in ts if t0 <= t <= t1]
    after = [t for t in ts if t > t1]
    if not before or not after:
        return None
    seq = [before[-1], *inside, after[0]]
    return max(b - a for a, b in zip(seq[:-1], seq[1:], strict=True)) * 1000


def runs_again_ms(ts_path, t0: float) -> float | None:
    """Time from t0 (a restore command's start) to the restored memhog's first timestamp:
    when it ran again (up to ~1 ms late: it was inside its 1 ms sleep when stopped)."""
    after = [t for t in _timestamps(ts_path) if t > t0]
    return (after[0] - t0) * 1000 if after else None


def _fail(acc: dict, what: str, why: str) -> None:
    """Record a failed command: its first message and how many runs failed."""
    msg, n = acc["errors"].get(what, (why, 0))
    acc["errors"][what] = (msg, n + 1)


def one(ctx, mib: int, r: int, acc: dict) -> None:
    hog = build_c("memhog", ctx.bindir)
    d = ctx.workdir / f"mem-{mib}-{r}"
    d.mkdir()
    ready, ts = d / "ready", d / "ts"
    p = spawn([str(hog), str(mib), str(ready), str(ts)], cwd=str(d))
    rpid = None
    try:
        wait_file(ready, proc=p)
        time.sleep(0.05)
        # 1. leave-running checkpoint (before each command, untimed, the dirty pages of the
        # earlier ones go to disk: with gigabytes pending, ext4 throttles writers to disk
        # speed and stalls even small reads of the image)
        os.sync()
        img1 = d / "img-lr"
        res = torpor("checkpoint", "--pid", p.pid, "--image-path", img1, "--leave-running")
        if res.ok():
            time.sleep(0.03)  # let the process log a timestamp after the thaw
            acc["lr_s"].append(res.secs)
            fz = frozen_ms(ts, res.t0, res.t1)
            if fz is not None:
                acc["frozen_ms"].append(fz)
            from bench.common import dir_size

            app, alloc = dir_size(img1)
            acc["image_mib"].append(app / MiB)
            acc["image_alloc_mib"].append(alloc / MiB)
        else:
            _fail(acc, "checkpoint_leave_running", res.why())
        drop_pages(img1)
        # 2. checkpoint (stop + kill), right after the page-cache write limit at the same size
        # (this VM's memory speed drifts by 2x over minutes: a ratio needs both at one moment)
        from bench import limits

        pcw = limits.page_cache_write(mib * MiB, d)
        img2 = d / "img"
        os.sync()
        limits.warm(mib * MiB)  # as the limit had (see limits.warm)
        res = torpor("checkpoint", "--pid", p.pid, "--image-path", img2)
        if not res.ok():
            _fail(acc, "checkpoint", res.why())
            return
        acc["ck_s"].append(res.secs)
        acc["ck_vs_pcw"].append(mib / res.secs / pcw)
        wait_gone(p.pid)
        reap_zombies()
        # 3. restore, right after the first-touch limit at the same size
        os.sync()
        ft = limits.first_touch(mib * MiB)
        limits.warm(mib * MiB)
        res = torpor("restore", "--image-path", img2)
        rpid = restored_pid(res)
        if rpid is None:
            _fail(acc, "restore", res.why())
            return
        acc["rs_s"].append(res.secs)
        acc["rs_vs_ft"].append(mib / res.secs / ft)
        # 4. the same image, restored lazily: the command returns when the process runs; its
        # memory arrives on demand and in the background (until its RSS holds all of it)
        kill_tree(rpid)
        wait_gone(rpid)
        reap_zombies()
        os.sync()
        res = torpor("restore", "--lazy", "--image-path", img2)
        rpid = restored_pid(res)
        if rpid is None:
            _fail(acc, "restore_lazy", res.why())
            return
        acc["lazy_s"].append(res.secs)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _rss_kib(rpid) < mib * 1024 * 0.98:
            time.sleep(0.005)
        acc["lazy_full_s"].append(time.monotonic() - res.t0)
        ra = runs_again_ms(ts, res.t0)
        if ra is not None:
            acc["lazy_runs_ms"].append(ra)
    finally:
        kill_tree(rpid)
        kill_tree(p.pid)
        drop_pages(d)


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(ctx) -> None:
    sizes = ctx.sizes
    accs = {m: {"lr_s": [], "frozen_ms": [], "image_mib": [], "image_alloc_mib": [], "ck_s": [],
                "rs_s": [], "lazy_s": [], "lazy_full_s": [], "lazy_runs_ms": [], "ck_vs_pcw": [],
                "rs_vs_ft": [],
                "errors": {}} for m in sizes}
    for r in range(ctx.runs):
        for mib in rotate(sizes, r):
            log(f"  run {r + 1}/{ctx.runs}: {mib} MiB")
            one(ctx, mib, r, accs[mib])
    pcw = ctx.limits.get("page_cache_write")
    ft = ctx.limits.get("first_touch")
    for mib in sizes:
        a = accs[mib]
        e = {k: f"{m} ({n} of {ctx.runs} runs failed)" for k, (m, n) in a["errors"].items()}
        b = f"{NAME}.{mib}MiB"
        ck_rate = [mib / s for s in a["ck_s"]]
        rs_rate = [mib / s for s in a["rs_s"]]
        lr_rate = [mib / s for s in a["lr_s"]]
        rec_ck = emit(b, "checkpoint_s", a["ck_s"], "s", e.get("checkpoint"), dirty_mib=mib)
        rec_ckr = emit(b, "checkpoint_mib_s", ck_rate, "MiB/s", e.get("checkpoint"), dirty_mib=mib)
        emit(b, "checkpoint_leave_running_s", a["lr_s"], "s", e.get("checkpoint_leave_running"))
        emit(b, "checkpoint_leave_running_mib_s", lr_rate, "MiB/s",
             e.get("checkpoint_leave_running"))
        rec_fz = emit(b, "frozen_ms", a["frozen_ms"], "ms", e.get("checkpoint_leave_running"))
        rec_img = emit(b, "image_mib", a["image_mib"], "MiB", e.get("checkpoint_leave_running"),
                       allocated_mib=a["image_alloc_mib"][-1] if a["image_alloc_mib"] else None)
        rec_rs = emit(b, "restore_s", a["rs_s"], "s", e.get("restore") or e.get("checkpoint"))
        rec_rsr = emit(b, "restore_mib_s", rs_rate, "MiB/s", e.get("restore") or e.get("checkpoint"))
        rec_lz = emit(b, "restore_lazy_s", a["lazy_s"], "s", e.get("restore_lazy"))
        rec_lzr = emit(b, "restore_lazy_runs_again_ms", a["lazy_runs_ms"], "ms",
                       e.get("restore_lazy"), target=30)
        rec_lzf = emit(b, "restore_lazy_all_pages_s", a["lazy_full_s"], "s", e.get("restore_lazy"))
        ratio_ck = ratio_rs = None
        if pcw and "median" in rec_ckr:  # against the limits bench, run before
            emit(b, "checkpoint_vs_page_cache_write", [rec_ckr["median"] / pcw], "ratio",
                 target=0.8, page_cache_write_mib_s=pcw)
        if ft and "median" in rec_rsr:
            emit(b, "restore_vs_first_touch", [rec_rsr["median"] / ft], "ratio", target=0.8,
                 first_touch_mib_s=ft)
        # per run, against the limit measured just before the command, at the same size
        rec = emit(b, "checkpoint_vs_page_cache_write_same_moment", a["ck_vs_pcw"], "ratio",
                   e.get("checkpoint"), target=0.8)
        ratio_ck = rec.get("median")
        rec = emit(b, "restore_vs_first_touch_same_moment", a["rs_vs_ft"], "ratio",
                   e.get("restore") or e.get("checkpoint"), target=0.8)
        ratio_rs = rec.get("median")
        log(f"  {mib:5d} MiB: checkpoint {_m(rec_ck)} s ({_m(rec_ckr)} MiB/s, "
            f"{_pct(ratio_ck)} of page-cache write), frozen {_m(rec_fz)} ms, image "
            f"{_m(rec_img)} MiB; restore {_m(rec_rs)} s ({_m(rec_rsr)} MiB/s, "
            f"{_pct(ratio_rs)} of first touch); lazy restore {_m(rec_lz)} s (runs again after "
            f"{_m(rec_lzr)} ms), all pages in {_m(rec_lzf)} s")
        for k, v in e.items():
            log(f"    FAILED {k}: {v}")


def _m(rec: dict) -> str:
    if "median" not in rec:
        return "FAILED"
    return f"{rec['median']} [{rec['min']}-{rec['max']}]"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.0f}%"

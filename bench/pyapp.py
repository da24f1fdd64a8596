"""A slow-starting Python application (bench/programs/slowapp.py: imports ~45 standard-library
modules and a PyPI stack if installed: requests, jinja2, flask, pydantic, cryptography, boto3,
numpy, scipy.stats, sympy; builds a dict of 200k entries and 2000 compiled regexes, writes its ready file).
Interleaved run by run:
  cold_start  spawn `python3 slowapp.py READY` until READY exists (page cache warm)
  restore     `torpor restore` of an image taken after ready, until the command returns
              (it returns when the process runs)
Target: restore >= 15x faster than the cold start."""

from __future__ import annotations

import sys
import time

from bench.common import (
    PROGRAMS,
    drop_pages,
    emit,
    kill_tree,
    log,
    now,
    reap_zombies,
    restored_pid,
    spawn,
    torpor,
    wait_file,
    wait_gone,
)

NAME = "pyapp"


def run(ctx) -> None:
    app = PROGRAMS / "slowapp.py"
    d = ctx.workdir / "pyapp"
    d.mkdir()
    cold, rest, ck = [], [], []
    errs: dict[str, str] = {}
    img = d / "img"

    def start(ready):
        ready.unlink(missing_ok=True)
        t = now()
        p = spawn([sys.executable, str(app), str(ready)], cwd=str(d))
        return p, wait_file(ready, proc=p) - t

    # image taken once, after ready (page cache warmed by this start)
    p, _ = start(d / "ready0")
    try:
        time.sleep(0.1)
        res = torpor("checkpoint", "--pid", p.pid, "--image-path", img)
        if res.ok():
            ck.append(res.secs)
        else:
            errs["checkpoint"] = res.why()
    finally:
        kill_tree(p.pid)
    lazy: list[float] = []
    for r in range(ctx.runs):
        order = ["cold", "restore", "lazy"]
        for what in order[r % 3:] + order[: r % 3]:
            if what == "cold":
                p, secs = start(d / f"ready-c{r}")
                kill_tree(p.pid)
                cold.append(secs)
            elif "checkpoint" not in errs:
                wait_gone(p.pid)
                reap_zombies()
                extra = ["--lazy"] if what == "lazy" else []
                res = torpor("restore", *extra, "--image-path", img)
                rpid = restored_pid(res)
                if rpid is None:
                    errs.setdefault(what, res.why())
                    continue
                (lazy if what == "lazy" else rest).append(res.secs)
                kill_tree(rpid)
                wait_gone(rpid)
                reap_zombies()
    drop_pages(d)
    rc = emit(NAME, "cold_start_s", cold, "s")
    rr = emit(NAME, "restore_s", rest, "s", errs.get("restore") or errs.get("checkpoint"))
    emit(NAME, "checkpoint_s", ck, "s", errs.get("checkpoint"))
    rl = emit(NAME, "restore_lazy_s", lazy, "s", errs.get("lazy") or errs.get("checkpoint"))
    if "median" in rc and "median" in rl:
        emit(NAME, "speedup_lazy", [rc["median"] / rl["median"]], "x", target=15)
        log(f"  restore --lazy {rl['median']} s: {rc['median'] / rl['median']:.1f}x faster")
    if "median" in rc and "median" in rr:
        sp = rc["median"] / rr["median"]
        emit(NAME, "speedup", [sp], "x", target=15)
        log(f"  cold start {rc['median']} s [{rc['min']}-{rc['max']}], restore {rr['median']} s "
            f"[{rr['min']}-{rr['max']}]: restore is {sp:.1f}x faster (target 15x)")
    else:
        log(f"  cold start {rc.get('median')} s; restore FAILED: {errs}")

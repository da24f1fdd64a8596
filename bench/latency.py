"""Whole-command latency (interpreter start included), interleaved run by run:
  checkpoint / restore  `torpor checkpoint --pid` and `torpor restore` of a tiny static C
                        process (memhog with 0 MiB: a 1 ms sleep loop)
  state_missing         `torpor --root <empty tmp> state x` (exit 1: no container): the
                        start-up cost containerd pays on every operation
  version               `torpor --version`
(torpor = the installed script beside the interpreter, as containerd runs it)
  python_bare           `python3 -c pass`: the interpreter alone, for reference
Runs = 3 x --runs (these are cheap)."""

from __future__ import annotations

import sys

from bench.common import (
    build_c,
    drop_pages,
    emit,
    kill_tree,
    log,
    reap_zombies,
    restored_pid,
    rotate,
    run_cmd,
    spawn,
    torpor,
    wait_file,
    wait_gone,
)

NAME = "latency"


def run(ctx) -> None:
    hog = build_c("memhog", ctx.bindir)
    root = ctx.workdir / "state-root"
    root.mkdir()
    vals: dict[str, list[float]] = {k: [] for k in
                                    ("checkpoint", "restore", "state_missing", "version",
                                     "python_bare")}
    errs: dict[str, str] = {}

    def ck_rs(r: int) -> None:
        d = ctx.workdir / f"lat-{r}"
        d.mkdir()
        p = spawn([str(hog), "0", str(d / "ready")])
        rpid = None
        try:
            wait_file(d / "ready", proc=p)
            res = torpor("checkpoint", "--pid", p.pid, "--image-path", d / "img")
            if not res.ok():
                errs.setdefault("checkpoint", res.why())
                return
            vals["checkpoint"].append(res.secs * 1000)
            wait_gone(p.pid)
            reap_zombies()
            res = torpor("restore", "--image-path", d / "img")
            rpid = restored_pid(res)
            if rpid is None:
                errs.setdefault("restore", res.why())
                return
            vals["restore"].append(res.secs * 1000)
        finally:
            kill_tree(rpid)
            kill_tree(p.pid)
            drop_pages(d)

    def state(r: int) -> None:
        res = torpor("--root", root, "state", "x")
        if res.rc != 1 or "torpor:" not in res.err:
            errs.setdefault("state_missing", "expected exit 1 with a torpor: message, got "
                            + res.why())
        vals["state_missing"].append(res.secs * 1000)

    def version(r: int) -> None:
        res = torpor("--version")
        if not res.ok():
            errs.setdefault("version", res.why())
            return
        vals["version"].append(res.secs * 1000)

    def bare(r: int) -> None:
        vals["python_bare"].append(run_cmd([sys.executable, "-c", "pass"]).secs * 1000)

    steps = [ck_rs, state, version, bare]
    n = 3 * ctx.runs
    for r in range(n + 1):  # run 0 warms the page cache
        for f in rotate(steps, r):
            if r == 0:
                saved = {k: list(v) for k, v in vals.items()}
                f(r)
                for k in vals:
                    vals[k][:] = saved[k]
            else:
                f(r)
    targets = {"checkpoint": 60, "restore": 60}
    for k, v in vals.items():
        rec = emit(NAME, f"{k}_ms", v, "ms", errs.get(k), target_ms=targets.get(k))
        m = f"{rec['median']} ms [{rec['min']}-{rec['max']}]" if "median" in rec else "FAILED"
        log(f"  {k:14s} {m}" + (f"  (error: {errs[k]})" if k in errs else ""))

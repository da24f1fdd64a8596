"""A tree of 50 processes: /bin/sh starting 49 `sleep` children, then waiting.
`torpor checkpoint --pid` of the shell (the whole tree) and `torpor restore`, wall times;
the restored tree is counted (it must hold 50 processes again)."""

from __future__ import annotations

import time

from bench.common import (
    descendants,
    drop_pages,
    emit,
    kill_tree,
    log,
    reap_zombies,
    restored_pid,
    spawn,
    torpor,
    wait_file,
)

NAME = "tree"
SCRIPT = 'i=0; while [ $i -lt 49 ]; do sleep 100000 & i=$((i+1)); done; echo > "$1.tmp"; ' \
         'mv "$1.tmp" "$1"; wait'


def run(ctx) -> None:
    vals = {"checkpoint_s": [], "restore_s": []}
    errs: dict[str, str] = {}
    counts = []
    for r in range(ctx.runs):
        d = ctx.workdir / f"tree-{r}"
        d.mkdir()
        p = spawn(["/bin/sh", "-c", SCRIPT, "sh", str(d / "ready")])
        rpid = None
        try:
            wait_file(d / "ready", proc=p)
            time.sleep(0.1)  # let `mv` (which wrote the ready file) exit before counting
            n0 = 1 + len(descendants(p.pid))
            res = torpor("checkpoint", "--pid", p.pid, "--image-path", d / "img")
            if not res.ok():
                errs.setdefault("checkpoint_s", res.why())
                continue
            vals["checkpoint_s"].append(res.secs)
            kill_tree(p.pid)  # the tree is dead already; reap the shell and the sleeps
            reap_zombies()
            res = torpor("restore", "--image-path", d / "img")
            rpid = restored_pid(res)
            if rpid is None:
                errs.setdefault("restore_s", res.why())
                continue
            vals["restore_s"].append(res.secs)
            counts.append((n0, 1 + len(descendants(rpid))))
        finally:
            kill_tree(rpid)
            kill_tree(p.pid)
            drop_pages(d)
    for k, v in vals.items():
        rec = emit(NAME, k, v, "s", errs.get(k), processes=counts[-1] if counts else None)
        m = f"{rec['median']} s [{rec['min']}-{rec['max']}]" if "median" in rec else "FAILED"
        log(f"  {k:14s} {m}" + (f"  (error: {errs[k]})" if k in errs else ""))
    if counts:
        log(f"  processes before/after restore: {counts}")
        bad = [c for c in counts if c[0] != c[1]]
        if bad:
            emit(NAME, "restored_tree_size", error=f"tree size changed: {bad}")

"""torpor demo: the embedded default in a few steps, checkpoint and restore included.

run the counter -> logs -> checkpoint it (the container stops) -> the log stands still ->
start it from the checkpoint -> logs: the counter goes on where it stopped, no gap, no
repeat -> delete. Each step is one function in STEPS.
"""

from __future__ import annotations

import json
import os
import sys
import time

COUNTER = "i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done"


def say(text: str) -> None:
    sys.stdout.write(f"\n== {text}\n")
    sys.stdout.flush()


def torpor_cmd(g, *args: str) -> str:
    return "torpor " + (f"--root {g.root} " if g.root != "/run/torpor" else "") + " ".join(args)


def step_run(ctx) -> None:
    from torpor.runtime.run import embedded_config, run_detached

    g, cid = ctx["g"], ctx["id"]
    say(f"{torpor_cmd(g, 'run', '-d', cid, '--', 'sh', '-c', repr(COUNTER))}")
    raw = embedded_config(g.root, cid, ["sh", "-c", COUNTER])
    c = run_detached(g.root, cid, None, raw, embedded=True)
    ctx["container"] = c
    print(f"container {cid} runs with init PID {c.init_pid} (PID 1 inside)")


def step_state(ctx) -> None:
    from torpor.runtime.container import Container

    g, cid = ctx["g"], ctx["id"]
    say(torpor_cmd(g, "state", cid))
    print(json.dumps(Container.load(g.root, cid).oci_state(), indent=2))


def step_logs(ctx) -> None:
    g, cid = ctx["g"], ctx["id"]
    time.sleep(ctx.get("seconds", 3))
    say(f"{torpor_cmd(g, 'logs', cid)}   (after {ctx.get('seconds', 3)} s)")
    path = os.path.join(ctx["container"].dir, "container.log")
    with open(path, "rb") as f:
        sys.stdout.write(f.read().decode(errors="replace"))


def step_checkpoint(ctx) -> None:
    from torpor.runtime.checkpoint import create_named

    g, cid = ctx["g"], ctx["id"]
    say(torpor_cmd(g, "checkpoint", "create", cid, "counter"))
    res = create_named(g.root, cid, "counter")
    print(f"checkpoint \"counter\": {res.processes} processes, frozen "
          f"{res.frozen_seconds * 1000:.0f} ms; the container is stopped")


def step_wait_stopped(ctx) -> None:
    g, cid = ctx["g"], ctx["id"]
    secs = ctx.get("seconds", 3)
    time.sleep(secs)
    say(f"{torpor_cmd(g, 'logs', cid)} | tail -n 2   ({secs} s later: nothing new)")
    _tail(ctx, 2)


def step_restore(ctx) -> None:
    from torpor.runtime.checkpoint import start_from_named

    g, cid = ctx["g"], ctx["id"]
    say(torpor_cmd(g, "start", "--checkpoint", "counter", cid))
    c = start_from_named(g.root, cid, "counter")
    ctx["container"] = c
    print(f"container {cid} restored: init PID {c.init_pid} (PID 1 inside), appending to "
          "the same log")


def step_logs_after(ctx) -> None:
    g, cid = ctx["g"], ctx["id"]
    secs = ctx.get("seconds", 3)
    time.sleep(secs)
    say(f"{torpor_cmd(g, 'logs', cid)}   (after {secs} s more)")
    nums = _tail(ctx, 0)
    ok = nums == list(range(len(nums)))
    print(f"-> {len(nums)} lines, 0..{nums[-1] if nums else '?'}: "
          + ("no gap, no repeat" if ok else "NOT continuous"))


def _tail(ctx, n: int) -> list[int]:
    path = os.path.join(ctx["container"].dir, "container.log")
    with open(path, "rb") as f:
        text = f.read().decode(errors="replace")
    lines = text.splitlines()
    sys.stdout.write("\n".join(lines[-n:] if n else lines) + "\n")
    out = []
    for line in lines:
        try:
            out.append(int(line))
        except ValueError:
            pass
    return out


def step_delete(ctx) -> None:
    from torpor.runtime.container import Container

    g, cid = ctx["g"], ctx["id"]
    say(torpor_cmd(g, "delete", "--force", cid))
    Container.delete_id(g.root, cid, force=True)
    print(f"container {cid} deleted")


STEPS = [step_run, step_state, step_logs, step_checkpoint, step_state, step_wait_stopped,
         step_restore, step_state, step_logs_after, step_delete]


def main(argv: list[str], g) -> int:
    from torpor.cli.args import Parser

    p = Parser("demo", "Run the embedded counter, checkpoint it, restore it, show its log.")
    p.add_argument("--id", default=f"torpor-demo-{os.getpid()}")
    p.add_argument("--seconds", type=float, default=3)
    a = p.parse_args(argv)
    ctx = {"g": g, "id": a.id, "seconds": a.seconds}
    try:
        for step in STEPS:
            step(ctx)
    finally:
        from torpor.runtime.container import Container

        Container.delete_id(g.root, a.id, force=True)
    return 0

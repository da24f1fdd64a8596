"""torpor demo: the embedded default in a few steps.

Each step is one function in STEPS; checkpoint/restore steps are meant to be inserted
between `logs` and `delete`.
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


def step_delete(ctx) -> None:
    from torpor.runtime.container import Container

    g, cid = ctx["g"], ctx["id"]
    say(torpor_cmd(g, "delete", "--force", cid))
    Container.delete_id(g.root, cid, force=True)
    print(f"container {cid} deleted")


STEPS = [step_run, step_state, step_logs, step_state, step_delete]


def main(argv: list[str], g) -> int:
    from torpor.cli.args import Parser

    p = Parser("demo", "Run the embedded counter container, show it, delete it.")
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

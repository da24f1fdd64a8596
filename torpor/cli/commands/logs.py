"""torpor logs: what a detached container (run -d) wrote to stdout and stderr."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    import os
    import sys
    import time

    from torpor.cli.args import Parser

    p = Parser("logs", "Print the output of a detached container.")
    p.add_argument("-f", "--follow", action="store_true", help="follow until it stops")
    p.add_argument("id")
    a = p.parse_args(argv)
    from torpor.errors import TorporError
    from torpor.runtime.container import Container

    c = Container.load(g.root, a.id)
    path = os.path.join(c.dir, "container.log")
    if not os.path.exists(path):
        if c.rec.monitor_pid:
            return 0  # nothing written yet
        raise TorporError(f"container \"{a.id}\" has no log (only `run -d` keeps one)")
    out = sys.stdout.buffer
    with open(path, "rb") as f:
        while True:
            data = f.read(65536)
            if data:
                out.write(data)
                continue
            out.flush()
            if not a.follow:
                return 0
            if c.status() == "stopped" and not c.init_alive():
                from torpor.runtime import procs

                if not procs.alive(c.rec.monitor_pid, c.rec.monitor_start):
                    rest = f.read()
                    out.write(rest)
                    out.flush()
                    return 0
            time.sleep(0.1)
            try:
                c.rec = c.store.load(c.id)
            except TorporError:
                out.write(f.read())
                out.flush()
                return 0

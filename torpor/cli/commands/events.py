"""torpor events: resource usage of a container (runc's `events --stats`)."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    import json
    import sys
    import time

    from torpor.cli.args import Parser

    p = Parser("events", "Print container statistics as JSON events.")
    p.add_argument("--stats", action="store_true", help="one stats event, then exit")
    p.add_argument("--interval", default="5s", help="seconds between events (5s)")
    p.add_argument("id")
    a = p.parse_args(argv)
    from torpor.errors import TorporError
    from torpor.runtime.container import Container

    try:
        interval = float(a.interval.rstrip("s"))
    except ValueError:
        raise TorporError(f"events: bad --interval {a.interval!r}") from None
    c = Container.load(g.root, a.id)
    while True:
        ev = {"type": "stats", "id": c.id, "data": c.cgroup.stats()}
        sys.stdout.write(json.dumps(ev) + "\n")
        sys.stdout.flush()
        if a.stats or c.status() == "stopped":
            return 0
        time.sleep(interval)

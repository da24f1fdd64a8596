"""torpor update: change a container's cgroup limits."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    import sys

    from torpor.cli.args import Parser

    p = Parser("update", "Update the resource limits of a container.")
    p.add_argument("-r", "--resources", help="LinuxResources JSON file, - for stdin")
    p.add_argument("--memory", type=int)
    p.add_argument("--memory-reservation", type=int)
    p.add_argument("--memory-swap", type=int)
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--cpu-shares", type=int)
    p.add_argument("--cpu-quota", type=int)
    p.add_argument("--cpu-period", type=int)
    p.add_argument("--cpuset-cpus")
    p.add_argument("--cpuset-mems")
    p.add_argument("id")
    a = p.parse_args(argv)
    from torpor.errors import TorporError
    from torpor.runtime.config import parse_json
    from torpor.runtime.container import Container

    res: dict = {}
    if a.resources:
        if a.resources == "-":
            data = sys.stdin.buffer.read()
        else:
            try:
                with open(a.resources, "rb") as f:
                    data = f.read()
            except OSError as err:
                raise TorporError(f"resources {a.resources}: {err.strerror}") from None
        res = parse_json(data, f"resources {a.resources}")
        if not isinstance(res, dict):
            raise TorporError(f"resources {a.resources}: must be a JSON object")
    for flag, section, key in (("memory", "memory", "limit"),
                               ("memory_reservation", "memory", "reservation"),
                               ("memory_swap", "memory", "swap"),
                               ("pids_limit", "pids", "limit"),
                               ("cpu_shares", "cpu", "shares"), ("cpu_quota", "cpu", "quota"),
                               ("cpu_period", "cpu", "period"), ("cpuset_cpus", "cpu", "cpus"),
                               ("cpuset_mems", "cpu", "mems")):
        value = getattr(a, flag)
        if value is not None:
            res.setdefault(section, {})[key] = value
    if not res:
        raise TorporError("update: nothing to change (give --resources or a limit flag)")
    Container.load(g.root, a.id).update(res)
    return 0

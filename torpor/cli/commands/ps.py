"""torpor ps: the processes of a container."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    import sys

    from torpor import jsonlite
    from torpor.cli.args import Parser

    p = Parser("ps", "List the processes of a container.")
    p.add_argument("-f", "--format", default="table", choices=["table", "json"])
    p.add_argument("id")
    p.add_argument("ps_args", nargs="*", help="ignored (runc passes them to ps(1))")
    a = p.parse_args(argv)
    from torpor.runtime import procs
    from torpor.runtime.container import Container

    c = Container.load(g.root, a.id)
    pids = c.processes()
    if a.format == "json":
        sys.stdout.write(jsonlite.dumps(pids) + "\n")
        return 0
    print(f"{'UID':>6} {'PID':>8} {'PPID':>8} S CMD")
    for pid in pids:
        st = procs.proc_stat(pid)
        if st is None:
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                uid = next((ln.split()[1] for ln in f if ln.startswith("Uid:")), "?")
        except OSError:
            uid = "?"
        print(f"{uid:>6} {pid:>8} {st[2]:>8} {st[0]} {procs.cmdline(pid)}")
    return 0

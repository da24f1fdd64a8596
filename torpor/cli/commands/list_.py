"""torpor list: the containers under --root."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    import sys

    from torpor import jsonlite
    from torpor.cli.args import Parser

    p = Parser("list", "List containers.")
    p.add_argument("-f", "--format", default="table", choices=["table", "json"])
    p.add_argument("-q", "--quiet", action="store_true", help="ids only")
    a = p.parse_args(argv)
    from torpor.runtime.container import Container

    cs = Container.list(g.root)
    if a.quiet:
        for c in cs:
            print(c.id)
        return 0
    states = [c.oci_state() for c in cs]
    if a.format == "json":
        sys.stdout.write(jsonlite.dumps(states) + "\n")
        return 0
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
             for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0

"""torpor delete: remove a stopped (or, with --force, any) container and all it left."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    from torpor.cli.args import Parser

    p = Parser("delete", "Delete a container.")
    p.add_argument("-f", "--force", action="store_true", help="kill it first; no error if gone")
    p.add_argument("ids", nargs="+", metavar="id")
    a = p.parse_args(argv)
    from torpor.runtime.container import Container

    for cid in a.ids:
        Container.delete_id(g.root, cid, force=a.force)
    return 0

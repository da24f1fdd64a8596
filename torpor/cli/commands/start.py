"""torpor start: release a created container's init (it execve's the process)."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    from torpor.cli.args import Parser

    p = Parser("start", "Start a created container.")
    p.add_argument("id")
    a = p.parse_args(argv)
    from torpor.runtime.container import Container

    Container.load(g.root, a.id).start()
    return 0

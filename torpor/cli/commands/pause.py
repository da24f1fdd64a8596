"""torpor pause: freeze every process of a container (cgroup freezer)."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    from torpor.cli.args import Parser

    p = Parser("pause", "Freeze a running container.")
    p.add_argument("id")
    a = p.parse_args(argv)
    from torpor.runtime.container import Container

    Container.load(g.root, a.id).pause()
    return 0

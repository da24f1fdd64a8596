"""torpor resume: thaw a paused container."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    from torpor.cli.args import Parser

    p = Parser("resume", "Thaw a paused container.")
    p.add_argument("id")
    a = p.parse_args(argv)
    from torpor.runtime.container import Container

    Container.load(g.root, a.id).resume()
    return 0

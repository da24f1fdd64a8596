"""torpor kill: send a signal to a container's init (or to all its processes)."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    from torpor.cli.args import Parser

    p = Parser("kill", "Send a signal (default TERM) to a container.")
    p.add_argument("-a", "--all", action="store_true", help="every process of the container")
    p.add_argument("id")
    p.add_argument("signal", nargs="?", default="TERM", help="name (TERM, SIGKILL) or number")
    a = p.parse_args(argv)
    from torpor.runtime.container import Container, parse_signal

    sig = parse_signal(a.signal)
    Container.load(g.root, a.id).kill(sig, all_processes=a.all)
    return 0

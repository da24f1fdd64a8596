"""torpor start: release a created container's init (it execve's the process);
`start --checkpoint NAME [--checkpoint-dir D] ID` restores a stopped container from one of its
named checkpoints (Docker's `docker start --checkpoint`)."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    from torpor.cli.args import Parser

    p = Parser("start", "Start a created container (or restore one from a named checkpoint).")
    p.add_argument("--checkpoint", help="restore from this named checkpoint")
    p.add_argument("--checkpoint-dir", help="directory of the named checkpoints")
    p.add_argument("id")
    a = p.parse_args(argv)
    if a.checkpoint:
        from torpor.runtime.checkpoint import start_from_named

        start_from_named(g.root, a.id, a.checkpoint, directory=a.checkpoint_dir)
        return 0
    if a.checkpoint_dir:
        from torpor.errors import TorporError

        raise TorporError("start: --checkpoint-dir needs --checkpoint")
    from torpor.runtime.container import Container

    Container.load(g.root, a.id).start()
    return 0

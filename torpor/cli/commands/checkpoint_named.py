"""torpor checkpoint create|ls|rm: Docker-style named checkpoints of a container.

    checkpoint create [--leave-running] [--checkpoint-dir D] ID NAME
    checkpoint ls [--checkpoint-dir D] [--format table|json] ID
    checkpoint rm [--checkpoint-dir D] ID NAME

Images live in <root>/<id>/checkpoints/<name> (or D/<name>); `start --checkpoint NAME ID`
restores one into the stopped container.
"""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    from torpor.cli.args import Parser

    cmd, rest = argv[0], argv[1:]
    p = Parser(f"checkpoint {cmd}", {
        "create": "Checkpoint a container into a named checkpoint.",
        "ls": "List the named checkpoints of a container.",
        "rm": "Remove a named checkpoint.",
    }[cmd])
    p.add_argument("--checkpoint-dir", help="directory of the checkpoints "
                   "(default <root>/<id>/checkpoints)")
    if cmd == "create":
        p.add_argument("--leave-running", action="store_true",
                       help="keep the container running after the checkpoint")
    if cmd == "ls":
        p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("id")
    if cmd != "ls":
        p.add_argument("name")
    a = p.parse_args(rest)
    from torpor.runtime import checkpoint as ck

    if cmd == "create":
        ck.create_named(g.root, a.id, a.name, directory=a.checkpoint_dir,
                        leave_running=a.leave_running)
        print(a.name)
    elif cmd == "rm":
        ck.remove_named(g.root, a.id, a.name, directory=a.checkpoint_dir)
    else:
        items = ck.list_named(g.root, a.id, directory=a.checkpoint_dir)
        if a.format == "json":
            import json

            print(json.dumps(items, indent=1))
        else:
            print("CHECKPOINT NAME")
            for it in items:
                print(it["name"])
    return 0

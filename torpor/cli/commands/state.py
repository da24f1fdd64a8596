"""torpor state: the OCI state JSON of a container (fast path: torpor.jsonlite + os only)."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    import sys

    from torpor import jsonlite

    if len(argv) != 1 or argv[0].startswith("-"):
        if argv and argv[0] in ("-h", "--help"):
            sys.stdout.write("usage: torpor state ID\n\nPrint the OCI state of a container.\n")
            return 0
        sys.stderr.write("torpor: state: usage: torpor state ID\n")
        return 2
    from torpor.runtime.container import Container

    c = Container.load(g.root, argv[0])
    sys.stdout.write(jsonlite.dumps(c.oci_state(), indent=2) + "\n")
    return 0

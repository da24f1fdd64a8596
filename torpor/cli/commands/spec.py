"""torpor spec: write a default config.json (runc's template) into the bundle."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    import json
    import os

    from torpor.cli.args import Parser
    from torpor.errors import TorporError
    from torpor.runtime.spec import default_spec

    p = Parser("spec", "Write a default config.json (the same shape as `runc spec`).")
    p.add_argument("-b", "--bundle", default=".", help="bundle directory (default .)")
    p.add_argument("--rootless", action="store_true", help="not supported: rejected")
    p.add_argument("--args", nargs="+", default=None, help="process.args (default sh)")
    p.add_argument("--no-terminal", action="store_true", help="process.terminal false")
    a = p.parse_args(argv)
    if a.rootless:
        raise TorporError("spec --rootless: rootless containers are not supported")
    path = os.path.join(a.bundle, "config.json")
    if os.path.exists(path):
        raise TorporError(f"file {path} exists: remove it first")
    spec = default_spec(a.args, terminal=not a.no_terminal)
    with open(path, "w") as f:
        json.dump(spec, f, indent="\t")
        f.write("\n")
    return 0

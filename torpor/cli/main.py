"""Entry point: global flags, then one command module, imported lazily.

runc's conventions are kept: global flags (--root, --log, --log-format, --debug) come before
the command; long flags may be spelled with one dash (`-no-subreaper`), booleans may repeat.
"""

from __future__ import annotations

import os
import sys

# command name -> module under torpor.cli.commands (one file per command, as in runc/youki)
COMMANDS: dict[str, str] = {
    "spec": "spec",
    "create": "create",
    "start": "start",
    "run": "run",
    "state": "state",
    "list": "list_",
    "ps": "ps",
    "kill": "kill",
    "pause": "pause",
    "resume": "resume",
    "delete": "delete",
    "exec": "exec_",
    "update": "update",
    "logs": "logs",
    "events": "events",
    "checkpoint": "checkpoint",
    "restore": "restore",
    "image": "image",
    "demo": "demo",
}

USAGE = """usage: torpor [global options] COMMAND [options] [args]

A container runtime with checkpoint/restore (runc- and runsc-compatible).

global options:
  --root DIR           state directory (default /run/torpor)
  --log FILE           write log messages to FILE
  --log-format FMT     text (default) or json (one JSON object per line)
  --debug              verbose logging; tracebacks on internal errors
  -v, --version        print the version

commands:
  spec create start run state list ps kill pause resume delete exec update
  logs events checkpoint restore image demo

Run `torpor COMMAND --help` for the options of one command.
"""


class GlobalOptions:
    """Options given before the command name."""

    def __init__(self) -> None:
        self.root = os.environ.get("TORPOR_ROOT", "/run/torpor")
        self.log: str | None = None
        self.log_format = "text"
        self.debug = False
        self.systemd_cgroup = False


# global flags that take a value / are booleans; others runc knows are accepted and ignored
_GLOBAL_VALUE = {"root", "log", "log-format", "criu", "rootless"}
_GLOBAL_BOOL = {"debug", "systemd-cgroup"}


def _parse_globals(argv: list[str]) -> tuple[GlobalOptions, list[str]]:
    g = GlobalOptions()
    i = 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("-") or tok == "-":
            break
        if tok in ("-v", "--version", "-version"):
            return g, ["--version"]
        if tok in ("-h", "--help", "-help"):
            return g, ["--help"]
        name, eq, value = tok.lstrip("-").partition("=")
        if name in _GLOBAL_VALUE:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise SystemExit(f"torpor: flag --{name} needs a value")
                value = argv[i]
            if name == "root":
                g.root = value
            elif name == "log":
                g.log = value
            elif name == "log-format":
                g.log_format = value
        elif name in _GLOBAL_BOOL:
            if name == "debug":
                g.debug = True
            else:
                g.systemd_cgroup = True
        else:
            raise SystemExit(f"torpor: unknown global flag {tok!r} (see torpor --help)")
        i += 1
    return g, argv[i:]


def _print_version() -> None:
    from torpor import OCI_VERSION, __version__

    # runc's layout: dockerd parses "runc version X" and "commit: Y"
    print(f"runc version {__version__}")
    print(f"torpor version {__version__}")
    print("commit: torpor")
    print(f"spec: {OCI_VERSION}")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    g, rest = _parse_globals(argv)
    if not rest or rest[0] == "--help":
        sys.stdout.write(USAGE)
        return 0 if rest else 2
    if rest[0] == "--version":
        _print_version()
        return 0
    name, args = rest[0], rest[1:]
    if name not in COMMANDS:
        sys.stderr.write(f"torpor: unknown command {name!r} (see torpor --help)\n")
        return 2

    from torpor.cli import output

    output.setup_logging(g)
    try:
        # __import__ with a fromlist gives the submodule; importlib's package would import
        # warnings (~0.4 ms of every command)
        module = __import__(f"torpor.cli.commands.{COMMANDS[name]}", fromlist=["_"])
        return int(module.main(args, g) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as err:  # noqa: BLE001 - the one place that turns errors into exit codes
        return output.report_error(name, err, g)


def entry() -> None:
    """The `torpor` program (console script and `python -m torpor`)."""
    try:
        code = main()
    except SystemExit as stop:  # the option parser's exits, --help
        code = stop.code
    if code is not None and not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    # Leave without the interpreter's tear-down (finalising every module and object: ~7 ms
    # per command). Nothing torpor holds needs it: the log writes through, worker threads
    # are done, files and children are the kernel's to close and keep. Only the standard
    # streams' buffers are ours to flush.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # e.g. a closed pipe
        code = code or 1
    os._exit(code or 0)


if __name__ == "__main__":
    entry()

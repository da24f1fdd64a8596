"""Error reporting for the CLI: a one-line `torpor: ...` on stderr, and an error record in the
--log file (torpor.log), where containerd, Docker and Podman look for it."""

from __future__ import annotations

import sys

from torpor.log import log

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms on every command

if TYPE_CHECKING:
    from torpor.cli.main import GlobalOptions


def setup_logging(g: GlobalOptions) -> None:
    log.configure(g.log, g.log_format == "json", g.debug)


def report_error(command: str, err: BaseException, g: GlobalOptions) -> int:
    from torpor.errors import TorporError

    if isinstance(err, TorporError):
        msg = str(err).replace("\n", " ")
        code = err.exit_code
    elif isinstance(err, OSError):
        msg = f"{command}: {err.strerror or err}" + (f": {err.filename}" if err.filename else "")
        code = 1
    else:
        msg = f"{command}: internal error: {type(err).__name__}: {err}".replace("\n", " ")
        code = 1
    if g.debug or not isinstance(err, (TorporError, OSError)):
        import traceback

        log.debug("%s", "".join(traceback.format_exception(err)))
    if g.log:
        log.error(msg)
    sys.stderr.write(f"torpor: {msg}\n")
    return code


def write_pid_file(path: str, pid: int) -> None:
    """Write a pid file atomically (containerd reads it as soon as the command returns)."""
    import os

    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)

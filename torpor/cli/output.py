"""Logging and error reporting for the CLI.

containerd, Docker and Podman build their error messages from the last
`{"level":"error","msg":...}` line of the --log file, so with --log-format json every record is
one JSON object per line. The user always gets a one-line `torpor: ...` on stderr.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torpor.cli.main import GlobalOptions

log = logging.getLogger("torpor")


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = {"WARNING": "warning", "CRITICAL": "fatal"}.get(
            record.levelname, record.levelname.lower()
        )
        return json.dumps(
            {
                "level": level,
                "msg": record.getMessage(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            }
        )


def setup_logging(g: GlobalOptions) -> None:
    root = logging.getLogger("torpor")
    root.setLevel(logging.DEBUG if g.debug else logging.INFO)
    root.propagate = False
    if g.log:
        try:
            handler: logging.Handler = logging.FileHandler(g.log)
        except OSError as err:
            sys.stderr.write(f"torpor: cannot open log file {g.log}: {err.strerror}\n")
            handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.StreamHandler(sys.stderr)
        # without --log only warnings and errors reach stderr (unless --debug)
        handler.setLevel(logging.DEBUG if g.debug else logging.WARNING)
    if g.log_format == "json":
        handler.setFormatter(_JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(handler)


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

"""torpor's log: one small logger shared by the CLI, the runtime and the engine.

Not the `logging` package: importing it (with threading, traceback, string, weakref) costs
~8 ms, and containerd starts torpor for every operation. Records go to the --log file (or
stderr) as text lines or, with --log-format json, as one JSON object per line: containerd,
Docker and Podman build their error messages from the last `{"level":"error","msg":...}`.
"""

from __future__ import annotations

import sys
import time

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
_NAMES = {DEBUG: "debug", INFO: "info", WARNING: "warning", ERROR: "error"}


class Log:
    def __init__(self) -> None:
        self.level = WARNING  # before configure(): warnings and errors to stderr
        self.stream = sys.stderr
        self.json = False
        self.to_file = False

    def configure(self, path: str | None, json_format: bool, debug: bool) -> None:
        """--log PATH gets info and up (debug with --debug); without it stderr gets warnings."""
        self.json = json_format
        self.level = DEBUG if debug else (INFO if path else WARNING)
        if path:
            try:
                self.stream = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
                self.to_file = True
            except OSError as err:
                sys.stderr.write(f"torpor: cannot open log file {path}: {err.strerror}\n")

    def emit(self, level: int, fmt: str, *args: object) -> None:
        if level < self.level:
            return
        msg = fmt % args if args else fmt
        now = time.time()
        if self.json:
            from torpor import jsonlite

            line = jsonlite.dumps({"level": _NAMES[level], "msg": msg,
                               "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
            line = f"{stamp},{int(now % 1 * 1000):03d} {_NAMES[level].upper()} {msg}"
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a log that cannot be written must not turn into the command's error

    def debug(self, fmt: str, *args: object) -> None:
        self.emit(DEBUG, fmt, *args)

    def info(self, fmt: str, *args: object) -> None:
        self.emit(INFO, fmt, *args)

    def warning(self, fmt: str, *args: object) -> None:
        self.emit(WARNING, fmt, *args)

    def error(self, fmt: str, *args: object) -> None:
        self.emit(ERROR, fmt, *args)


log = Log()

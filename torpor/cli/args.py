"""argparse, made to accept runc's spellings.

urfave/cli (runc) accepts long flags with one dash (`-no-subreaper`, `-bundle B`) and booleans
given twice (`--leave-running --leave-running`, as Podman does). argparse accepts repeats of
store_true already; single-dash long flags are rewritten before parsing.
"""

from __future__ import annotations

import argparse
import sys


class _Formatter(argparse.HelpFormatter):
    """add_argument() builds a formatter to check each option; argparse's own asks shutil for
    the terminal width (~3 ms of imports per command). The width matters only for --help."""

    def __init__(self, prog: str, **kw) -> None:
        if "width" not in kw:
            import os

            kw["width"] = max(int(os.environ.get("COLUMNS", "0") or 0), 80) - 2
        super().__init__(prog, **kw)


class Parser(argparse.ArgumentParser):
    def __init__(self, prog: str, description: str | None = None, **kw) -> None:
        kw.setdefault("allow_abbrev", False)
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(prog=f"torpor {prog}", description=description, **kw)

    def _normalize(self, args: list[str]) -> list[str]:
        out: list[str] = []
        for i, tok in enumerate(args):
            if tok == "--":
                out.extend(args[i:])
                break
            if len(tok) > 2 and tok[0] == "-" and tok[1] != "-":
                name = tok.split("=", 1)[0]
                if "--" + name[1:] in self._option_string_actions and name not in self._option_string_actions:
                    tok = "-" + tok
            out.append(tok)
        return out

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        if args is None:
            args = sys.argv[1:]
        return super().parse_args(self._normalize(list(args)), namespace)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if args is None:
            args = sys.argv[1:]
        return super().parse_known_args(self._normalize(list(args)), namespace)

    def error(self, message: str):  # one line, exit 2, as argparse does but without usage spam
        msg = f"{self.prog.removeprefix('torpor ')}: {message}"
        from torpor.log import log

        if log.to_file:
            log.error(msg)  # the clients read the --log file, not only stderr
        self.exit(2, f"torpor: {msg}\n")

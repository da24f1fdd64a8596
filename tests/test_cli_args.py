"""torpor.cli.args.Parser against argparse (parse_intermixed_args: options and positionals may mix, as in runc), on every command's own options.

Each command module builds its parser inside main(); a recording stand-in captures the
add_argument calls, then the same table goes into argparse and into torpor's parser, and both
parse the same argv: what the clients send (docs: ../shared/design/oci-clients.md) and
hypothesis-made mixes of options, values and positionals. Errors must be errors in both, one
line and exit 2 in torpor's."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torpor.cli import args as cli_args
from torpor.cli.main import COMMANDS, GlobalOptions


class _Stop(Exception):
    pass


class _Recorder:
    tables: list[tuple[str, list]] = []

    def __init__(self, prog, description=None, **kw) -> None:
        self.prog, self.calls = prog, []

    def add_argument(self, *names, **kw) -> None:
        self.calls.append((names, kw))

    def parse_args(self, argv=None):
        _Recorder.tables.append((self.prog, self.calls))
        raise _Stop


def _tables() -> dict[str, list]:
    """{prog: [(names, kw), ...]} of every command."""
    out = {}
    real = cli_args.Parser
    cli_args.Parser = _Recorder
    try:
        for cmd, mod in COMMANDS.items():
            m = importlib.import_module(f"torpor.cli.commands.{mod}")
            m.Parser = _Recorder if hasattr(m, "Parser") else None
            argvs = [["show"]] if cmd == "image" else [[]]
            if cmd == "checkpoint":
                argvs = [[], ["create"], ["ls"], ["rm"]]
            for argv in argvs:
                _Recorder.tables.clear()
                with contextlib.suppress(_Stop, SystemExit), contextlib.redirect_stderr(io.StringIO()):
                    m.main(argv, GlobalOptions())
                for prog, calls in _Recorder.tables:
                    out[f"{cmd} {prog} {argv}"] = calls
            if hasattr(m, "Parser"):
                m.Parser = real
    finally:
        cli_args.Parser = real
        for mod in COMMANDS.values():
            m = importlib.import_module(f"torpor.cli.commands.{mod}")
            if hasattr(m, "Parser"):
                m.Parser = real
    return out


TABLES = _tables()


def _both(calls):
    ours = cli_args.Parser("x")
    theirs = argparse.ArgumentParser(prog="x", allow_abbrev=False, add_help=False)
    for names, kw in calls:
        ours.add_argument(*names, **kw)
        theirs.add_argument(*names, **kw)
    return ours, theirs


def _parse(parser, argv, ours: bool):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            ns = parser.parse_args(argv) if ours else parser.parse_intermixed_args(argv)
        except SystemExit as e:
            return ("exit", e.code, err.getvalue())
    return ("ok", vars(ns))


def test_every_command_was_recorded() -> None:
    progs = " ".join(TABLES)
    for cmd in ("create", "start", "state", "kill", "delete", "checkpoint", "restore", "exec",
                "run", "ps", "update", "events", "image"):
        assert f"{cmd} " in progs or cmd == "state", cmd


def _tokens(calls):
    """Tokens a user could give this parser: its option spellings, values, stray words."""
    toks = ["--", "-", "-9", "x", "y", "12", "--nosuch", "-z", "KILL", "zstd", "json", "table"]
    for names, kw in calls:
        for n in names:
            if n.startswith("-"):
                toks.append(n)
                if n.startswith("--"):
                    toks.append(n[1:])  # runc's single-dash long flag
                    if kw.get("action") != "store_true":
                        toks.append(n + "=5")
                        toks.append(n + "=none")
    return toks


@pytest.mark.parametrize("key", sorted(TABLES))
def test_same_result_as_argparse(key: str) -> None:
    calls = TABLES[key]
    ours, theirs = _both(calls)
    # argparse does not know runc's single-dash long flags: normalise them for it alone
    long_names = {n for names, _ in calls for n in names if n.startswith("--")}

    def for_argparse(argv):
        out = []
        for i, t in enumerate(argv):
            if t == "--":
                return out + argv[i:]
            name = t.split("=", 1)[0]
            out.append("-" + t if not t.startswith("--") and "-" + name in long_names else t)
        return out

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.sampled_from(_tokens(calls)), max_size=7))
    def check(argv):
        a = _parse(ours, argv, True)
        b = _parse(theirs, for_argparse(argv), False)
        if "--" in argv:
            return  # argparse 3.11's intermixed mode mishandles `--` (test_double_dash: ours)
        assert a[0] == b[0], (argv, a, b)
        if a[0] == "ok":
            assert a[1] == b[1], (argv, a, b)
        else:
            assert a[1] == 2 and a[2].count("\n") == 1 and a[2].startswith("torpor: "), a

    check()


def test_help_lists_every_option() -> None:
    for calls in TABLES.values():
        ours, _ = _both(calls)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
            ours.parse_args(["--help"])
        assert e.value.code == 0
        for names, _kw in calls:
            assert names[0] in out.getvalue() or not names[0].startswith("-")


def test_double_dash() -> None:
    """After `--` every token is a positional, option-like or not (POSIX, runc)."""
    p = cli_args.Parser("exec")
    p.add_argument("--tty", "-t", action="store_true")
    p.add_argument("id")
    p.add_argument("cmd", nargs="*")
    ns = p.parse_args(["-t", "c1", "--", "sh", "-c", "--tty", "--"])
    assert (ns.tty, ns.id, ns.cmd) == (True, "c1", ["sh", "-c", "--tty", "--"])
    ns = p.parse_args(["c1", "-bundle-like"][:1] + ["--", "-t"])
    assert (ns.tty, ns.cmd) == (False, ["-t"])

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
    toks = ["--", "-", "-9", "x", "y", "12", "--nosuch", "-z", "KILL", "zstd", "json", "table",
            "", "-1.5", "-.5", "-1.", "-x y", "-="]
    shorts = [n for names, _ in calls for n in names if len(n) == 2 and n[0] == "-"]
    for a in shorts:  # clusters: `-dt`, `-dpFILE`, `-d=t`, `-d=`
        toks += [a + "x", a + "=", a + "=x"] + [a + b[1] for b in shorts] + [a + b[1] + "v" for b in shorts]
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
    @given(st.lists(st.sampled_from(_tokens(calls)), max_size=6))
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


def parser_for(cmd: str) -> cli_args.Parser:
    """The parser a command builds (its recorded table, into torpor's Parser)."""
    key = next(k for k in TABLES if k.startswith(f"{cmd} "))
    p = cli_args.Parser(key.split(" [")[0].split(" ", 1)[1])
    for names, kw in TABLES[key]:
        p.add_argument(*names, **kw)
    return p


B, ID, SOCK = "/run/containerd/io.containerd.runtime.v2.task/default/c1", "c1", "/tmp/pty.sock"
# (command, argv after the command, expected attributes): oci-clients.md, line by line
CLIENT_ARGV = [
    ("create", ["--bundle", B, "--pid-file", f"{B}/init.pid", ID],
     {"bundle": B, "pid_file": f"{B}/init.pid", "console_socket": None, "id": ID,
      "preserve_fds": 0, "no_pivot": False, "no_new_keyring": False}),
    ("create", ["--bundle", B, "--pid-file", f"{B}/init.pid", "--console-socket", SOCK, ID],
     {"bundle": B, "console_socket": SOCK, "id": ID}),
    ("create", ["-bundle", B, "-pid-file", "p", "-no-pivot", ID],  # urfave/cli spellings
     {"bundle": B, "pid_file": "p", "no_pivot": True, "id": ID}),
    ("create", ["-b", B, ID, "--preserve-fds=2"], {"bundle": B, "preserve_fds": 2, "id": ID}),
    ("start", [ID], {"id": ID, "checkpoint": None, "checkpoint_dir": None}),
    ("start", ["--checkpoint", "cp1", "--checkpoint-dir", "/d", ID],
     {"id": ID, "checkpoint": "cp1", "checkpoint_dir": "/d"}),
    ("ps", ["--format", "json", ID], {"format": "json", "id": ID, "ps_args": []}),
    ("ps", [ID, "-f", "table"], {"format": "table", "id": ID, "ps_args": []}),
    ("kill", [ID, "15"], {"id": ID, "signal": "15", "all": False}),
    ("kill", [ID, "9"], {"id": ID, "signal": "9"}),
    ("kill", ["--all", ID, "9"], {"id": ID, "signal": "9", "all": True}),
    ("kill", [ID], {"id": ID, "signal": "TERM", "all": False}),
    ("kill", [ID, "-a", "KILL"], {"id": ID, "signal": "KILL", "all": True}),
    ("pause", [ID], {"id": ID}),
    ("resume", [ID], {"id": ID}),
    ("update", ["--resources", "-", ID], {"resources": "-", "id": ID, "memory": None}),
    ("update", ["--memory", "1048576", "--pids-limit=10", ID],
     {"memory": 1048576, "pids_limit": 10, "id": ID}),
    ("exec", ["--process", "/tmp/p.json", "--console-socket", SOCK, "--detach", "--pid-file",
              "/tmp/e.pid", ID],
     {"process": "/tmp/p.json", "console_socket": SOCK, "detach": True, "pid_file": "/tmp/e.pid",
      "id": ID, "cmd": [], "env": [], "cap": [], "additional_gids": [], "tty": False}),
    ("exec", ["--pid-file", "F", "--process", "P.json", "--detach", ID],  # conmon's order
     {"pid_file": "F", "process": "P.json", "detach": True, "id": ID}),
    ("exec", ["-e", "A=1", "--env=B=2", "-g", "5", "-g7", "-t", ID, "--", "sh", "-c", "ls -l"],
     {"env": ["A=1", "B=2"], "additional_gids": [5, 7], "tty": True, "id": ID,
      "cmd": ["sh", "-c", "ls -l"]}),
    ("exec", ["-dt", ID, "top"], {"detach": True, "tty": True, "id": ID, "cmd": ["top"]}),
    ("delete", [ID], {"ids": [ID], "force": False}),
    ("delete", ["--force", ID], {"ids": [ID], "force": True}),
    ("delete", ["-f", ID, "c2"], {"ids": [ID, "c2"], "force": True}),
    ("checkpoint", ["--image-path", "/i", "--work-path", "/w", ID],
     {"image_path": "/i", "work_path": "/w", "container_id": ID, "leave_running": False,
      "file_locks": False, "compress": "none", "pid": None, "parent_path": None}),
    ("checkpoint", ["--image-path", "/i", "--work-path", "/w", "--file-locks",
                    "--leave-running", ID],
     {"image_path": "/i", "file_locks": True, "leave_running": True, "container_id": ID}),
    ("checkpoint", ["--image-path", "/u/checkpoint", "--work-path", "/u", "--leave-running",
                    "--leave-running", "--tcp-established", "--file-locks", ID],  # Podman
     {"image_path": "/u/checkpoint", "leave_running": True, "tcp_established": True,
      "file_locks": True, "container_id": ID}),
    ("checkpoint", ["--pid", "123", "--image-path=/i", "--compress", "zstd", "--sync"],
     {"pid": 123, "image_path": "/i", "compress": "zstd", "sync": True, "container_id": None}),
    ("restore", ["--image-path", "/i", "--work-path", "/w", "--detach", "--pid-file",
                 f"{B}/init.pid", "-no-subreaper", "--bundle", B, ID],  # containerd's shim
     {"image_path": "/i", "work_path": "/w", "detach": True, "pid_file": f"{B}/init.pid",
      "no_subreaper": True, "bundle": B, "container_id": ID, "lazy": False,
      "console_socket": None}),
    ("restore", ["--bundle", "/u", "--pid-file", "/r/pidfile", "--detach", "--image-path",
                 "/u/checkpoint", "--work-path", "/u", "--tcp-established", "--file-locks",
                 ID],  # Podman
     {"bundle": "/u", "pid_file": "/r/pidfile", "detach": True, "image_path": "/u/checkpoint",
      "tcp_established": True, "file_locks": True, "container_id": ID}),
    ("restore", ["--image-path", "/i"], {"image_path": "/i", "container_id": None,
                                         "detach": False, "bundle": None}),
    ("run", ["-d", ID, "--", "sh", "-c", "sleep 1"],
     {"detach": True, "id": ID, "cmd": ["sh", "-c", "sleep 1"], "bundle": None, "tty": False}),
    ("run", ["--bundle", B, "--pid-file", "p", "-detach", ID],
     {"detach": True, "bundle": B, "pid_file": "p", "id": ID, "cmd": []}),
    ("spec", ["--args", "sleep", "10", "-b", "/b"], {"args": ["sleep", "10"], "bundle": "/b"}),
    ("spec", [], {"args": None, "bundle": ".", "rootless": False, "no_terminal": False}),
    ("events", ["--stats", ID], {"stats": True, "interval": "5s", "id": ID}),
    ("list", ["--format", "json"], {"format": "json", "quiet": False}),
    ("list", ["-q"], {"format": "table", "quiet": True}),
    ("logs", ["-f", ID], {"follow": True, "id": ID}),
    ("image", ["/i", "--format=json", "--verify"], {"path": "/i", "format": "json",
                                                     "verify": True}),
    ("demo", ["--seconds", "0.5"], {"seconds": 0.5}),
]


@pytest.mark.parametrize(("cmd", "argv", "want"), CLIENT_ARGV,
                         ids=[f"{c} {' '.join(a)}" for c, a, _ in CLIENT_ARGV])
def test_client_argv(cmd: str, argv: list[str], want: dict) -> None:
    got = vars(parser_for(cmd).parse_args(argv))
    assert {k: got[k] for k in want} == want


def test_named_checkpoint_argv() -> None:
    """Docker's `checkpoint create|ls|rm` (checkpoint_named builds one parser per action)."""
    def parse(action, argv):
        key = next(k for k in TABLES if k.startswith(f"checkpoint checkpoint {action} "))
        p = cli_args.Parser(f"checkpoint {action}")
        for names, kw in TABLES[key]:
            p.add_argument(*names, **kw)
        return vars(p.parse_args(argv))

    assert parse("create", ["--leave-running", "--checkpoint-dir", "/d", ID, "cp1"]) == {
        "checkpoint_dir": "/d", "leave_running": True, "id": ID, "name": "cp1"}
    assert parse("ls", [ID]) == {"checkpoint_dir": None, "format": "table", "id": ID}
    assert parse("rm", [ID, "cp1"]) == {"checkpoint_dir": None, "id": ID, "name": "cp1"}


@pytest.mark.parametrize(("cmd", "argv", "words"), [
    ("create", ["--nosuch", ID], "unrecognized arguments: --nosuch"),
    ("create", [ID, "extra"], "unrecognized arguments: extra"),
    ("create", ["--bundle"], "argument -b/--bundle: expected one argument"),
    ("create", ["--bundle", "--pid-file", "p", ID], "argument -b/--bundle: expected one argument"),
    ("create", ["--preserve-fds", "x", ID], "argument --preserve-fds: invalid int value: 'x'"),
    ("create", [], "the following arguments are required: id"),
    ("checkpoint", ["--compress", "lz4", ID], "argument --compress: invalid choice: 'lz4'"),
    ("checkpoint", ["--leave-running=yes", ID],
     "argument --leave-running: ignored explicit argument 'yes'"),
    ("restore", [ID], "the following arguments are required: --image-path"),
    ("exec", ["-dz", ID], "argument -d/--detach: ignored explicit argument 'z'"),
    ("delete", [], "the following arguments are required: id"),
    ("spec", ["--args"], "argument --args: expected at least one argument"),
    ("demo", ["--seconds", "soon"], "argument --seconds: invalid float value: 'soon'"),
])
def test_errors_one_line_exit_2(cmd: str, argv: list[str], words: str, capsys) -> None:
    p = parser_for(cmd)
    with pytest.raises(SystemExit) as e:
        p.parse_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith(f"torpor: {cmd}: ") and err.count("\n") == 1 and words in err, err


def test_help_of_each_command(capsys) -> None:
    """`torpor CMD --help` (Podman probes `checkpoint --help`): exit 0, usage, every option
    spelling and its help text; -h too, and before an error further on."""
    for cmd in COMMANDS:
        if cmd == "state":
            continue  # no parser: its own two lines
        p = parser_for(cmd)
        for argv in (["--help"], ["-h"], ["-h", "--nosuch"]):
            with pytest.raises(SystemExit) as e:
                p.parse_args(argv)
            assert e.value.code == 0
            out = capsys.readouterr().out
            assert out.startswith(f"usage: torpor {p.prog.split(' ', 1)[1]}"), out
            for a in p.args:
                for n in a.names:
                    assert n in out if n.startswith("-") else (a.metavar or a.dest) in out, n
                assert (a.help or "") in out, a.help


def test_defaults_as_argparse() -> None:
    """Absent options: store_true False, append its default ([] given, else None), others
    None or their default."""
    p = cli_args.Parser("x")
    p.add_argument("--flag", action="store_true")
    p.add_argument("--many", action="append")
    p.add_argument("--some", action="append", default=[])
    p.add_argument("--value")
    p.add_argument("--n", type=int, default=3)
    assert vars(p.parse_args([])) == {"flag": False, "many": None, "some": [], "value": None,
                                      "n": 3}
    assert vars(p.parse_args(["--many", "a", "-many=b", "--flag", "-flag"])) == {
        "flag": True, "many": ["a", "b"], "some": [], "value": None, "n": 3}
    # a default list is not changed by a parse (argparse copies it too)
    p.parse_args(["--some", "x"])
    assert vars(p.parse_args([]))["some"] == []


def test_no_heavy_imports() -> None:
    """The point of the module: no argparse, re, gettext... in a process that parses."""
    import os
    import subprocess
    import sys

    code = ("import sys; import torpor.cli.args as a; p = a.Parser('x'); "
            "p.add_argument('--f', type=int); p.add_argument('id'); p.parse_args(['--f', '1', 'i']); "
            "print(sorted({'argparse', 're', 'gettext', 'textwrap', 'shutil', 'typing', 'enum'} "
            "& set(sys.modules)))")
    root = os.path.dirname(os.path.dirname(os.path.dirname(cli_args.__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": root})
    assert out.stdout.strip() == "[]"

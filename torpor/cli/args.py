"""Command-line options, the way runc's users spell them, without argparse.

argparse imports re, gettext and enum, and builds a formatter per option: ~8 ms of every
`torpor create`, `start`, `kill`, `delete`, which containerd runs for each container. This
parser keeps argparse's interface for what the commands use (add_argument with store_true,
append, nargs ? * +, type, choices, default, dest, metavar, required, help), its parsing
rules (options and positionals interleaved, `--opt=value`, `-o value`, `-ovalue`, short flags
together `-dt`, `--` ends the options, a negative number or a word with a space is a
positional) and its messages, one line each, exit 2. tests/test_cli_args.py compares it with
argparse on every command's options.

urfave/cli (runc) also accepts long flags with one dash (`-no-subreaper`, `-bundle B`) and
booleans given twice (`--leave-running --leave-running`, as Podman does): both work here.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: importing typing costs ~4 ms
if TYPE_CHECKING:
    from collections.abc import Callable


class Namespace:
    """The parsed values, as attributes."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


class _Arg:
    __slots__ = ("names", "dest", "action", "nargs", "type", "choices", "default", "metavar",
                 "required", "help")

    def __init__(self, names: tuple[str, ...], dest: str, action: str | None, nargs: str | None,
                 type: Callable | None, choices, default, metavar: str | None, required: bool,
                 help: str | None) -> None:
        self.names, self.dest, self.action, self.nargs = names, dest, action, nargs
        self.type, self.choices, self.default = type, choices, default
        self.metavar, self.required, self.help = metavar, required, help

    @property
    def positional(self) -> bool:
        return not self.names[0].startswith("-")

    def label(self) -> str:
        """How messages name it: its long option, or its metavar/dest for a positional."""
        if self.positional:
            return self.metavar or self.dest
        return "/".join(self.names)


class Parser:
    def __init__(self, prog: str, description: str | None = None, **_: object) -> None:
        self.prog = f"torpor {prog}"
        self.description = description
        self.args: list[_Arg] = []
        self.options: dict[str, _Arg] = {}

    def add_argument(self, *names: str, action: str | None = None, nargs: str | None = None,
                     type: Callable | None = None, choices=None, default=None,
                     dest: str | None = None, metavar: str | None = None, required: bool = False,
                     help: str | None = None) -> None:
        if action not in (None, "store_true", "append"):
            raise ValueError(f"unsupported action {action!r}")
        if dest is None:
            long = next((n for n in names if n.startswith("--")), names[0])
            dest = long.lstrip("-").replace("-", "_")
        if action == "store_true" and default is None:
            default = False
        arg = _Arg(names, dest, action, nargs, type, choices, default, metavar, required, help)
        self.args.append(arg)
        for n in names:
            if n.startswith("-"):
                self.options[n] = arg

    # ------------------------------------------------------------------ parsing
    def parse_args(self, argv: list[str] | None = None) -> Namespace:
        argv = list(sys.argv[1:] if argv is None else argv)
        values: dict[str, object] = {}
        for a in self.args:
            values[a.dest] = list(a.default) if isinstance(a.default, list) else a.default
        seen: set[str] = set()
        positionals: list[str] = []
        i = 0
        while i < len(argv):
            tok = argv[i]
            i += 1
            if tok == "--":
                positionals += argv[i:]
                break
            if tok in ("-h", "--help"):
                sys.stdout.write(self.format_help())
                raise SystemExit(0)
            found = self._option(tok)
            if found is None:
                positionals.append(tok)
                continue
            arg, value, short = found
            if arg is None:
                self.error(f"unrecognized arguments: {tok}")
            # `-dt`, `-dpFILE`: short flags in one token, each flag passing on the rest
            while arg.action == "store_true" and short and value:
                values[arg.dest] = True
                seen.add(arg.dest)
                nxt = self.options.get("-" + value[0])
                if nxt is None:
                    self.error(f"argument {arg.label()}: ignored explicit argument {value!r}")
                arg, value = nxt, value[1:] or None
            seen.add(arg.dest)
            if arg.action == "store_true":
                if value is not None:
                    self.error(f"argument {arg.label()}: ignored explicit argument {value!r}")
                values[arg.dest] = True
                continue
            if arg.nargs in ("+", "*"):  # an option taking a list: the words that follow
                words = [] if value is None else [value]
                while value is None and i < len(argv) and self._option(argv[i]) is None:
                    words.append(argv[i])
                    i += 1
                if arg.nargs == "+" and not words:
                    self.error(f"argument {arg.label()}: expected at least one argument")
                values[arg.dest] = [self._convert(arg, w) for w in words]
                continue
            if value is None:
                if i >= len(argv) or self._option(argv[i]) is not None:
                    self.error(f"argument {arg.label()}: expected one argument")
                value = argv[i]
                i += 1
            converted = self._convert(arg, value)
            if arg.action == "append":
                current = values[arg.dest]
                values[arg.dest] = ([] if current is None else current) + [converted]
            else:
                values[arg.dest] = converted
        self._assign(positionals, values, seen)
        missing = [a.label() for a in self.args
                   if a.required and not a.positional and a.dest not in seen]
        if missing:
            self.error(f"the following arguments are required: {', '.join(missing)}")
        return Namespace(**values)

    def _option(self, tok: str) -> tuple[_Arg | None, str | None, bool] | None:
        """None for a positional; else (the option, or None if unknown; its value when
        attached, `--a=v` `-av`; whether it was matched as a one-letter `-a`).
        argparse's order: the whole token, the part before `=`, a short option's prefix."""
        if tok == "--":
            return None, None, False  # not an option, but no option's value either
        if not tok.startswith("-") or tok == "-":
            return None
        name, eq, value = tok.partition("=")
        attached = value if eq else None
        arg = self.options.get(name)
        if arg is None and not name.startswith("--"):
            arg = self.options.get("-" + name)  # runc's one-dash long flag: `-bundle B`
            if arg is not None:
                return arg, attached, False
        if arg is not None:
            return arg, attached, name[1] != "-"
        if not tok.startswith("--") and tok[:2] in self.options:
            return self.options[tok[:2]], tok[2:], True
        if _is_number(tok) or " " in tok:  # argparse: `-9`, `-x y` are positionals
            return None
        return None, None, False

    def _convert(self, arg: _Arg, value: str) -> object:
        if arg.type is not None:
            try:
                value = arg.type(value)
            except (TypeError, ValueError):
                self.error(f"argument {arg.label()}: invalid {arg.type.__name__} value: {value!r}")
        if arg.choices is not None and value not in arg.choices:
            choices = ", ".join(repr(c) for c in arg.choices)
            self.error(f"argument {arg.label()}: invalid choice: {value!r} (choose from {choices})")
        return value

    def _assign(self, tokens: list[str], values: dict[str, object], seen: set[str]) -> None:
        """Positionals in order; each takes what it can while leaving one token for every
        later positional that needs one (argparse's allocation for these nargs)."""
        specs = [a for a in self.args if a.positional]
        need = [0 if a.nargs in ("?", "*") else 1 for a in specs]
        pos = 0
        for k, a in enumerate(specs):
            left = len(tokens) - pos - sum(need[k + 1:])
            if a.nargs is None:
                if left < 1:
                    break
                values[a.dest] = self._convert(a, tokens[pos])
                pos += 1
            elif a.nargs == "?":
                if left >= 1:
                    values[a.dest] = self._convert(a, tokens[pos])
                    pos += 1
            else:  # "*" or "+": every token left over for it
                take = max(left, 0)
                if a.nargs == "+" and take < 1:
                    break
                values[a.dest] = [self._convert(a, t) for t in tokens[pos:pos + take]]
                pos += take
            seen.add(a.dest)
        missing = [a.label() for a in specs if a.dest not in seen and a.nargs in (None, "+")]
        if missing:
            self.error(f"the following arguments are required: {', '.join(missing)}")
        if pos < len(tokens):
            self.error(f"unrecognized arguments: {' '.join(tokens[pos:])}")

    # ------------------------------------------------------------------ output
    def format_usage(self) -> str:
        parts = [self.prog]
        if any(not a.positional for a in self.args):
            parts.append("[options]")
        for a in self.args:
            if a.positional:
                name = a.metavar or a.dest
                parts.append({"?": f"[{name}]", "*": f"[{name} ...]",
                              "+": f"{name} [{name} ...]"}.get(a.nargs or "", name))
        return "usage: " + " ".join(parts) + "\n"

    def format_help(self) -> str:
        out = [self.format_usage()]
        if self.description:
            out.append(f"\n{self.description}\n")
        rows = []
        for a in self.args:
            left = ", ".join(a.names) if not a.positional else (a.metavar or a.dest)
            if not a.positional and a.action != "store_true":
                left += " " + (a.metavar or a.dest.upper())
            text = a.help or ""
            if a.choices is not None:
                text = (text + " " if text else "") + "{" + ",".join(map(str, a.choices)) + "}"
            rows.append((left, text))
        rows.append(("-h, --help", "show this help and exit"))
        width = min(max(len(left) for left, _ in rows) + 2, 32)
        out.append("\noptions:\n")
        for left, text in rows:
            if len(left) + 2 > width:
                out.append(f"  {left}\n  {'':{width}}{text}\n" if text else f"  {left}\n")
            else:
                out.append(f"  {left:{width}}{text}\n".rstrip() + "\n")
        return "".join(out)

    def error(self, message: str):
        """One line, exit 2, as argparse does but without the usage spam."""
        msg = f"{self.prog.removeprefix('torpor ')}: {message}"
        from torpor.log import log

        if log.to_file:
            log.error(msg)  # the clients read the --log file, not only stderr
        sys.stderr.write(f"torpor: {msg}\n")
        raise SystemExit(2)


def _is_number(tok: str) -> bool:
    """`-9`, `-1.5`, `-.5`: a positional (argparse's `^-\\d+$|^-\\d*\\.\\d+$`, for parsers
    with no such option)."""
    whole, dot, frac = tok[1:].partition(".")
    if dot:
        return frac.isdecimal() and (not whole or whole.isdecimal())
    return whole.isdecimal()

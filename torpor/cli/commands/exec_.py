"""torpor exec: run a process inside a running container."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    import copy
    import sys

    from torpor.cli.args import Parser

    p = Parser("exec", "Run a process in a container.")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-p", "--process", help="process.json (OCI process object)")
    p.add_argument("--pid-file")
    p.add_argument("--console-socket")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--cwd")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-u", "--user", help="UID[:GID]")
    p.add_argument("--additional-gids", "-g", action="append", type=int, default=[])
    p.add_argument("--cap", "-c", action="append", default=[])
    p.add_argument("--no-new-privs", action="store_true")
    p.add_argument("--preserve-fds", type=int, default=0)
    p.add_argument("--ignore-paused", action="store_true", help="accepted")
    p.add_argument("id")
    p.add_argument("cmd", nargs="*")
    a = p.parse_args(argv)
    from torpor.errors import TorporError
    from torpor.runtime.config import parse_json
    from torpor.runtime.container import Container

    c = Container.load(g.root, a.id)
    if a.process:
        try:
            with open(a.process, "rb") as f:
                raw = parse_json(f.read(), f"process {a.process}")
        except OSError as err:
            raise TorporError(f"process {a.process}: {err.strerror}") from None
    else:
        if not a.cmd:
            raise TorporError("exec: give a command (after --) or --process")
        raw = copy.deepcopy(c.raw_config.get("process") or {})
        raw["args"] = list(a.cmd)
        raw["terminal"] = a.tty
        raw.pop("rlimits", None)
        raw.pop("oomScoreAdj", None)
    if a.cwd:
        raw["cwd"] = a.cwd
    if a.env:
        raw["env"] = list(raw.get("env") or []) + a.env
    if a.user:
        uid, _, gid = a.user.partition(":")
        raw["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if a.additional_gids:
        raw.setdefault("user", {})["additionalGids"] = a.additional_gids
    if a.cap:
        caps = raw.setdefault("capabilities", {})
        for key in ("bounding", "effective", "permitted"):
            caps[key] = sorted(set(caps.get(key) or []) | set(a.cap))
    if a.no_new_privs:
        raw["noNewPrivileges"] = True
    sys.stdout.flush()
    return c.exec_process(raw, detach=a.detach, pid_file=a.pid_file,
                          console_socket=a.console_socket, preserve_fds=a.preserve_fds)

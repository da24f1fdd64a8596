"""torpor run: create + start; `-d` leaves it running under a monitor (logs, exit status).

Without a bundle (`run -d ID -- CMD ARGS...`), CMD runs in the embedded busybox root.
"""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    import os
    import sys

    from torpor.cli.args import Parser

    p = Parser("run", "Create and start a container.")
    p.add_argument("-d", "--detach", action="store_true", help="run under a monitor, return")
    p.add_argument("-b", "--bundle", default=None, help="bundle directory")
    p.add_argument("--pid-file", help="write the init's host PID here")
    p.add_argument("--console-socket", help="unix socket to receive the pty master")
    p.add_argument("--no-pivot", action="store_true", help="chroot instead of pivot_root")
    p.add_argument("--keep", action="store_true", help="do not delete after a foreground run")
    p.add_argument("--no-subreaper", action="store_true", help="accepted for runc compatibility")
    p.add_argument("--no-new-keyring", action="store_true", help="accepted")
    p.add_argument("-t", "--tty", action="store_true", help="embedded default: a terminal")
    p.add_argument("id")
    p.add_argument("cmd", nargs="*", help="command for the embedded default (after --)")
    a = p.parse_args(argv)
    from torpor.errors import TorporError
    from torpor.runtime import run as R
    from torpor.runtime.config import load_bundle_config
    from torpor.runtime.state import check_id

    check_id(a.id)
    embedded = False
    bundle = a.bundle
    if a.cmd:
        if bundle is not None:
            raise TorporError("run: give either --bundle or a command, not both")
        raw = R.embedded_config(g.root, a.id, a.cmd, terminal=a.tty and a.detach)
        embedded = True
    else:
        bundle = os.path.abspath(bundle or ".")
        raw = load_bundle_config(bundle)
    if a.detach:
        R.run_detached(g.root, a.id, bundle, raw, pid_file=a.pid_file, embedded=embedded,
                       no_pivot=a.no_pivot)
        return 0
    proc = raw.get("process") or {}
    if proc.get("terminal") and not a.console_socket:
        from torpor.log import log

        log.warning(
            "process.terminal is true but there is no --console-socket: the container "
            "uses torpor's stdio")
        proc["terminal"] = False
    sys.stdout.flush()
    return R.run_foreground(g.root, a.id, bundle, raw, pid_file=a.pid_file, embedded=embedded,
                            no_pivot=a.no_pivot, console_socket=a.console_socket, keep=a.keep)

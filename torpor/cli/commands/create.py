"""torpor create: set up a container whose init waits for `start`."""

from __future__ import annotations


def main(argv: list[str], g) -> int:
    from torpor.cli.args import Parser

    p = Parser("create", "Create a container (namespaces, mounts, cgroup) from a bundle.")
    p.add_argument("-b", "--bundle", default=".", help="bundle directory (default .)")
    p.add_argument("--pid-file", help="write the init's host PID here")
    p.add_argument("--console-socket", help="unix socket to receive the pty master")
    p.add_argument("--preserve-fds", type=int, default=0, help="pass fds 3..3+N-1 to the init")
    p.add_argument("--no-pivot", action="store_true", help="chroot instead of pivot_root")
    p.add_argument("--no-new-keyring", action="store_true", help="accepted (no keyring is made)")
    p.add_argument("id")
    a = p.parse_args(argv)
    from torpor.runtime.container import Container

    Container.create(g.root, a.id, a.bundle, pid_file=a.pid_file,
                     console_socket=a.console_socket, preserve_fds=a.preserve_fds,
                     no_pivot=a.no_pivot)
    return 0

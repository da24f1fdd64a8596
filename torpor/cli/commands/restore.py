"""torpor restore: a host process (`restore --image-path P`) or a container
(`restore --image-path P [--bundle B] [--detach] [--pid-file F] ID`, runc/runsc style)."""

from __future__ import annotations

from torpor.cli.args import Parser


def _parser() -> Parser:
    p = Parser("restore", description="Restore a checkpoint image.")
    p.add_argument("--image-path", required=True, help="image directory written by checkpoint")
    p.add_argument("--bundle", "-b", help="OCI bundle of the container to restore into")
    p.add_argument("--detach", "-d", action="store_true", help="do not wait for the container")
    p.add_argument("--pid-file", help="write the restored init's host PID here")
    p.add_argument("--work-path", help="directory for the restore log")
    p.add_argument("--console-socket", help="unix socket to send the pty master to")
    p.add_argument("--no-subreaper", action="store_true", help="accepted for runc compatibility")
    p.add_argument("--no-pivot", action="store_true", help="accepted for runc compatibility")
    p.add_argument("--lazy", action="store_true",
                   help="run at once; memory is served on demand and streamed in the background")
    p.add_argument("--file-locks", action="store_true")
    p.add_argument("--tcp-established", action="store_true")
    p.add_argument("--ext-unix-sk", action="store_true")
    p.add_argument("--shell-job", action="store_true")
    p.add_argument("container_id", nargs="?", help="container to restore into")
    return p


def main(argv: list[str], g) -> int:
    args = _parser().parse_args(argv)
    if not args.container_id:
        from torpor.engine.restore import restore

        res = restore(args.image_path, lazy=args.lazy, caller_exits=True)
        if args.pid_file:
            from torpor.cli.output import write_pid_file

            write_pid_file(args.pid_file, res.pid)
        for w in res.warnings:
            import sys

            sys.stderr.write(f"torpor: warning: {w}\n")
        print(res.pid)
        return 0
    import time

    from torpor.runtime import checkpoint as rt_checkpoint

    t0 = time.monotonic()
    try:
        c = rt_checkpoint.restore_container(g.root, args.container_id, args.image_path,
                                            bundle=args.bundle, detach=args.detach,
                                            pid_file=args.pid_file,
                                            console_socket=args.console_socket,
                                            work_path=args.work_path, lazy=args.lazy)
    except Exception as err:
        if args.work_path:
            from torpor.runtime.criu_files import write_restore_work

            write_restore_work(args.work_path, error=str(err) or type(err).__name__)
        raise
    if args.work_path:  # restore.log and CRIU's stats-restore (Podman's --print-stats)
        from torpor.runtime.criu_files import write_restore_work

        write_restore_work(args.work_path, time.monotonic() - t0,
                           pid=getattr(getattr(c, "rec", None), "pid", None))
    return 0

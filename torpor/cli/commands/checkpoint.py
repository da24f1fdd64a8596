"""torpor checkpoint: runsc/runc style (`checkpoint --image-path P [--leave-running] ID`),
host processes (`checkpoint --pid PID --image-path P`), and Docker-style named checkpoints
(`checkpoint create|ls|rm`)."""

from __future__ import annotations

from torpor.cli.args import Parser


def _parser() -> Parser:
    p = Parser("checkpoint", description="Checkpoint a container or a host process tree.")
    p.add_argument("--image-path", help="directory to write the image to (must not exist or be empty)")
    p.add_argument("--pid", type=int, help="checkpoint this host process (and its descendants)")
    p.add_argument("--leave-running", action="store_true", help="keep it running after the checkpoint")
    p.add_argument("--work-path", help="directory for the dump log and statistics")
    p.add_argument("--file-locks", action="store_true", help="save file locks")
    p.add_argument("--tcp-established", action="store_true", help="accepted for runc compatibility")
    p.add_argument("--ext-unix-sk", action="store_true", help="accepted for runc compatibility")
    p.add_argument("--shell-job", action="store_true", help="accepted for runc compatibility")
    p.add_argument("--parent-path", help="incremental: store only pages written since this image "
                   "(taken with --track-mem); the others are read from it on restore")
    p.add_argument("--track-mem", action="store_true",
                   help="keep tracking written pages after a --leave-running checkpoint")
    p.add_argument("--compress", choices=["none", "zstd"], default="none", help="compress page data")
    p.add_argument("--sync", action="store_true",
                   help="return once the image is on disk (fsync); without it, as CRIU, the "
                        "image may still be in the page cache (restore checks its checksums)")
    p.add_argument("container_id", nargs="?", help="container to checkpoint")
    return p


def _earlier_image(path: str) -> bool:
    """Podman checkpoints a container again into the same `<userdata>/checkpoint` (CRIU
    overwrites its files there), also after a failed attempt: a directory holding nothing but
    an earlier torpor image (complete, or marked INCOMPLETE) is replaced. Anything else in a
    non-empty image path is still refused (an image path is used once)."""
    import os

    try:
        names = os.listdir(path)
    except OSError:
        return False
    if not {"manifest.json", "INCOMPLETE"} & set(names):
        return False
    for name in names:
        p = os.path.join(path, name)
        if os.path.islink(p) or not os.path.isfile(p):
            return False
    return True


def main(argv: list[str], g) -> int:
    if argv and argv[0] in ("create", "ls", "rm"):
        from torpor.cli.commands import checkpoint_named

        return checkpoint_named.main(argv, g)
    args = _parser().parse_args(argv)
    if not args.image_path:
        from torpor.errors import TorporError

        raise TorporError("checkpoint: --image-path is required")
    if args.pid is not None:
        from torpor.engine.dump import checkpoint

        res = checkpoint(args.pid, args.image_path, leave_running=args.leave_running,
                         compress=None if args.compress == "none" else args.compress,
                         file_locks=args.file_locks, track_mem=args.track_mem,
                         parent_path=args.parent_path, sync=args.sync)
        if g.debug:
            print(f"checkpointed {res.pid}: {res.threads} threads, frozen {res.frozen_seconds * 1000:.1f} ms")
        return 0
    if not args.container_id:
        from torpor.errors import TorporError

        raise TorporError("checkpoint: give a container ID or --pid PID")
    import os
    import shutil
    import tempfile

    from torpor.runtime import checkpoint as rt_checkpoint

    target = args.image_path
    # only for OCI clients (they pass --work-path): torpor's own runsc-style command keeps
    # "an image path is used once"
    if args.work_path and _earlier_image(args.image_path):  # written next to it, swapped in
        target = tempfile.mkdtemp(prefix=".torpor-new-",
                                  dir=os.path.dirname(os.path.abspath(args.image_path)))
    try:
        res = rt_checkpoint.checkpoint_container(g.root, args.container_id, target,
                                                 leave_running=args.leave_running,
                                                 work_path=args.work_path,
                                                 file_locks=args.file_locks, sync=args.sync)
    except Exception as err:
        if target != args.image_path:
            shutil.rmtree(target, ignore_errors=True)
        if args.work_path:  # the clients point at the dump log in their error messages
            from torpor.runtime.criu_files import write_dump_work

            write_dump_work(args.work_path, error=str(err) or type(err).__name__)
        raise
    if target != args.image_path:
        for name in os.listdir(args.image_path):
            os.unlink(os.path.join(args.image_path, name))
        for name in os.listdir(target):
            os.rename(os.path.join(target, name), os.path.join(args.image_path, name))
        os.rmdir(target)
    if args.work_path:  # dump.log and CRIU's stats-dump (Podman's --print-stats / --export)
        from torpor.runtime.criu_files import write_dump_work

        write_dump_work(args.work_path, res, image_path=args.image_path)
    return 0

"""`run`: create + start, either detached under the monitor or in the foreground."""

from __future__ import annotations

import os

from torpor.runtime.container import Container, wait_forwarding


def embedded_config(root: str, cid: str, args: list[str], terminal: bool = False) -> dict:
    """The embedded default: the cached busybox rootfs and the default config."""
    from torpor.runtime import busybox
    from torpor.runtime.spec import embedded_spec

    rootfs = busybox.ensure(root)
    return embedded_spec(cid, args, rootfs, terminal=terminal)


def run_detached(root: str, cid: str, bundle: str | None, raw_config: dict | None, *,
                 pid_file: str | None = None, embedded: bool = False,
                 no_pivot: bool = False) -> Container:
    """Create the container under a monitor, start it, return it (running)."""
    from torpor.runtime import monitor
    from torpor.runtime.config import load_bundle_config
    from torpor.runtime.state import StateStore

    if raw_config is None:
        raw_config = load_bundle_config(os.path.abspath(bundle or "."))
    if os.path.exists(StateStore(root).dir(cid)):
        from torpor.errors import AlreadyExists

        raise AlreadyExists(f"container \"{cid}\" already exists")
    terminal = bool((raw_config.get("process") or {}).get("terminal"))

    def spawn(stdio, pty, monitor_pid):
        return Container.create(root, cid, bundle, raw_config, pid_file=pid_file, stdio=stdio,
                                pty=pty, monitor_pid=monitor_pid, embedded=embedded,
                                no_pivot=no_pivot)

    monitor.start(spawn, terminal=terminal)
    c = Container.load(root, cid)
    c.start()
    return c


def run_foreground(root: str, cid: str, bundle: str | None, raw_config: dict | None, *,
                   pid_file: str | None = None, embedded: bool = False, no_pivot: bool = False,
                   console_socket: str | None = None, keep: bool = False) -> int:
    """Create and start with the caller's stdio, wait, delete; returns the exit code."""
    from torpor.runtime import linux as L

    L.set_child_subreaper()
    c = Container.create(root, cid, bundle, raw_config, pid_file=pid_file, embedded=embedded,
                         no_pivot=no_pivot, console_socket=console_socket)
    try:
        c.start()
        code = wait_forwarding(c.init_pid)
    finally:
        if not keep:
            c.delete(force=True)
    return code

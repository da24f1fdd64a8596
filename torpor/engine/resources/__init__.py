"""One module per kind of kernel object, each with a dump and a restore step.

Open files are dispatched by kind in files/__init__.py. Other per-process objects (POSIX
timers, file locks, seccomp filters, ...) register a module in PROCESS_RESOURCES with

    dump(ctx, pid, inj, scratch) -> dict       fields for the Process record, read while the
                                               process is stopped and injectable
    restore(rt, inj, scratch) -> list[str]     recreate them inside the rebuilt process; runs
                                               after memory, signal handlers and threads exist,
                                               before credentials drop; returns warnings
    restore_late(rt, inj, scratch) -> list[str]
                                               optional: runs once the helper fds are closed
                                               in the process (POSIX locks: closing any fd of
                                               a file drops them), credentials already set

`rt` is a ProcessRestore (engine/restore.py): rt.proc is the saved Process, rt.host its PID,
rt.threads maps saved tid -> Injector of that thread, rt.file_fd(file_id) the helper fd of a
saved open file description (valid until the end of the restore).
"""

from __future__ import annotations

# module names under torpor.engine.resources, imported when a checkpoint or restore runs
PROCESS_RESOURCE_MODULES: list[str] = ["posix_timers", "file_locks"]


def process_resources() -> list:
    # __import__ with a fromlist gives the submodule itself; importlib would import warnings
    return [__import__(f"torpor.engine.resources.{m}", fromlist=["_"]) for m in PROCESS_RESOURCE_MODULES]

"""Stop a whole process tree, so that no task forks, exits or is reaped during the dump.

With a freezer cgroup (containers): freeze it, seize + interrupt every task while frozen, thaw
it: each task then enters the ptrace stop instead of running. Without one (host processes):
seize the root, then the children of every stopped task, until no new task appears; a stopped
task cannot fork, so the walk converges. A signal arriving during the seize is delivered as
usual: a signal-delivery-stop is resumed with its signal and the interrupt stop comes next.
"""

from __future__ import annotations

import os
import time

from torpor.engine.linux import ptrace as pt
from torpor.engine.linux import sys as lx
from torpor.engine.linux.procfs import children, list_tids
from torpor.errors import NotFound, TorporError
from torpor.records import factory, record


class FreezeError(TorporError):
    pass


# injected syscalls must not meet the task's seccomp filters (Docker's default profile answers
# clone3 with ENOSYS, for one): the tracer suspends them while it holds the task
SEIZE_OPTIONS = pt.O_SUSPEND_SECCOMP


@record
class FrozenTree:
    root: int
    order: list[int] = factory(list)  # host pids, parents before children
    tids: dict[int, list[int]] = factory(dict)  # host pid -> seized tids
    zombies: list[int] = factory(list)
    freezer: str | None = None
    was_frozen: bool = False

    def all_tids(self) -> list[int]:
        return [t for p in self.order for t in self.tids.get(p, [])]


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    return raw[raw.rindex(")") + 2]


def wait_interrupt_stop(tid: int) -> None:
    while True:
        status = pt.wait_stop(tid)
        sig = os.WSTOPSIG(status)
        event = pt.stop_event(status)
        if event == pt.EVENT_STOP:
            return  # the PTRACE_INTERRUPT stop (or a group stop, also reported this way)
        if event:
            pt.cont(tid)
            continue
        pt.cont(tid, sig)  # a signal-delivery-stop: deliver it; the interrupt stays pending


def wait_new_stop(tid: int, what: str = "task", error: type[TorporError] = FreezeError) -> None:
    """The first stop of a task auto-attached at its creation: PTRACE_EVENT_STOP under a
    seized tracer (SIGSTOP under PTRACE_TRACEME)."""
    status = pt.wait_stop(tid)
    if pt.stop_event(status) != pt.EVENT_STOP and os.WSTOPSIG(status) != lx.SIGSTOP:
        raise error(f"new {what} {tid} stopped with signal {os.WSTOPSIG(status)}")


# ------------------------------------------------------------------ cgroup freezer


def _freezer_files(path: str) -> tuple[str, bool]:
    v1 = os.path.join(path, "freezer.state")
    if os.path.exists(v1):
        return v1, True
    return os.path.join(path, "cgroup.freeze"), False


def freezer_is_frozen(path: str) -> bool:
    f, v1 = _freezer_files(path)
    with open(f) as fh:
        v = fh.read().strip()
    return v == "FROZEN" if v1 else v == "1"


def freezer_set(path: str, frozen: bool, timeout: float = 10.0) -> None:
    f, v1 = _freezer_files(path)
    want = ("FROZEN" if frozen else "THAWED") if v1 else ("1" if frozen else "0")
    deadline = time.monotonic() + timeout
    while True:
        with open(f, "w") as fh:
            fh.write(want)
        if not frozen:
            return
        if v1:
            with open(f) as fh:
                if fh.read().strip() == "FROZEN":
                    return
        else:
            with open(os.path.join(path, "cgroup.events")) as fh:
                if "frozen 1" in fh.read():
                    return
        if time.monotonic() > deadline:
            raise FreezeError(f"freezer {path}: the tasks did not freeze in time")
        time.sleep(0.001)


# ------------------------------------------------------------------------- seizing


def _seize_threads(pid: int, tree: FrozenTree, interrupt_now: bool) -> bool:
    """Seize every thread of pid (repeat until its thread list is stable). False if pid is a
    zombie or gone."""
    seized = tree.tids.setdefault(pid, [])
    while True:
        try:
            tids = list_tids(pid)
        except FileNotFoundError:
            return False
        new = [t for t in tids if t not in seized]
        if not new:
            return True
        for tid in new:
            try:
                pt.seize(tid, SEIZE_OPTIONS)
            except ProcessLookupError:
                continue
            except PermissionError as err:
                if tid == pid and _state(pid) in "ZX":
                    return False
                raise FreezeError(f"cannot trace process {pid} (thread {tid}): {err.strerror}") from None
            seized.append(tid)
            pt.interrupt(tid)
            if interrupt_now:
                try:
                    wait_interrupt_stop(tid)
                except ProcessLookupError:
                    seized.remove(tid)


def seize_tree(root: int, freezer: str | None = None) -> FrozenTree:
    """Stop root and every descendant. Returns the frozen tree (parents first)."""
    if not os.path.exists(f"/proc/{root}"):
        raise NotFound(f"process {root} does not exist")
    if _state(root) in "ZX":
        raise NotFound(f"process {root} is a zombie")
    tree = FrozenTree(root=root, freezer=freezer)
    try:
        if freezer:
            tree.was_frozen = freezer_is_frozen(freezer)
            if not tree.was_frozen:
                freezer_set(freezer, True)
        queue = [root]
        while queue:
            pid = queue.pop(0)
            if pid in tree.tids or pid in tree.zombies:
                continue
            try:
                zombie = _state(pid) in "ZX"
            except FileNotFoundError:
                continue
            if zombie or not _seize_threads(pid, tree, interrupt_now=not freezer):
                tree.tids.pop(pid, None)
                tree.zombies.append(pid)
                tree.order.append(pid)
                continue
            tree.order.append(pid)
            queue.extend(children(pid, tree.tids[pid]))
        if freezer:
            freezer_set(freezer, False)
            for tid in tree.all_tids():
                try:
                    wait_interrupt_stop(tid)
                except ProcessLookupError:
                    pass
            # children forked in the instant before the freeze are in the lists by now
            for pid in list(tree.order):
                for child in children(pid, tree.tids.get(pid, [])):
                    if child not in tree.tids and child not in tree.zombies:
                        raise FreezeError(f"process {child} appeared during the freeze")
        return tree
    except BaseException:
        release(tree)
        raise


def release(tree: FrozenTree) -> None:
    """Detach every task: the tree goes on from where it was stopped (frozen again if its
    cgroup was frozen before the checkpoint, as after `pause`)."""
    if tree.freezer and tree.was_frozen:
        try:
            freezer_set(tree.freezer, True)
        except (OSError, TorporError):
            pass
    for tid in tree.all_tids():
        try:
            pt.detach(tid)
        except OSError:
            pass


def kill(tree: FrozenTree) -> None:
    """End a frozen tree after a complete checkpoint; wait until every task is dead."""
    for pid in tree.order:
        if pid in tree.zombies:
            continue
        try:
            os.kill(pid, lx.SIGKILL)
        except ProcessLookupError:
            pass
    if tree.freezer and tree.was_frozen:
        try:
            freezer_set(tree.freezer, False)  # frozen tasks cannot die
        except (OSError, TorporError):
            pass
    # as their tracer we collect each death first; that hands the zombie to its real parent
    pending = set(tree.all_tids())
    deadline = time.monotonic() + 5
    while pending and time.monotonic() < deadline:
        for tid in list(pending):
            try:
                done, _ = os.waitpid(tid, os.WNOHANG | 0x40000000)
            except ChildProcessError:
                done = tid
            if done:
                pending.discard(tid)
        if pending:
            time.sleep(0.001)

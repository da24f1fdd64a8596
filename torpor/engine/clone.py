"""Fork this Python process into a child with a chosen PID (clone3 with set_tid).

os.fork() cannot choose the PID, so clone3 is called through ctypes with the GIL held and
Python's own before/after-fork hooks around it, exactly as os.fork() does internally.
"""

from __future__ import annotations

import ctypes

from torpor.engine.linux import sys as lx
from torpor.engine.linux.sys import NR, syscall_gil


class CloneArgs(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("pidfd", ctypes.c_uint64),
        ("child_tid", ctypes.c_uint64),
        ("parent_tid", ctypes.c_uint64),
        ("exit_signal", ctypes.c_uint64),
        ("stack", ctypes.c_uint64),
        ("stack_size", ctypes.c_uint64),
        ("tls", ctypes.c_uint64),
        ("set_tid", ctypes.c_uint64),
        ("set_tid_size", ctypes.c_uint64),
        ("cgroup", ctypes.c_uint64),
    ]


def fork_with_pid(set_tid: list[int], flags: int = 0) -> int:
    """Like os.fork(), but the child gets the given PID(s): set_tid[0] is the PID in the
    innermost PID namespace, the following ones in the outer namespaces. Returns 0 in the
    child, the child's PID in the parent. Raises FileExistsError if the PID is taken."""
    tids = (ctypes.c_int32 * len(set_tid))(*set_tid)
    args = CloneArgs(flags=flags, exit_signal=lx.SIGCHLD, set_tid=ctypes.addressof(tids),
                     set_tid_size=len(set_tid))
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    try:
        pid = syscall_gil(NR["clone3"], ctypes.addressof(args), ctypes.sizeof(args))
    except BaseException:
        api.PyOS_AfterFork_Parent()
        raise
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    api.PyOS_AfterFork_Parent()
    return pid

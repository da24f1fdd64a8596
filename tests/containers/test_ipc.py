"""SysV IPC of the container's namespace: shm, semaphores and messages, ids and contents."""

from __future__ import annotations

import ctypes

from .helpers import FAST, wait_count


def _make():
    from torpor.runtime.nsstate import _libc

    libc = _libc()
    shm = libc.shmget(0x1234, 8192, 0o1600)
    addr = libc.shmat(shm, None, 0)
    ctypes.memmove(addr, b"hello shm", 9)
    libc.shmdt(addr)
    sem = libc.semget(0, 3, 0o1600)
    arr = (ctypes.c_ushort * 3)(7, 0, 42)
    libc.semctl(sem, 0, 17, arr)
    msq = libc.msgget(0x99, 0o1600)
    for mtype, text in ((1, b"first"), (5, b"second")):
        buf = ctypes.create_string_buffer(ctypes.c_long(mtype).value.to_bytes(8, "little") + text)
        libc.msgsnd(msq, buf, len(text), 0)
    return [shm, sem, msq]


def _read():
    from torpor.runtime.nsstate import save_ipc

    return save_ipc()


def test_sysv_ipc_saved_and_restored(rt, tmp_path):
    from torpor.runtime import nsstate

    c1, c2 = rt.id("ipc"), rt.id("ipc2")
    rt("run", "-d", c1, "--", "sh", "-c", FAST)
    wait_count(rt, c1, 1)
    ids = nsstate.in_namespaces(rt.state(c1)["pid"], ["ipc"], _make)
    assert min(ids) >= 0
    want = nsstate.in_namespaces(rt.state(c1)["pid"], ["ipc"], _read)
    img = str(tmp_path / "img")
    rt("checkpoint", "--image-path", img, c1)
    rt("restore", "--image-path", img, c2)
    got = nsstate.in_namespaces(rt.wait_status(c2, "running")["pid"], ["ipc"], _read)
    assert got == want
    assert [o["id"] for k in ("shm", "sem", "msg") for o in got[k]] == ids
    assert got["sem"][0]["values"] == [7, 0, 42]
    assert [m[0] for m in got["msg"][0]["messages"]] == [1, 5]

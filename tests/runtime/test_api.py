"""The Python API that checkpoint/restore builds on (in-process, no CLI)."""

from __future__ import annotations

import json
import os

from torpor.runtime.container import Container


def test_create_with_init_hook_and_attach(rt, bundle):
    b = bundle(["true"])
    cid = rt.id()
    raw = json.load(open(os.path.join(b, "config.json")))
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        def hook():  # runs as PID 1 inside the set-up container, instead of start + execve
            os.execv("/bin/sh", ["sh", "-c", "test $$ = 1 && exec sleep 100"])

        c = Container.create(rt.root, cid, b, raw, init_hook=hook,
                             stdio=(devnull, devnull, devnull))
    finally:
        os.close(devnull)
    rt.pids.add(c.init_pid)
    c = Container.load(rt.root, cid)
    assert c.status() == "running"
    assert set(c.namespaces) == {"pid", "network", "ipc", "uts", "mount", "cgroup"}
    assert c.cgroup.freezer_path == c.freezer_path and c.freezer_path.endswith(f"/torpor/{cid}")
    assert c.processes() == [c.init_pid]
    assert c.config.process.args == ["true"]
    with c.lock():
        c.cgroup.freeze()
        assert c.status() == "paused"
        c.cgroup.thaw()
    assert c.status() == "running"
    assert rt.state(cid)["status"] == "running"
    # an init created elsewhere can be recorded in place of the first
    c.attach_init(c.init_pid)
    assert Container.load(rt.root, cid).rec.pid_start > 0
    c.delete(force=True)
    assert not os.path.exists(c.dir)

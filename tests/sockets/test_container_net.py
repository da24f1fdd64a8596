"""A TCP server inside a container's own network namespace keeps serving on the same port
after the container is checkpointed and restored (as a new container)."""

from __future__ import annotations

import time

SERVER = "exec nc -ll -p 8080 -e /bin/sh -c 'echo served'"


def _ask(rt, cid: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        r = rt("exec", cid, "nc", "127.0.0.1", "8080", check=False)
        if "served" in r.out or time.monotonic() > deadline:
            return r.out
        time.sleep(0.1)


def test_tcp_server_in_container_netns(rt, tmp_path) -> None:
    c1, c2 = rt.id("tcp"), rt.id("tcp2")
    rt("run", "-d", c1, "--", "sh", "-c", SERVER)
    assert "served" in _ask(rt, c1)
    img = str(tmp_path / "img")
    rt("checkpoint", "--image-path", img, c1)
    rt("restore", "--image-path", img, c2)
    rt.wait_status(c2, "running")
    assert "served" in _ask(rt, c2)

"""Refusals: each a clear one-line error, nothing left behind, the original untouched."""

from __future__ import annotations

import os
import shutil
import time

from .helpers import FAST, nothing_left, numbers, wait_count


def _running_with_image(rt, tmp_path, name="orig"):
    cid = rt.id(name)
    img = str(tmp_path / f"img-{cid}")
    rt("run", "-d", cid, "--", "sh", "-c", FAST)
    wait_count(rt, cid, 2)
    rt("checkpoint", "--leave-running", "--image-path", img, cid)
    return cid, img


def _untouched(rt, cid, pid):
    s = rt.state(cid)
    assert s["status"] == "running" and s["pid"] == pid
    n = len(numbers(rt.logs(cid)))
    wait_count(rt, cid, n + 1)


def test_restore_into_running_id(rt, tmp_path):
    cid, img = _running_with_image(rt, tmp_path)
    pid = rt.state(cid)["pid"]
    r = rt("restore", "--image-path", img, cid, check=False)
    assert r.rc == 1 and r.err.strip() == f'torpor: cannot restore into container "{cid}": ' \
        "it is running"
    _untouched(rt, cid, pid)


def test_missing_and_damaged_image(rt, tmp_path):
    cid, img = _running_with_image(rt, tmp_path)
    pid = rt.state(cid)["pid"]
    new = rt.id("new")
    r = rt("restore", "--image-path", str(tmp_path / "nothing"), new, check=False)
    assert r.rc == 1 and "does not exist" in r.err and len(r.err.strip().splitlines()) == 1
    nothing_left(rt, new)
    bad = str(tmp_path / "bad")
    shutil.copytree(img, bad)
    with open(os.path.join(bad, "pages.img"), "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    r = rt("restore", "--image-path", bad, new, check=False)
    assert r.rc == 1 and "pages" in r.err and len(r.err.strip().splitlines()) == 1, r
    nothing_left(rt, new)
    os.unlink(os.path.join(bad, "manifest.json"))
    r = rt("restore", "--image-path", bad, new, check=False)
    assert r.rc == 1 and len(r.err.strip().splitlines()) == 1, r
    nothing_left(rt, new)
    _untouched(rt, cid, pid)


def test_image_path_used_once(rt, tmp_path):
    cid, img = _running_with_image(rt, tmp_path)
    pid = rt.state(cid)["pid"]
    r = rt("checkpoint", "--image-path", img, cid, check=False)
    assert r.rc == 1 and "not empty" in r.err
    _untouched(rt, cid, pid)
    empty = tmp_path / "empty"
    empty.mkdir()
    rt("checkpoint", "--leave-running", "--image-path", str(empty), cid)  # empty is fine
    _untouched(rt, cid, pid)


def test_changed_rootfs(rt, tmp_path, rootfs, bundle):
    priv = str(tmp_path / "rootfs")
    shutil.copytree(rootfs, priv, symlinks=True)

    def edit(spec):
        spec["root"]["path"] = priv

    b = bundle(["sh", "-c", FAST], edit=edit)
    cid, new = rt.id("rfs"), rt.id("rfsnew")
    img = str(tmp_path / "img")
    rt("run", "-d", "-b", b, cid)
    wait_count(rt, cid, 2)
    rt("checkpoint", "--image-path", img, cid)
    with open(os.path.join(priv, "bin", "newtool"), "w") as f:
        f.write("#!/bin/sh\n")
    for target in (cid, new):
        r = rt("restore", "--image-path", img, target, check=False)
        assert r.rc == 1 and "root filesystem" in r.err and "bin changed" in r.err, r
    nothing_left(rt, new)
    assert rt.status(cid) == "stopped"  # the original record is as it was
    os.unlink(os.path.join(priv, "bin", "newtool"))
    rt("restore", "--image-path", img, cid)  # the same rootfs again: fine
    assert rt.wait_status(cid, "running")


def test_checkpoint_of_stopped_or_missing(rt, tmp_path):
    r = rt("checkpoint", "--image-path", str(tmp_path / "i"), "nosuch", check=False)
    assert r.rc == 1 and "does not exist" in r.err
    cid = rt.id("short")
    rt("run", "-d", cid, "--", "true")
    deadline = time.monotonic() + 10
    while rt.status(cid) != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    r = rt("checkpoint", "--image-path", str(tmp_path / "i"), cid, check=False)
    assert r.rc == 1 and "it is stopped" in r.err
    r = rt("start", "--checkpoint", "nope", cid, check=False)
    assert r.rc == 1 and "no checkpoint nope" in r.err

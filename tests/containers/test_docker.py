"""The Docker workflow: checkpoint create|ls|rm, start --checkpoint, logs across it all."""

from __future__ import annotations

import os
import time

from .helpers import FAST, assert_continuous, numbers, wait_count

COUNTER = "i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done"


def test_named_checkpoints_and_logs(rt, tmp_path):
    cid = rt.id("dock")
    rt("run", "-d", cid, "--", "sh", "-c", FAST)
    wait_count(rt, cid, 3)
    assert rt("checkpoint", "create", cid, "cp1").out.strip() == "cp1"
    assert rt.status(cid) == "stopped"
    assert os.path.isfile(os.path.join(rt.root, cid, "checkpoints", "cp1", "manifest.json"))
    assert rt("checkpoint", "ls", cid).out.split() == ["CHECKPOINT", "NAME", "cp1"]
    before = rt.logs(cid)
    time.sleep(0.5)
    assert rt.logs(cid) == before
    r = rt("checkpoint", "create", cid, "again", check=False)
    assert r.rc == 1 and "stopped" in r.err
    rt("start", "--checkpoint", "cp1", cid)
    assert rt.status(cid) == "running"
    n = len(numbers(before))
    wait_count(rt, cid, n + 2)
    r = rt("start", "--checkpoint", "cp1", cid, check=False)
    assert r.rc == 1 and "running" in r.err
    # a restored container checkpoints again: --leave-running, then into --checkpoint-dir
    rt("checkpoint", "create", "--leave-running", cid, "cp2")
    assert rt.status(cid) == "running"
    d = str(tmp_path / "ckdir")
    rt("checkpoint", "create", "--checkpoint-dir", d, cid, "cp3")
    assert rt.status(cid) == "stopped"
    assert rt("checkpoint", "ls", "--checkpoint-dir", d, cid).out.split()[2:] == ["cp3"]
    assert [c["name"] for c in rt("checkpoint", "ls", "--format", "json", cid).json()] == [
        "cp1", "cp2"]
    n = len(numbers(rt.logs(cid)))
    rt("start", "--checkpoint", "cp3", "--checkpoint-dir", d, cid)
    wait_count(rt, cid, n + 3)
    assert_continuous(rt.logs(cid), n + 3)
    rt("checkpoint", "rm", cid, "cp1")
    assert rt("checkpoint", "ls", cid).out.split()[2:] == ["cp2"]
    r = rt("checkpoint", "rm", cid, "cp1", check=False)
    assert r.rc == 1 and "no checkpoint cp1" in r.err
    r = rt("checkpoint", "create", cid, "cp2", check=False)
    assert r.rc == 1 and "exists" in r.err
    # names are one path component of letters, digits and _ . + - ("x\n" passed the old
    # regex, whose $ matches before a final newline)
    for bad in ["../up", ".hidden", "x\n", "a/b", "x" * 256]:
        r = rt("checkpoint", "create", cid, bad, check=False)
        assert r.rc == 1 and "invalid checkpoint name" in r.err, (bad, r.err)
    assert sorted(os.listdir(os.path.join(rt.root, cid, "checkpoints"))) == ["cp2"]
    assert rt.status(cid) == "running"


def test_seed_counter_no_gap_no_repeat(rt):
    """The issue's own counter (sleep 1): increase, stand still, go on."""
    cid = rt.id("seed")
    rt("run", "-d", cid, "--", "sh", "-c", COUNTER)
    wait_count(rt, cid, 2)
    rt("checkpoint", "create", cid, "c")
    n = len(numbers(rt.logs(cid)))
    time.sleep(1.5)
    assert len(numbers(rt.logs(cid))) == n
    rt("start", "--checkpoint", "c", cid)
    wait_count(rt, cid, n + 2)
    assert_continuous(rt.logs(cid), n + 2)


def test_demo_tells_the_story(rt):
    cid = rt.id("demo")
    r = rt("demo", "--id", cid, "--seconds", "1.5", timeout=90)
    out = r.out
    for text in ("checkpoint create", "start --checkpoint", "no gap, no repeat"):
        assert text in out, out
    assert "NOT continuous" not in out

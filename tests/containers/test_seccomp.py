"""linux.seccomp: applied at run and exec (libseccomp), and the filter stack survives
checkpoint/restore: the restored processes and their new children are still filtered."""

from __future__ import annotations

import time

DENY = {"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 13},
                     {"names": ["no_such_syscall"], "action": "SCMP_ACT_ERRNO"}]}
LOOP = ("i=0; while true; do mkdir /tmp/d$i 2>/dev/null; echo $i $?; i=$(expr $i + 1); "
        "sleep 0.2; done")


def _seccomp(pid: int) -> str:
    """Seccomp mode of pid ("gone" if it exited meanwhile: the counter's short sleeps)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(line.split()[1] for line in f if line.startswith("Seccomp:"))
    except FileNotFoundError:
        return "gone"


def _pairs(text: str) -> list[tuple[int, int]]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            out.append((int(parts[0]), int(parts[1])))
    return out


def _wait_pairs(rt, cid: str, n: int) -> list[tuple[int, int]]:
    deadline = time.monotonic() + 15
    while len(pairs := _pairs(rt.logs(cid))) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pairs) >= n, pairs
    return pairs


def test_seccomp_applied_and_restored(rt, bundle, tmp_path):
    def edit(spec):
        spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                               "options": ["mode=1777"]})
        spec["linux"]["seccomp"] = DENY

    b = bundle(["sh", "-c", LOOP], edit=edit)
    c1, c2 = rt.id("sec"), rt.id("sec2")
    rt("run", "-d", "-b", b, c1)
    _wait_pairs(rt, c1, 2)
    assert _seccomp(rt.state(c1)["pid"]) == "2"
    r = rt("exec", c1, "--", "mkdir", "/tmp/x", check=False)
    assert r.rc != 0 and "Permission denied" in r.err + r.out
    img = str(tmp_path / "img")
    rt("checkpoint", "--image-path", img, c1)
    n = len(_pairs(rt.logs(c1)))
    rt("restore", "--image-path", img, c2)
    pid = rt.wait_status(c2, "running")["pid"]
    assert _seccomp(pid) == "2"
    for child in rt("ps", "--format", "json", c2).json():
        assert _seccomp(child) in ("2", "gone")
    pairs = _wait_pairs(rt, c2, 3)
    assert pairs and all(rc == 1 for _, rc in pairs)  # mkdir still denied after restore
    nums = [i for i, _ in pairs]
    assert nums == list(range(nums[0], nums[0] + len(nums))) and nums[0] <= n + 1


def test_bad_seccomp_profile(rt, bundle):
    def edit(spec):
        spec["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_NOPE"}

    cid = rt.id("badsec")
    r = rt("create", "--bundle", bundle(["true"], edit=edit), cid, check=False)
    assert r.rc == 1 and "SCMP_ACT_NOPE" in r.err
    assert not rt("list", "-q").out.strip()

"""Bad input: a clear one-line error and a non-zero exit, nothing left behind."""

from __future__ import annotations

import os

import pytest

from .conftest import cgroup_leftovers


def _fails(rt, cid, *args, msg):
    r = rt(*args, check=False)
    assert r.rc != 0, r
    assert msg in r.err, r
    assert r.err.count("\n") == 1, r
    assert not os.path.exists(os.path.join(rt.root, cid))
    assert not cgroup_leftovers(cid)
    return r


def test_missing_bundle(rt):
    cid = rt.id()
    _fails(rt, cid, "create", "--bundle", "/nonexistent/b", cid,
           msg="bundle /nonexistent/b: no such directory")


def test_missing_config(rt, tmp_path):
    cid = rt.id()
    _fails(rt, cid, "create", "--bundle", str(tmp_path), cid,
           msg=f"bundle {tmp_path}: config.json not found")


def test_invalid_json(rt, bundle):
    cid = rt.id()
    b = bundle([], raw='{\n "ociVersion": "1.0.2",\n "process": {,\n}\n')
    _fails(rt, cid, "create", "--bundle", b, cid,
           msg=f"bundle {b}: config.json: invalid JSON at line 3")


@pytest.mark.parametrize("edit,msg", [
    (lambda s: s.pop("process"), "process is missing"),
    (lambda s: s["process"].update(args=[]), "process.args must name the program"),
    (lambda s: s["root"].update(path="/nonexistent"), "root.path /nonexistent: no such"),
    (lambda s: s["linux"]["namespaces"].append({"type": "user"}),
     "user namespace is not supported"),
    (lambda s: s["linux"].update(namespaces=[{"type": "mount"}]),
     "hostname needs a new uts namespace"),
    (lambda s: s["linux"].update(namespaces=[{"type": "pid"}]) or s.pop("hostname"),
     "must include a mount namespace"),
    (lambda s: s["process"]["rlimits"].append({"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}),
     "unknown rlimit 'RLIMIT_BOGUS'"),
    (lambda s: s["process"].update(capabilities={"bounding": ["CAP_NOPE"]}),
     "unknown capability 'CAP_NOPE'"),
    (lambda s: s["mounts"].append({"destination": "relative", "type": "tmpfs"}),
     "must be absolute"),
    (lambda s: s["linux"].update(cgroupsPath="system.slice:torpor:x"), "systemd path"),
    (lambda s: s["process"].update(terminal=True), "--console-socket is needed"),
    (lambda s: s["linux"].update(namespaces=[{"type": "mount"}, {"type": "uts"},
                                             {"type": "network", "path": "/nonexistent"}]),
     "network namespace path /nonexistent does not exist"),
    (lambda s: s["process"].update(args=["/bin/nosuch"]), "no such file or directory"),
    (lambda s: s["process"]["user"].update(uid="root"), "process.user.uid must be an integer"),
    (lambda s: s.update(ociVersion="2.0.0"), "is not supported"),
    (lambda s: s["linux"]["namespaces"].append({"type": "pid"}), "pid appears twice"),
])
def test_config_errors(rt, bundle, edit, msg):
    cid = rt.id()
    b = bundle(["true"], edit=lambda s: edit(s) and None)
    _fails(rt, cid, "create", "--bundle", b, cid, msg=msg)


def test_unsupported_fields_warn(rt, bundle):
    def edit(s):
        s["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW"}
        s["hooks"] = {"prestart": [{"path": "/bin/true"}]}

    cid = rt.id()
    r = rt("run", "--bundle", bundle(["echo", "ok"], edit=edit), cid)
    assert r.out == "ok\n"
    assert "seccomp" not in r.err  # applied now (tests/containers/test_seccomp.py)
    assert "hooks are not supported" in r.err


def test_hard_rlimit_raise_is_refused(rt, bundle):
    cid = rt.id()
    big = 1 << 30
    b = bundle(["true"], edit=lambda s: s["process"].update(
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": big, "hard": big}]))
    _fails(rt, cid, "create", "--bundle", b, cid, msg="CAP_SYS_RESOURCE")


def test_console_socket_needs_terminal(rt, bundle, tmp_path):
    cid = rt.id()
    _fails(rt, cid, "create", "--bundle", bundle(["true"]), "--console-socket",
           str(tmp_path / "sock"), cid, msg="needs process.terminal")

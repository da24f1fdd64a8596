"""Namespaces, mounts, devices, credentials and limits inside a container."""

from __future__ import annotations

import os

from .conftest import cgroup_leftovers


def run(rt, bundle, script, edit=None):
    cid = rt.id()
    r = rt("run", "--bundle", bundle(["sh", "-c", script], edit=edit), cid, check=False)
    assert r.rc == 0, r
    assert not cgroup_leftovers(cid)
    return r.out


def test_pid_uts_ipc_net_namespaces(rt, bundle):
    out = run(rt, bundle, "echo $$; hostname; ls /sys/class/net; readlink /proc/self/ns/ipc;"
              " readlink /proc/self/ns/net; readlink /proc/self/ns/mnt; readlink /proc/self/ns/uts;"
              " cat /sys/class/net/lo/operstate /sys/class/net/lo/flags",
              edit=lambda s: s.update(hostname="box1"))
    lines = out.split("\n")
    assert lines[0] == "1"
    assert lines[1] == "box1"
    assert lines[2] == "lo"
    for line, ns in zip(lines[3:7], ("ipc", "net", "mnt", "uts"), strict=True):
        assert line != os.readlink(f"/proc/self/ns/{ns}"), ns
    assert int(lines[8], 16) & 1  # IFF_UP


def test_joined_namespace_path(rt, bundle):
    def edit(s):
        s["linux"]["namespaces"] = [{"type": "mount"}, {"type": "uts"}, {"type": "pid"},
                                    {"type": "network", "path": f"/proc/{os.getpid()}/ns/net"}]

    out = run(rt, bundle, "readlink /proc/self/ns/net", edit=edit)
    assert out.strip() == os.readlink("/proc/self/ns/net")


def test_mounts_devices_and_paths(rt, bundle, tmp_path):
    src = tmp_path / "shared"
    src.mkdir()
    (src / "hello").write_text("from host\n")

    def edit(s):
        s["mounts"].append({"destination": "/data", "type": "bind", "source": str(src),
                            "options": ["rbind", "ro"]})
        s["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                            "options": ["size=1m"]})

    script = ("cat /data/hello; touch /data/x 2>/dev/null && echo data-rw || echo data-ro;"
              " touch /x 2>/dev/null && echo root-rw || echo root-ro;"
              " touch /scratch/x && echo scratch-rw; cat /proc/keys | wc -c;"
              " echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys-rw || echo sys-ro;"
              " for d in null zero full random urandom tty; do test -c /dev/$d && echo -n $d,; done;"
              " echo; readlink /dev/ptmx; head -c 4 /dev/zero | wc -c; ls /sys/fs/cgroup | sort |"
              " tr '\\n' ' '; echo; awk '$2==\"/\"{print $4}' /proc/mounts")
    out = run(rt, bundle, script, edit=edit).split("\n")
    assert out[0] == "from host"
    assert out[1:4] == ["data-ro", "root-ro", "scratch-rw"]
    assert out[4] == "0"  # /proc/keys masked by /dev/null
    assert out[5] == "sys-ro"
    assert out[6] == "null,zero,full,random,urandom,tty,"
    assert out[7] == "pts/ptmx"
    assert out[8] == "4"
    assert "freezer" in out[9] and "memory" in out[9] and "pids" in out[9]
    assert out[10].startswith("ro")
    assert not (tmp_path / "shared" / "x").exists()


def test_user_caps_nnp_rlimits_env_cwd(rt, bundle):
    def edit(s):
        p = s["process"]
        p["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [5, 1002]}
        p["capabilities"] = {k: ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
                             for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
        p["noNewPrivileges"] = True
        p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]
        p["env"] = ["PATH=/bin:/usr/bin", "GREETING=hi there"]
        p["cwd"] = "/tmp"

    out = run(rt, bundle, "id -u; id -g; id -G; grep -E '^(CapEff|CapBnd|NoNewPrivs)' "
              "/proc/self/status | awk '{print $2}'; ulimit -n; ulimit -Hn; echo $GREETING; pwd",
              edit=edit).split("\n")
    assert out[0:2] == ["1000", "1001"]
    assert set(out[2].split()) == {"1001", "5", "1002"}
    caps = (1 << 5) | (1 << 10)
    assert int(out[3], 16) == caps and int(out[4], 16) == caps
    assert out[5] == "1"
    assert out[6:8] == ["100", "200"]
    assert out[8] == "hi there"
    assert out[9] == "/tmp"


def test_sysctl_and_domainname(rt, bundle):
    def edit(s):
        s["linux"]["sysctl"] = {"kernel.msgmax": "4096"}
        s["linux"]["readonlyPaths"] = []
        s["domainname"] = "example.org"

    out = run(rt, bundle, "cat /proc/sys/kernel/msgmax; cat /proc/sys/kernel/domainname",
              edit=edit).split("\n")
    assert out[:2] == ["4096", "example.org"]


def test_sysctl_with_proc_sys_read_only(rt, bundle):
    # Docker's config: a sysctl and /proc/sys in readonlyPaths (runc writes sysctls first)
    def edit(s):
        s["linux"]["sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "0"}
        assert "/proc/sys" in s["linux"]["readonlyPaths"]

    out = run(rt, bundle, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; "
              "echo 1 > /proc/sys/net/ipv4/ip_unprivileged_port_start 2>/dev/null || echo ro",
              edit=edit).split("\n")
    assert out[:2] == ["0", "ro"]

"""config.json's linux.seccomp: compiled to a BPF program with libseccomp (ctypes), installed
by the init before execve (as runc: before dropping capabilities unless noNewPrivileges).

compile_profile(profile) -> bytes   the sock_filter array (8 bytes per instruction)
install(bpf)                        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER) in this process
get_filters(pid)                    the filters of a ptrace-stopped tracee (ours), innermost
                                    last (PTRACE_SECCOMP_GET_FILTER), for checkpoint
"""

from __future__ import annotations

import ctypes
import errno
import os

from torpor.errors import TorporError

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_ERRNO = 0x00050000
SCMP_ACT_TRACE = 0x7FF00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
       "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
ARCHES = {  # AUDIT_ARCH_* as libseccomp's SCMP_ARCH_*
    "SCMP_ARCH_X86_64": 0xC000003E, "SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X32": 0x4000003E,
}
SCMP_FLTATR_CTL_NNP = 3
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
PTRACE_SECCOMP_GET_FILTER = 0x420C
EPERM = errno.EPERM


class SeccompError(TorporError):
    pass


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_lib = None


def _libseccomp():
    global _lib
    if _lib is None:
        try:  # the soname first: find_library runs `ldconfig -p` (~10 ms, every `create`)
            lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        except OSError:
            from ctypes.util import find_library

            name = find_library("seccomp")
            try:
                lib = ctypes.CDLL(name or "libseccomp.so.2", use_errno=True)
            except OSError:
                raise SeccompError("linux.seccomp needs libseccomp (apt-get install "
                                   "libseccomp2)") from None
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                               ctypes.c_uint, ctypes.c_void_p]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        _lib = lib
    return _lib


def _action(name: str, errno_ret: int | None, default_errno: int | None = None) -> int:
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return SCMP_ACT_KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return SCMP_ACT_KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return SCMP_ACT_TRAP
    if name == "SCMP_ACT_ERRNO":
        e = errno_ret if errno_ret is not None else (default_errno if default_errno is not None
                                                     else EPERM)
        return SCMP_ACT_ERRNO | (e & 0xFFFF)
    if name == "SCMP_ACT_TRACE":
        e = errno_ret if errno_ret is not None else (default_errno or 0)
        return SCMP_ACT_TRACE | (e & 0xFFFF)
    if name == "SCMP_ACT_LOG":
        return SCMP_ACT_LOG
    if name == "SCMP_ACT_ALLOW":
        return SCMP_ACT_ALLOW
    raise SeccompError(f"config.json: linux.seccomp: action {name!r} is not supported")


def compile_profile(profile: dict) -> bytes:
    """The BPF program (struct sock_filter[]) of an OCI seccomp profile."""
    lib = _libseccomp()
    if profile.get("listenerPath") or profile.get("flags"):
        flags = [f for f in profile.get("flags") or [] if f != "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
        if profile.get("listenerPath") or flags:
            raise SeccompError("config.json: linux.seccomp: listenerPath and filter flags are "
                               "not supported")
    default_errno = profile.get("defaultErrnoRet")
    default = _action(profile.get("defaultAction", "SCMP_ACT_ALLOW"), default_errno)
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise SeccompError("seccomp_init failed")
    try:
        lib.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)
        for arch in profile.get("architectures") or []:
            if arch not in ARCHES:
                continue  # another machine's architecture: nothing to filter here
            rc = lib.seccomp_arch_add(ctx, ARCHES[arch])
            if rc < 0 and rc != -errno.EEXIST:
                raise SeccompError(f"seccomp: architecture {arch}: {os.strerror(-rc)}")
        for i, rule in enumerate(profile.get("syscalls") or []):
            names = list(rule.get("names") or []) + ([rule["name"]] if rule.get("name") else [])
            act = _action(rule.get("action", ""), rule.get("errnoRet"), default_errno)
            if act == default:
                continue  # libseccomp refuses a rule that does what the default does
            args = rule.get("args") or []
            # several conditions on one argument cannot be one libseccomp rule: runc adds one
            # rule per condition then
            indexes = [a.get("index", 0) for a in args]
            groups = [args] if len(set(indexes)) == len(indexes) else [[a] for a in args]
            for name in names:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr < 0:
                    continue  # not a syscall of this kernel's architecture (runc skips too)
                for group in groups:
                    cmps = (_ArgCmp * max(len(group), 1))()
                    for j, a in enumerate(group):
                        op = OPS.get(a.get("op", ""))
                        if op is None:
                            raise SeccompError(f"config.json: linux.seccomp.syscalls[{i}]: "
                                               f"operator {a.get('op')!r} is not valid")
                        cmps[j] = _ArgCmp(a.get("index", 0), op, a.get("value", 0) & (2**64 - 1),
                                          a.get("valueTwo", 0) & (2**64 - 1))
                    rc = lib.seccomp_rule_add_array(ctx, act, nr, len(group),
                                                    ctypes.addressof(cmps))
                    if rc < 0:
                        raise SeccompError(f"config.json: linux.seccomp: rule for {name}: "
                                           f"{os.strerror(-rc)}")
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctx, w)
            os.close(w)
            w = -1
            if rc < 0:
                raise SeccompError(f"seccomp: cannot export the filter: {os.strerror(-rc)}")
            chunks = []
            while chunk := os.read(r, 65536):
                chunks.append(chunk)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        return b"".join(chunks)
    finally:
        lib.seccomp_release(ctx)


def install(bpf: bytes) -> None:
    """Install the filter in the calling process (needs no_new_privs or CAP_SYS_ADMIN)."""
    if not bpf:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.addressof(buf))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        e = ctypes.get_errno()
        raise SeccompError(f"cannot install the seccomp filter: {os.strerror(e)}")


def seccomp_mode(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Seccomp:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def get_filters(pid: int) -> list[bytes]:
    """The filters of tracee pid (it must be ptrace-stopped by this thread), oldest first."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    out = []
    i = 0
    while True:
        n = libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, i, None)
        if n < 0:
            e = ctypes.get_errno()
            if e == errno.ENOENT:
                break
            raise SeccompError(f"cannot read the seccomp filters of process {pid}: "
                               f"{os.strerror(e)}")
        buf = ctypes.create_string_buffer(n * 8)
        if libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, i, buf) < 0:
            e = ctypes.get_errno()
            raise SeccompError(f"cannot read the seccomp filters of process {pid}: "
                               f"{os.strerror(e)}")
        out.append(buf.raw)
        i += 1
    # index 0 is the most recently installed filter
    return list(reversed(out))

"""Raw system calls through libc's syscall(2), with errno turned into OSError.

x86_64 numbers only: the engine restores x86_64 register state, so nothing else would work.
"""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
# PyDLL keeps the GIL held across the call: needed around clone3, where the child must not
# find another Python thread holding the GIL.
libc_gil = ctypes.PyDLL(None, use_errno=True)

_syscall = libc.syscall
_syscall.restype = ctypes.c_long
_syscall_gil = libc_gil.syscall
_syscall_gil.restype = ctypes.c_long

# x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl)
NR = {
    "read": 0, "write": 1, "open": 2, "close": 3, "lseek": 8, "mmap": 9, "mprotect": 10,
    "munmap": 11, "brk": 12, "rt_sigaction": 13, "rt_sigprocmask": 14, "ioctl": 16, "pipe2": 293,
    "pread64": 17, "pwrite64": 18, "madvise": 28, "mremap": 25, "dup": 32, "dup2": 33,
    "getitimer": 36, "setitimer": 38, "getpid": 39, "socket": 41, "clone": 56, "fork": 57,
    "exit": 60, "wait4": 61, "kill": 62, "fcntl": 72, "flock": 73, "getcwd": 79, "chdir": 80, "fchdir": 81,
    "umask": 95, "ptrace": 101, "setuid": 105, "setgid": 106, "setpgid": 109, "getppid": 110,
    "setsid": 112, "setgroups": 116, "setresuid": 117, "setresgid": 119, "getpgid": 121,
    "setfsuid": 122, "setfsgid": 123, "getsid": 124, "capget": 125, "capset": 126,
    "rt_sigqueueinfo": 129, "sigaltstack": 131, "personality": 135, "prctl": 157,
    "arch_prctl": 158, "chroot": 161, "gettid": 186, "futex": 202, "set_tid_address": 218,
    "restart_syscall": 219, "timer_create": 222, "timer_settime": 223, "timer_gettime": 224,
    "timer_getoverrun": 225, "timer_delete": 226, "exit_group": 231, "tgkill": 234,
    "openat": 257, "set_robust_list": 273, "get_robust_list": 274, "dup3": 292,
    "rt_tgsigqueueinfo": 297, "prlimit64": 302, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "memfd_create": 319, "userfaultfd": 323, "rseq": 334,
    "pidfd_send_signal": 424, "pidfd_open": 434, "clone3": 435, "close_range": 436,
    "pidfd_getfd": 438, "kcmp": 312,
}


def _call(fn, nr: int, args: tuple) -> int:
    res = fn(ctypes.c_long(nr), *(ctypes.c_long(a) if isinstance(a, int) else a for a in args))
    if res == -1:
        err = ctypes.get_errno()
        if err:
            raise OSError(err, os.strerror(err))
    return res


def syscall(nr: int, *args: int) -> int:
    """Call syscall nr; raise OSError(errno) on failure, return the result otherwise."""
    return _call(_syscall, nr, args)


def syscall_gil(nr: int, *args: int) -> int:
    """Like syscall() but without releasing the GIL (for clone3 from a Python process)."""
    return _call(_syscall_gil, nr, args)


def addr(buf) -> int:
    """Address of a ctypes object or writable buffer."""
    if isinstance(buf, ctypes._SimpleCData | ctypes.Structure | ctypes.Array):
        return ctypes.addressof(buf)
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# mmap
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_GROWSDOWN, MAP_NORESERVE, MAP_FIXED_NOREPLACE = 0x100, 0x4000, 0x100000
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4
MADV_DONTFORK, MADV_DOFORK = 10, 11
PROT_NONE = 0

# prctl
PR_SET_PDEATHSIG, PR_GET_PDEATHSIG = 1, 2
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME, PR_GET_NAME = 15, 16
PR_GET_SECCOMP = 21
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS, PR_GET_SECUREBITS = 28, 27
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37
PR_SET_MM = 35
PR_SET_MM_MAP, PR_SET_MM_MAP_SIZE = 14, 15
PR_GET_TID_ADDRESS = 40
PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 38, 39
PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 41, 42
PR_SET_MDWE, PR_GET_MDWE = 65, 66  # memory-deny-write-execute (6.3+)
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_CLEAR_ALL = 2, 4

# clone
CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_PIDFD, CLONE_PTRACE, CLONE_VFORK, CLONE_PARENT = 0x1000, 0x2000, 0x4000, 0x8000
CLONE_THREAD, CLONE_NEWNS, CLONE_SYSVSEM, CLONE_SETTLS = 0x10000, 0x20000, 0x40000, 0x80000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID = 0x100000, 0x200000
CLONE_CHILD_SETTID, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x1000000, 0x2000000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000

# wait
WALL = 0x40000000

# signal numbers (x86-64), as plain ints: the signal module makes them enums, and importing
# enum costs ~5 ms of every command
SIGHUP, SIGINT, SIGTRAP, SIGKILL, SIGCHLD, SIGSTOP = 1, 2, 5, 9, 17, 19

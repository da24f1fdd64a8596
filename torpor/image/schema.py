"""Typed, versioned records of a process-tree image (image/codec.py records, JSON on disk).

Every record carries the schema version it was written with (`SCHEMA_VERSION` in the tree
record); a reader refuses a version newer than its own. The layout follows the kinds of kernel
object the engine saves: tasks and threads, memory areas and their page runs, open files.
"""

from torpor.image.codec import Record

SCHEMA_VERSION = 1


class Rec(Record, forbid_unknown_fields=True, omit_defaults=True):
    pass


class PageRun(Rec, array_like=True):
    """`npages` pages at `vaddr` stored at `offset` in the page file `file`."""

    vaddr: int
    npages: int
    offset: int
    file: str = "pages"


class Vma(Rec):
    start: int
    end: int
    prot: int
    shared: bool
    # anon | file | shmem (MAP_SHARED anonymous, memfd, sysv shm) | vdso | vvar | vvar_vclock
    # | vsyscall
    kind: str
    pgoff: int = 0
    path: str = ""
    file_id: int = -1  # index into TreeImage.mapped_files for file/shmem areas
    vmflags: list[str] = []
    pages: list[PageRun] = []  # private pages that differ from their backing (zero pages omitted)


class MappedFile(Rec):
    """A file or shared-memory object behind one or more mappings."""

    id: int
    path: str  # path at checkpoint time (without " (deleted)")
    dev: int
    inode: int
    size: int = 0
    deleted: bool = False
    # shmem objects and deleted files have their content saved: runs of (offset, length)
    # into page file `file` at `data_offset`; holes are zero
    content: list[PageRun] = []
    kind: str = "file"  # file | shmem | memfd
    memfd_name: str = ""
    seals: int = 0


class SigAction(Rec, array_like=True):
    sig: int
    handler: int
    flags: int
    restorer: int
    mask: int


class Thread(Rec):
    tid: int
    regs: bytes  # struct user_regs_struct as read by PTRACE_GETREGS
    xstate: bytes  # NT_X86_XSTATE regset
    sigmask: int
    name: str
    pending: list[bytes] = []  # private pending siginfo_t
    rseq_ptr: int = 0
    rseq_len: int = 0
    rseq_sig: int = 0
    robust_list: int = 0
    robust_len: int = 0
    clear_child_tid: int = 0
    altstack_sp: int = 0
    altstack_flags: int = 0
    altstack_size: int = 0
    state: str = ""  # state letter at checkpoint (R, S, D, ...)
    in_syscall: int = -1  # orig_rax when stopped inside a system call


class MmFields(Rec):
    start_code: int
    end_code: int
    start_data: int
    end_data: int
    start_brk: int
    brk: int
    start_stack: int
    arg_start: int
    arg_end: int
    env_start: int
    env_end: int
    auxv: bytes
    exe: str
    exe_file_id: int = -1


class Creds(Rec):
    uid: list[int]  # real, effective, saved, fs
    gid: list[int]
    groups: list[int]
    cap_inh: int
    cap_prm: int
    cap_eff: int
    cap_bnd: int
    cap_amb: int
    securebits: int = 0
    no_new_privs: bool = False


class Itimer(Rec, array_like=True):
    which: int
    interval_us: int
    value_us: int


class PosixTimer(Rec):
    """A timer_create() timer: /proc/PID/timers and timer_gettime (relative remaining time)."""

    id: int
    clock: int
    signo: int
    notify: int  # sigev_notify as the kernel holds it (SIGEV_THREAD_ID = 4 with a tid)
    value: int = 0  # sigev_value (sival_ptr / sival_int)
    tid: int = 0  # SIGEV_THREAD_ID target, in the process's PID namespace
    interval_ns: int = 0
    value_ns: int = 0  # time to the next expiry; 0 = disarmed
    overrun: int = 0  # informational: overruns cannot be set back


class FileLock(Rec):
    """A file lock held through fd `fd`: kind flock | posix | ofd; type read | write;
    byte range [start, end] (end -1 = to EOF)."""

    kind: str
    fd: int
    type: str
    start: int = 0
    end: int = -1


class OpenFile(Rec, tag="reg"):
    """A regular file (or device node) opened by path."""

    id: int
    path: str
    flags: int
    pos: int
    mode: int = 0
    rdev: int = 0
    deleted: bool = False
    content_file_id: int = -1  # for deleted files: MappedFile with the content


class PipeFile(Rec, tag="pipe"):
    """One end of an anonymous pipe; pipes are identified by inode, data saved once."""

    id: int
    inode: int
    flags: int
    size: int = 65536
    data_len: int = 0
    data_offset: int = 0  # in page file "pages"


class ExternalFile(Rec, tag="ext"):
    """An fd the restorer's caller provides (e.g. a container's stdout pipe to its monitor)."""

    id: int
    key: str
    flags: int = 0


class FifoFile(Rec, tag="fifo"):
    """One open description of a named pipe, reopened by path; its data is saved once per
    FIFO (dev, inode). A FIFO deleted before the checkpoint is recreated, then unlinked."""

    id: int
    path: str
    flags: int
    dev: int
    inode: int
    mode: int = 0o600
    deleted: bool = False
    size: int = 65536
    data_len: int = 0
    data_offset: int = 0  # in page file "pages"


class EventFdFile(Rec, tag="eventfd"):
    id: int
    flags: int
    count: int = 0
    semaphore: bool = False


class EpollTarget(Rec, array_like=True):
    """An interest-list entry: registered under fd number `tfd`; the target file is the one at
    fd `fd` of process `pid` (image PIDs) when the epoll is restored."""

    tfd: int
    events: int
    data: int
    pid: int
    fd: int


class EpollFile(Rec, tag="epoll"):
    id: int
    flags: int
    targets: list[EpollTarget] = []


class SignalFdFile(Rec, tag="signalfd"):
    id: int
    flags: int
    mask: int = 0


class TimerFdFile(Rec, tag="timerfd"):
    """remaining_ns: time left to the next expiry at the checkpoint (0: disarmed);
    deadline_ns: for an absolute CLOCK_REALTIME(_ALARM) timer, its expiry on that clock."""

    id: int
    flags: int
    clockid: int
    remaining_ns: int = 0
    interval_ns: int = 0
    ticks: int = 0  # expirations not yet read
    settime_flags: int = 0
    deadline_ns: int = 0


class InotifyWatch(Rec, array_like=True):
    wd: int
    mask: int
    path: str
    dev: int
    inode: int


class InotifyFile(Rec, tag="inotify"):
    id: int
    flags: int
    watches: list[InotifyWatch] = []


class MemfdFile(Rec, tag="memfd"):
    """A memfd held as an fd: its content, name and seals are MappedFile `object_id`
    (shared with mappings of the same memfd)."""

    id: int
    object_id: int
    flags: int
    pos: int = 0


class SockOpt(Rec, array_like=True):
    """A socket option as getsockopt(level, name) returned it (raw bytes)."""

    level: int
    name: int
    value: bytes


class UnixSocket(Rec, tag="unix"):
    """A unix socket (stream, dgram or seqpacket), identified by its inode. Connected pairs
    have both ends in the image (`peer`); a listener lists the client ends of the connections
    it has not accepted (`queued`, in accept order); `msgs` are the lengths of the messages
    in its receive queue (one entry for a stream), stored back to back at `data_offset`."""

    id: int
    inode: int
    sock_type: int  # SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
    flags: int  # file status flags (O_NONBLOCK)
    state: str  # unconnected | listening | connected | peer-closed | queued
    name: bytes = b""  # bound address; abstract names start with NUL; b"": unbound
    name_unlinked: bool = False  # bound to a path that no longer exists
    name_mode: int = -1  # permission bits of the socket file (-1: unknown)
    name_dir: str = ""  # a relative path name was bound in this directory
    peer: int = 0  # inode of the socket this one is connected to (0: none or closed)
    backlog: int = 0
    queued: list[int] = []  # listening: inodes of the client ends not yet accepted
    listener: int = 0  # state queued: inode of the listener whose accept queue holds us
    shutdown: int = 0  # 1: receive side shut down, 2: send side, 3: both
    msgs: list[int] = []
    data_offset: int = 0  # in page file "pages"
    options: list[SockOpt] = []  # options that differ from a fresh socket's


class InetSocket(Rec, tag="inet"):
    """A TCP or UDP socket over IPv4 or IPv6 that is not part of a connection: a TCP
    listener or unconnected TCP socket, a UDP socket (bound, maybe connected)."""

    id: int
    family: int  # AF_INET, AF_INET6
    sock_type: int  # SOCK_STREAM, SOCK_DGRAM
    protocol: int  # IPPROTO_TCP, IPPROTO_UDP
    flags: int
    state: str  # closed | listening | bound | connected (UDP only)
    addr: str = ""  # local address ("" with port 0: unbound)
    port: int = 0
    scope_id: int = 0
    peer_addr: str = ""  # a connected UDP socket's peer
    peer_port: int = 0
    backlog: int = 0
    options: list[SockOpt] = []  # options that differ from a fresh socket's


class PtyFile(Rec, tag="pty"):
    """One end of a pseudo-terminal pair: the master (/dev/ptmx) or a slave (/dev/pts/N);
    `index` is N at checkpoint time (a restored pair may get another number)."""

    id: int
    flags: int
    master: bool
    index: int
    path: str = ""
    termios: bytes = b""  # struct termios (TCGETS), saved with the master
    winsize: bytes = b""  # struct winsize (TIOCGWINSZ)
    locked: bool = False  # TIOCGPTLCK: slave still locked (unlockpt not called)


FileDesc = (OpenFile | PipeFile | ExternalFile | FifoFile | EventFdFile | EpollFile | SignalFdFile
            | TimerFdFile | InotifyFile | MemfdFile | UnixSocket
            | InetSocket | PtyFile)  # a tagged union: one member per kind of file


class Fd(Rec, array_like=True):
    fd: int
    file_id: int  # into TreeImage.files (shared open file descriptions share an id)
    cloexec: bool


class Process(Rec):
    # pid, ppid, pgid, sid and thread ids are as seen in the process's own PID namespace
    pid: int
    ppid: int
    pgid: int
    sid: int
    comm: str
    threads: list[Thread]
    vmas: list[Vma]
    mm: MmFields
    fds: list[Fd]
    sigactions: list[SigAction]  # those other than SIG_DFL with no flags, mask or restorer
    shared_pending: list[bytes]
    creds: Creds
    rlimits: list[list[int]]  # [cur, max] for RLIMIT 0..15
    cwd: str
    root: str
    umask: int
    personality: int
    pdeath_sig: int = 0
    dumpable: int = 1
    child_subreaper: bool = False
    itimers: list[Itimer] = []
    posix_timers: list[PosixTimer] = []
    file_locks: list[FileLock] = []
    thp_disabled: bool = False
    mdwe: int = 0  # PR_SET_MDWE flags: cannot be cleared, so set last on restore
    exit_signal: int = 17
    zombie: bool = False
    exit_status: int = 0  # wait status of a zombie
    files_shared_with: int = -1  # pid of an earlier process sharing the fd table (CLONE_FILES)
    host_pid: int = 0  # informational


class TreeImage(Rec):
    schema_version: int
    root_pid: int
    processes: list[Process]
    files: list[FileDesc]
    mapped_files: list[MappedFile]
    xfeatures: int  # XCR0 bits present in the saved xstate
    xstate_size: int
    vdso_size: int = 0
    vvar_size: int = 0

/* state OUT WORKDIR GROUPS: sets a broad set of process attributes, then every ~100 ms appends
 * a report to OUT:
 *     begin seq=N
 *     key=value            (one per line; keys starting with "var." may legitimately change)
 *     end seq=N
 * GROUPS is "all" or a comma-separated list of: sig altstack prctl creds rlimit itimer cwd
 * shanon memfd fileprivate fileshared guard delbefore delafter brk fds fddel task.
 * Files are created in WORKDIR (delafter.dat is for the test to delete after a checkpoint).
 * On SIGUSR1 it drains its pending queued signals and appends one line per signal:
 *     drained sig=S value=V code=C pid=P uid=U
 * then "usr1 altstack=0|1" (whether the handler ran on the alternate stack) and "drain done". */
#include "tp.h"
#include <asm/prctl.h>
#include <grp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>

#define PAGE 4096UL

static char groups[512];
static int has(const char *g)
{
    char key[64];
    snprintf(key, sizeof key, ",%s,", g);
    return strstr(groups, ",all,") || strstr(groups, key);
}

static int out_fd;
static char workdir[256];
static char rep[128 * 1024];
static size_t rep_len;

static void kv(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void kv(const char *key, const char *fmt, ...)
{
    va_list ap;
    rep_len += snprintf(rep + rep_len, sizeof rep - rep_len, "%s=", key);
    va_start(ap, fmt);
    rep_len += vsnprintf(rep + rep_len, sizeof rep - rep_len, fmt, ap);
    va_end(ap);
    rep_len += snprintf(rep + rep_len, sizeof rep - rep_len, "\n");
    if (rep_len >= sizeof rep - 256)
        _exit(91);
}

static uint64_t fnv(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static void fill(void *p, size_t n, uint64_t seed)
{
    unsigned char *b = p;
    uint64_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (unsigned char)x;
    }
}

static void die(const char *what)
{
    tp_printf(out_fd, "setup-error %s: %s\n", what, strerror(errno));
    _exit(5);
}

static void path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", workdir, name);
}

/* a file of npages pages filled from seed */
static int make_file(const char *name, size_t npages, uint64_t seed, int flags)
{
    char p[512];
    static unsigned char tmp[16 * PAGE];
    path(p, sizeof p, name);
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | flags, 0644);
    if (fd < 0)
        die(name);
    fill(tmp, npages * PAGE, seed);
    if (write(fd, tmp, npages * PAGE) != (ssize_t)(npages * PAGE))
        die(name);
    return fd;
}

/* the permissions column of the /proc/self/maps line containing addr */
static const char *perms_of(void *addr)
{
    static char maps[256 * 1024];
    static char perms[8];
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    ssize_t n, len = 0;
    while ((n = read(fd, maps + len, sizeof maps - 1 - len)) > 0)
        len += n;
    close(fd);
    maps[len] = 0;
    strcpy(perms, "none");
    for (char *line = maps; *line;) {
        char *nl = strchr(line, '\n');
        unsigned long lo, hi;
        char pr[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, pr) == 3 && (unsigned long)addr >= lo &&
            (unsigned long)addr < hi) {
            strcpy(perms, pr);
            break;
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    return perms;
}

/* ---------------------------------------------------------------- signals */
static volatile sig_atomic_t alarms, pdeath_fired, drain_req, usr1_on_alt, int_count;
static char altstack[64 * 1024] __attribute__((aligned(16)));

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    char here;
    usr1_on_alt = &here >= altstack && &here < altstack + sizeof altstack;
    drain_req = 1;
}
static void on_alrm(int sig) { (void)sig, alarms++; }
static void on_pwr(int sig) { (void)sig, pdeath_fired++; }
static void on_int(int sig) { (void)sig, int_count++; }
static void on_rt(int sig, siginfo_t *si, void *uc) { (void)sig, (void)si, (void)uc; }
static void on_chld(int sig) { (void)sig; }

static void set_handler(int sig, void *fn, int flags, const int *mask_sigs)
{
    struct sigaction sa = {0};
    if (flags & SA_SIGINFO)
        sa.sa_sigaction = fn;
    else
        sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    for (; mask_sigs && *mask_sigs; mask_sigs++)
        sigaddset(&sa.sa_mask, *mask_sigs);
    if (sigaction(sig, &sa, NULL) != 0)
        die("sigaction");
}

#define RT_BLOCKED_SHARED 45
#define RT_BLOCKED_PRIVATE 46

static void queue(int sig, int value, int private_)
{
    if (!private_) {
        union sigval v = {.sival_int = value};
        if (sigqueue(getpid(), sig, v) != 0)
            die("sigqueue");
        return;
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = sig;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_int = value;
    if (syscall(SYS_rt_tgsigqueueinfo, getpid(), syscall(SYS_gettid), sig, &si) != 0)
        die("rt_tgsigqueueinfo");
}

static void setup_signals(void)
{
    static const int int_mask[] = {SIGQUIT, SIGTSTP, 0};
    static const int all_rt[] = {34, 35, 36, 37, 50, 60, 0};
    set_handler(SIGINT, on_int, SA_RESETHAND | SA_NODEFER, int_mask);
    set_handler(SIGCHLD, on_chld, SA_NOCLDSTOP | SA_RESTART, NULL);
    set_handler(39, on_rt, SA_SIGINFO, all_rt);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, RT_BLOCKED_SHARED);
    sigaddset(&set, RT_BLOCKED_PRIVATE);
    sigaddset(&set, SIGTTIN);
    sigprocmask(SIG_BLOCK, &set, NULL);
    queue(SIGUSR2, 0x1234, 0);
    queue(RT_BLOCKED_SHARED, 111, 0);
    queue(RT_BLOCKED_SHARED, 222, 0);
    queue(RT_BLOCKED_PRIVATE, 333, 1);
}

static void report_signals(void)
{
    char key[32];
    for (int s = 1; s <= 64; s++) {
        struct {
            unsigned long handler, flags, restorer, mask;
        } old;
        if (syscall(SYS_rt_sigaction, s, NULL, &old, 8) != 0)
            continue;
        snprintf(key, sizeof key, "sa.%d", s);
        kv(key, "%lx,%lx,%lx,%lx", old.handler, old.flags, old.restorer, old.mask);
    }
    unsigned long mask = 0, pend = 0;
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &mask, 8);
    syscall(SYS_rt_sigpending, &pend, 8);
    kv("sigmask", "%lx", mask);
    kv("sigpending", "%lx", pend & mask); /* unblocked ones (SIGALRM) come and go */
}

static void drain(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, RT_BLOCKED_SHARED);
    sigaddset(&set, RT_BLOCKED_PRIVATE);
    struct timespec zero = {0, 0};
    siginfo_t si;
    int sig;
    while ((sig = sigtimedwait(&set, &si, &zero)) > 0)
        tp_printf(out_fd, "drained sig=%d value=%d code=%d pid=%d uid=%d\n", sig,
                  si.si_value.sival_int, si.si_code, si.si_pid, si.si_uid);
    tp_printf(out_fd, "usr1 altstack=%d\n", (int)usr1_on_alt);
    tp_printf(out_fd, "drain done\n");
}

/* ---------------------------------------------------------------- memory */
struct region {
    const char *name;
    unsigned char *p;
    size_t len;
};
static struct region regions[32];
static int nregions;
static void add_region(const char *name, void *p, size_t len)
{
    regions[nregions++] = (struct region){name, p, len};
}

static unsigned char *memfd_a, *memfd_b, *fsh_a, *fsh_b, *guard;
static int fsh_fd_path_ok;
static unsigned char *brk_start;
static size_t brk_len;

static void *map(size_t len, int prot, int flags, int fd, off_t off)
{
    void *p = mmap(NULL, len, prot, flags, fd, off);
    if (p == MAP_FAILED)
        die("mmap");
    return p;
}

static void setup_memory(void)
{
    char p[512];
    if (has("shanon")) {
        unsigned char *a = map(16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        fill(a, 16 * PAGE, 11);
        add_region("shanon", a, 16 * PAGE);
    }
    if (has("memfd")) {
        int fd = memfd_create("tp-memfd", 0);
        if (fd < 0 || ftruncate(fd, 16 * PAGE) != 0)
            die("memfd");
        memfd_a = map(16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        memfd_b = map(4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 2 * PAGE);
        close(fd); /* only the mappings keep it */
        fill(memfd_a, 16 * PAGE, 12);
        add_region("memfd", memfd_a, 16 * PAGE);
    }
    if (has("fileprivate")) {
        int fd = make_file("private.dat", 16, 13, 0);
        unsigned char *m = map(16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        close(fd);
        fill(m + 2 * PAGE, PAGE, 131); /* copy-on-write pages */
        fill(m + 5 * PAGE + 100, 200, 132);
        volatile unsigned char c = m[7 * PAGE]; /* read only: stays the file's page */
        (void)c;
        add_region("fileprivate", m, 16 * PAGE);
    }
    if (has("fileshared")) {
        int fd = make_file("shared.dat", 16, 14, 0);
        fsh_a = map(16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        fsh_b = map(4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 4 * PAGE);
        close(fd);
        /* fd 121 reads the file behind the mappings' back (kept: after a creds change the
         * path may no longer be reachable) */
        path(p, sizeof p, "shared.dat");
        fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || dup3(fd, 121, O_CLOEXEC) != 121)
            die("shared.dat fd");
        close(fd);
        fill(fsh_a + 8 * PAGE, PAGE, 141); /* written through the mapping */
        add_region("fileshared", fsh_a, 16 * PAGE);
        fsh_fd_path_ok = 1;
    }
    if (has("guard")) {
        guard = map(3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        fill(guard, 3 * PAGE, 15);
        if (mprotect(guard + PAGE, PAGE, PROT_NONE) != 0)
            die("mprotect");
        add_region("guard.lo", guard, PAGE);
        add_region("guard.hi", guard + 2 * PAGE, PAGE);
        /* a large reservation, never touched */
        map(256 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    }
    if (has("delbefore")) {
        int fd = make_file("delbefore.dat", 8, 16, 0);
        unsigned char *m = map(8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        fill(m + PAGE, 100, 161);
        path(p, sizeof p, "delbefore.dat");
        unlink(p);
        add_region("delbefore", m, 8 * PAGE);
    }
    if (has("delafter")) {
        int fd = make_file("delafter.dat", 8, 17, 0);
        unsigned char *m = map(8 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        add_region("delafter", m, 8 * PAGE);
    }
    if (has("brk")) {
        brk_len = 3 * PAGE + 123;
        brk_start = sbrk(brk_len);
        if (brk_start == (void *)-1)
            die("sbrk");
        fill(brk_start, brk_len, 18);
        add_region("brk", brk_start, brk_len);
    }
}

static void report_memory(long seq)
{
    char key[64];
    for (int i = 0; i < nregions; i++) {
        snprintf(key, sizeof key, "mem.%s", regions[i].name);
        kv(key, "%016lx", (unsigned long)fnv(regions[i].p, regions[i].len));
    }
    if (memfd_a) {
        /* the two mappings show the same pages (the probe word is put back afterwards) */
        volatile long *a = (volatile long *)(memfd_a + 2 * PAGE + 64);
        volatile long *b = (volatile long *)(memfd_b + 64);
        long orig = *a;
        int ok = *b == orig;
        *a = seq;
        ok &= *b == seq;
        *b = orig;
        kv("memfd.coherent", "%d", ok && *a == orig);
    }
    if (fsh_a) {
        volatile long *a = (volatile long *)(fsh_a + 4 * PAGE + 64);
        volatile long *b = (volatile long *)(fsh_b + 64);
        long orig = *a, via_file = -1;
        int ok = *b == orig;
        *a = seq;
        ok &= *b == seq;
        if (pread(121, &via_file, sizeof via_file, 4 * PAGE + 64) != sizeof via_file)
            via_file = -2;
        *b = orig;
        kv("fileshared.coherent_mapping", "%d", ok && *a == orig);
        kv("fileshared.coherent_file", "%d", via_file == seq);
    }
    if (guard) {
        char a[8], b[8], c[8];
        strcpy(a, perms_of(guard));
        strcpy(b, perms_of(guard + PAGE));
        strcpy(c, perms_of(guard + 2 * PAGE));
        kv("guard.perms", "%s/%s/%s", a, b, c);
    }
    if (brk_start) {
        kv("brk.start", "%p", (void *)brk_start);
        kv("brk.end", "%p", sbrk(0));
    }
}

/* ---------------------------------------------------------------- the rest */
static __thread unsigned long tls_value = 0x5eed5eed5eedUL;
static unsigned char data_area[3 * PAGE] = {1};

static void setup_fds(void)
{
    char p[512];
    int fd = make_file("rw.dat", 1, 19, 0);
    lseek(fd, 123, SEEK_SET);
    dup2(fd, 100);
    close(fd);
    path(p, sizeof p, "append.dat");
    fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, "appended line of 40 bytes..............\n", 40) != 40)
        die("append.dat");
    dup3(fd, 101, O_CLOEXEC);
    close(fd);
    dup2(open("/dev/null", O_RDWR), 102);
    dup2(open("/dev/zero", O_RDONLY), 103);
    dup2(open("/dev/urandom", O_RDONLY | O_CLOEXEC), 104);
    fd = make_file("ro.dat", 1, 20, 0);
    close(fd);
    path(p, sizeof p, "ro.dat");
    fd = open(p, O_RDONLY);
    lseek(fd, 10, SEEK_SET);
    dup2(fd, 110);
    close(fd);
    for (int i = 3; i < 100; i++)
        if (i != out_fd)
            close(i);
}

/* fd 120: a file unlinked while open, with a position */
static void setup_fddel(void)
{
    char p[512];
    int fd = make_file("fddel.dat", 2, 21, O_CLOEXEC);
    lseek(fd, 1234, SEEK_SET);
    path(p, sizeof p, "fddel.dat");
    unlink(p);
    dup3(fd, 120, O_CLOEXEC);
    close(fd);
}

static void report_fddel(void)
{
    char link[512];
    static unsigned char buf[2 * PAGE];
    ssize_t n = readlink("/proc/self/fd/120", link, sizeof link - 1);
    link[n < 0 ? 0 : n] = 0;
    kv("fddel.link", "%s", link);
    kv("fddel.pos", "%ld", (long)lseek(120, 0, SEEK_CUR));
    kv("fddel.flags", "%x,%x", fcntl(120, F_GETFL), fcntl(120, F_GETFD));
    n = pread(120, buf, sizeof buf, 0);
    kv("fddel.size", "%ld", (long)n);
    kv("fddel.sum", "%016lx", (unsigned long)fnv(buf, sizeof buf));
}

static void report_fds(void)
{
    char key[32], link[64], target[512];
    for (int fd = 0; fd < 256; fd++) {
        int fdfl = fcntl(fd, F_GETFD);
        if (fdfl < 0)
            continue;
        int fl = fcntl(fd, F_GETFL);
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = 0;
        snprintf(key, sizeof key, "fd.%d", fd);
        if (fd == out_fd)
            kv(key, "%s|fl=%x|cloexec=%d", target, fl, fdfl & FD_CLOEXEC);
        else
            kv(key, "%s|fl=%x|cloexec=%d|pos=%ld", target, fl, fdfl & FD_CLOEXEC,
               (long)lseek(fd, 0, SEEK_CUR));
    }
    if (fcntl(103, F_GETFD) >= 0) {
        unsigned char z[64], u[64], sum = 0;
        int ok = read(103, z, sizeof z) == sizeof z;
        for (size_t i = 0; i < sizeof z; i++)
            ok &= z[i] == 0;
        kv("devzero.ok", "%d", ok);
        ok = read(104, u, sizeof u) == sizeof u;
        for (size_t i = 0; i < sizeof u; i++)
            sum |= u[i];
        kv("devurandom.ok", "%d", ok && sum);
        kv("devnull.ok", "%d", write(102, "xyz", 3) == 3);
        char buf[8];
        kv("rw.pread", "%d", pread(100, buf, 8, 0) == 8);
        kv("rw.pos_after_pread", "%ld", (long)lseek(100, 0, SEEK_CUR));
    }
}

static void report_task(void)
{
    unsigned long fs = 0, tidaddr = 0;
    syscall(SYS_arch_prctl, ARCH_GET_FS, &fs);
    kv("fsbase", "%lx", fs);
    kv("tls_value", "%lx", tls_value);
    void *head = NULL;
    size_t len = 0;
    syscall(SYS_get_robust_list, 0, &head, &len);
    kv("robust_list", "%p,%zu", head, len);
    prctl(PR_GET_TID_ADDRESS, &tidaddr);
    kv("clear_child_tid", "%lx", tidaddr);
    /* re-registering glibc's rseq area gives EBUSY iff it is still registered */
    extern const ptrdiff_t __rseq_offset;
    extern const unsigned int __rseq_size;
    const char *rseq = "unregistered-or-error";
    if (__rseq_size == 0) {
        rseq = "glibc-did-not-register";
    } else {
        void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
        unsigned lens[] = {32, __rseq_size, 20};
        for (int i = 0; i < 3; i++) {
            long r = syscall(SYS_rseq, area, lens[i], 0, 0x53053053);
            if (r == -1 && errno == EBUSY) {
                rseq = "registered";
                break;
            }
            if (r == 0) {
                rseq = "was-unregistered";
                break;
            }
        }
    }
    kv("rseq", "%s", rseq);
}

static void report_process(long seq)
{
    (void)seq;
    char buf[512];
    kv("pid", "%d", getpid());
    kv("var.ppid", "%d", getppid());
    kv("mem.data", "%016lx", (unsigned long)fnv(data_area, sizeof data_area));
    if (has("sig"))
        report_signals();
    if (has("altstack")) {
        stack_t ss;
        sigaltstack(NULL, &ss);
        kv("altstack", "%p,%zu,%d", ss.ss_sp, ss.ss_size, ss.ss_flags);
        kv("altstack.expected", "%d", ss.ss_sp == altstack && ss.ss_size == sizeof altstack);
    }
    if (has("prctl")) {
        int v = 0;
        prctl(PR_GET_NAME, buf);
        kv("name", "%s", buf);
        prctl(PR_GET_PDEATHSIG, &v);
        kv("pdeathsig", "%d", v);
        kv("pdeath_fired", "%d", (int)pdeath_fired);
        kv("no_new_privs", "%d", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
        kv("personality", "%x", personality(0xffffffff));
        kv("dumpable", "%d", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    }
    if (has("creds")) {
        uid_t r, e, s;
        gid_t gr, ge, gs, gl[32];
        getresuid(&r, &e, &s);
        kv("uids", "%d,%d,%d", r, e, s);
        getresgid(&gr, &ge, &gs);
        kv("gids", "%d,%d,%d", gr, ge, gs);
        int n = getgroups(32, gl);
        size_t off = 0;
        buf[0] = 0;
        for (int i = 0; i < n; i++)
            off += snprintf(buf + off, sizeof buf - off, "%d,", gl[i]);
        kv("groups", "%s", buf);
        kv("securebits", "%x", prctl(PR_GET_SECUREBITS, 0, 0, 0, 0));
        kv("keepcaps", "%d", prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0));
    }
    if (has("rlimit")) {
        char key[32];
        for (int i = 0; i < RLIM_NLIMITS; i++) {
            struct rlimit rl;
            getrlimit(i, &rl);
            snprintf(key, sizeof key, "rlimit.%d", i);
            kv(key, "%lx,%lx", (unsigned long)rl.rlim_cur, (unsigned long)rl.rlim_max);
        }
    }
    if (has("itimer")) {
        struct itimerval it;
        getitimer(ITIMER_REAL, &it);
        kv("itimer.real.interval", "%ld.%06ld", it.it_interval.tv_sec, (long)it.it_interval.tv_usec);
        kv("var.itimer.real.armed", "%d", it.it_value.tv_sec || it.it_value.tv_usec);
        getitimer(ITIMER_VIRTUAL, &it);
        kv("itimer.virtual.interval", "%ld.%06ld", it.it_interval.tv_sec,
           (long)it.it_interval.tv_usec);
        kv("itimer.virtual.value_sec", "%ld", it.it_value.tv_sec);
        kv("var.alarms", "%d", (int)alarms);
    }
    if (has("cwd")) {
        kv("cwd", "%s", getcwd(buf, sizeof buf) ? buf : "?");
        mode_t m = umask(0);
        umask(m);
        kv("umask", "%03o", m);
    }
    if (has("fds"))
        report_fds();
    if (has("fddel"))
        report_fddel();
    if (has("task"))
        report_task();
    report_memory(seq);
}

static void wait_ms(long ms)
{
    long long end = tp_now_ms() + ms;
    long long now;
    while ((now = tp_now_ms()) < end)
        tp_sleep_ms(end - now);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: state OUT WORKDIR GROUPS\n");
        return 2;
    }
    out_fd = tp_open_out(argv[1]);
    snprintf(workdir, sizeof workdir, "%s", argv[2]);
    snprintf(groups, sizeof groups, ",%s,", argv[3]);
    fill(data_area, sizeof data_area, 1);
    unsigned char stack_area[2 * PAGE];
    fill(stack_area, sizeof stack_area, 2);

    /* SIGUSR1 (drain request) always runs on the alternate stack if there is one */
    set_handler(SIGUSR1, on_usr1, SA_SIGINFO | SA_ONSTACK | SA_RESTART, NULL);
    if (has("sig"))
        setup_signals();
    if (has("altstack")) {
        stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
        if (sigaltstack(&ss, NULL) != 0)
            die("sigaltstack");
    }
    if (has("prctl")) {
        set_handler(SIGPWR, on_pwr, SA_RESTART, NULL);
        prctl(PR_SET_NAME, "tp-state");
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
            die("prctl");
        if (personality(ADDR_NO_RANDOMIZE | UNAME26) == -1)
            die("personality");
    }
    if (has("rlimit")) {
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = 512;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            die("RLIMIT_NOFILE");
        rl.rlim_cur = 4096;
        rl.rlim_max = 8192;
        if (setrlimit(RLIMIT_CORE, &rl) != 0)
            die("RLIMIT_CORE");
        getrlimit(RLIMIT_MSGQUEUE, &rl);
        rl.rlim_cur = 4000;
        if (setrlimit(RLIMIT_MSGQUEUE, &rl) != 0)
            die("RLIMIT_MSGQUEUE");
        getrlimit(RLIMIT_STACK, &rl);
        rl.rlim_cur = 6 << 20;
        if (setrlimit(RLIMIT_STACK, &rl) != 0)
            die("RLIMIT_STACK");
    }
    if (has("itimer")) {
        set_handler(SIGALRM, on_alrm, SA_RESTART, NULL);
        struct itimerval it = {{0, 20000}, {0, 20000}};
        struct itimerval vt = {{1000, 0}, {1000, 0}};
        if (setitimer(ITIMER_REAL, &it, NULL) != 0 || setitimer(ITIMER_VIRTUAL, &vt, NULL) != 0)
            die("setitimer");
    }
    setup_memory();
    if (has("fds"))
        setup_fds();
    if (has("fddel"))
        setup_fddel();
    if (has("cwd")) {
        char p[512];
        path(p, sizeof p, "cwd-dir");
        mkdir(p, 0755);
        if (chdir(p) != 0)
            die("chdir");
        umask(027);
    }
    if (has("creds")) {
        gid_t gl[] = {4, 24, 27, 1000};
        if (setgroups(4, gl) != 0 || setresgid(1001, 1002, 0) != 0 ||
            setresuid(1001, 1002, 0) != 0)
            die("creds");
    }
    if (has("prctl") && prctl(PR_SET_PDEATHSIG, SIGPWR) != 0) /* cleared by a creds change */
        die("PR_SET_PDEATHSIG");

    for (long seq = 1;; seq++) {
        rep_len = 0;
        rep_len += snprintf(rep, sizeof rep, "begin seq=%ld\n", seq);
        report_process(seq);
        kv("mem.stack", "%016lx", (unsigned long)fnv(stack_area, sizeof stack_area));
        rep_len += snprintf(rep + rep_len, sizeof rep - rep_len, "end seq=%ld\n", seq);
        for (size_t off = 0; off < rep_len;) {
            ssize_t w = write(out_fd, rep + off, rep_len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                _exit(90);
            off += w;
        }
        wait_ms(100);
        if (drain_req) {
            drain_req = 0;
            drain();
        }
    }
}

/* threads OUT: a main thread and five pthreads in different states, each with its own name
 * (pthread_setname_np), signal mask and __thread variables:
 *   spin    computes, reads the clock (vDSO) to report every 50 ms
 *   condw   waits in pthread_cond_wait, woken by main every 50 ms
 *   sleeper clock_nanosleep(TIMER_ABSTIME) to the next 50 ms tick; ok=0 if that ever fails
 *           (EINTR: an interrupted absolute sleep must be restarted, not failed); exits when
 *           main gets SIGUSR1, and main joins it
 *   poller  poll(NULL, 0, 50) loop
 *   futexw  raw FUTEX_WAIT with a 50 ms timeout on a word nobody changes
 *   pauser  sigsuspend() with every signal blocked: it must never return; if it does it
 *           writes "tp-pauser woke" (a wrongly failed restart of an interrupted syscall)
 * Lines: "start NAME tid=TID" once, then "NAME n=N tid=TID tag=TAG ok=1" where n is a
 * per-thread __thread counter (consecutive, no gap, no repeat) and ok=1 means that the
 * thread's TLS tag, tid, name, sigmask, robust futex list, clear_child_tid address and rseq
 * registration are still what they were when the thread started (else ok=0 why=WHAT).
 * On SIGUSR1 main stops and joins the sleeper and writes "joined sleeper", then starts a new
 * thread "tp-late" (which reports once, with its self-check, and exits; "joined late") and
 * forks a child that exits 7 ("forked status=7"): both must work in a restored process. */
#include "tp.h"
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

enum { T_MAIN, T_SPIN, T_CONDW, T_SLEEPER, T_POLLER, T_FUTEXW, T_PAUSER, T_LATE, NT };
static const char *names[NT] = {"tp-main", "tp-spin", "tp-condw", "tp-sleeper", "tp-poller",
                                "tp-futexw", "tp-pauser", "tp-late"};
/* a signal blocked by one thread only (SIGUSR1 is blocked by every thread but main) */
static const int own_sig[NT] = {0, SIGUSR2, SIGHUP, SIGWINCH, 40, 41, 42, 43};

static int out_fd;
static __thread long tls_n;
static __thread unsigned long tls_tag;
static __thread int tls_idx;
static __thread pid_t tls_tid;
static __thread void *tls_robust;
static __thread unsigned long tls_tidaddr;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static unsigned long gen;
static volatile sig_atomic_t usr1;
static volatile int stop_sleeper;
static uint32_t futex_word;

static void expected_mask(int idx, sigset_t *set)
{
    sigemptyset(set);
    if (idx != T_MAIN)
        sigaddset(set, SIGUSR1);
    if (own_sig[idx])
        sigaddset(set, own_sig[idx]);
}

static void *robust_list(void)
{
    void *head = NULL;
    size_t len = 0;
    syscall(SYS_get_robust_list, 0, &head, &len);
    return head;
}

static unsigned long tid_address(void)
{
    unsigned long a = 0;
    prctl(PR_GET_TID_ADDRESS, &a);
    return a;
}

/* re-registering glibc's rseq area gives EBUSY iff it is still registered */
static int rseq_registered(void)
{
    extern const ptrdiff_t __rseq_offset;
    extern const unsigned int __rseq_size;
    if (__rseq_size == 0)
        return 1; /* glibc did not register rseq: nothing to check */
    void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
    unsigned lens[] = {32, __rseq_size, 20};
    for (int i = 0; i < 3; i++) {
        long r = syscall(SYS_rseq, area, lens[i], 0, 0x53053053);
        if (r == -1 && errno == EBUSY)
            return 1;
        if (r == 0)
            return 0;
    }
    return 0;
}

/* "" if the thread is as it set itself up, else what differs */
static const char *self_check(void)
{
    char name[32] = "";
    sigset_t cur, want;
    if (tls_tag != 0x7e57000000000000UL + (unsigned long)tls_idx * 0x1111)
        return "tls";
    if (tls_tid != (pid_t)syscall(SYS_gettid))
        return "tid";
    prctl(PR_GET_NAME, name);
    if (strcmp(name, names[tls_idx]) != 0)
        return "name";
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    expected_mask(tls_idx, &want);
    for (int s = 1; s < 65; s++)
        if (s != 32 && s != 33 && sigismember(&cur, s) != sigismember(&want, s))
            return "sigmask";
    if (robust_list() != tls_robust)
        return "robust_list";
    if (tid_address() != tls_tidaddr)
        return "clear_child_tid";
    if (!rseq_registered())
        return "rseq";
    return "";
}

static __thread int tls_failed;

static void report(void)
{
    tls_n++;
    const char *why = tls_failed ? "syscall" : self_check();
    tp_printf(out_fd, "%s n=%ld tid=%d tag=%lx ok=%d%s%s\n", names[tls_idx], tls_n, tls_tid,
              tls_tag, !*why, *why ? " why=" : "", why);
}

static void setup_thread(int idx)
{
    sigset_t set;
    tls_idx = idx;
    tls_tag = 0x7e57000000000000UL + (unsigned long)idx * 0x1111;
    tls_tid = syscall(SYS_gettid);
    tls_robust = robust_list();
    tls_tidaddr = tid_address();
    pthread_setname_np(pthread_self(), names[idx]);
    expected_mask(idx, &set);
    pthread_sigmask(SIG_SETMASK, &set, NULL);
    tp_printf(out_fd, "start %s tid=%d\n", names[idx], tls_tid);
}

static void *spin(void *arg)
{
    (void)arg;
    setup_thread(T_SPIN);
    unsigned long x = 88172645463325252UL;
    long long next = tp_now_ms() + 50;
    for (;;) {
        for (int i = 0; i < 100000; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        __asm__ volatile("" ::"r"(x));
        if (tp_now_ms() >= next) {
            next += 50;
            report();
        }
    }
    return NULL;
}

static void *condw(void *arg)
{
    (void)arg;
    setup_thread(T_CONDW);
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (gen == seen)
            pthread_cond_wait(&cv, &mu);
        seen = gen;
        pthread_mutex_unlock(&mu);
        report();
    }
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    setup_thread(T_SLEEPER);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!stop_sleeper) {
        next.tv_nsec += 50 * 1000000L;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        int err = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        if (err) {
            tls_failed = 1;
            tp_printf(out_fd, "tp-sleeper clock_nanosleep failed: %s\n", strerror(err));
        }
        report();
    }
    return NULL;
}

static void *poller(void *arg)
{
    (void)arg;
    setup_thread(T_POLLER);
    for (;;) {
        poll(NULL, 0, 50);
        report();
    }
    return NULL;
}

static void *futexw(void *arg)
{
    (void)arg;
    setup_thread(T_FUTEXW);
    for (;;) {
        struct timespec ts = {0, 50 * 1000000L};
        syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
        report();
    }
    return NULL;
}

static void *pauser(void *arg)
{
    (void)arg;
    setup_thread(T_PAUSER);
    sigset_t all;
    sigfillset(&all);
    for (;;) {
        sigsuspend(&all);
        tp_printf(out_fd, "tp-pauser woke: %s\n", strerror(errno));
    }
    return NULL;
}

static void *late(void *arg)
{
    (void)arg;
    setup_thread(T_LATE);
    report();
    return NULL;
}

static void on_usr1(int sig)
{
    (void)sig;
    usr1 = 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: threads OUT\n");
        return 2;
    }
    out_fd = tp_open_out(argv[1]);
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);

    /* Threads inherit the creator's mask: block SIGUSR1 while creating them. */
    sigset_t all;
    sigemptyset(&all);
    sigaddset(&all, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    void *(*fns[NT])(void *) = {NULL, spin, condw, sleeper, poller, futexw, pauser, NULL};
    pthread_t th[NT];
    for (int i = 1; i < T_LATE; i++)
        if (pthread_create(&th[i], NULL, fns[i], NULL) != 0)
            return 3;
    setup_thread(T_MAIN);

    int joined = 0;
    for (;;) {
        tp_sleep_ms(50);
        pthread_mutex_lock(&mu);
        gen++;
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
        report();
        if (usr1 && !joined) {
            stop_sleeper = 1;
            pthread_join(th[T_SLEEPER], NULL);
            joined = 1;
            tp_printf(out_fd, "joined sleeper\n");
            pthread_t lt;
            if (pthread_create(&lt, NULL, late, NULL) == 0 && pthread_join(lt, NULL) == 0)
                tp_printf(out_fd, "joined late\n");
            pid_t child = fork();
            if (child == 0)
                _exit(7);
            int st = -1;
            while (child > 0 && waitpid(child, &st, 0) < 0 && errno == EINTR)
                ;
            tp_printf(out_fd, "forked status=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        }
    }
}

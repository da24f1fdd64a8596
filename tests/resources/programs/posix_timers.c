/* POSIX timers that keep firing: a 100 ms CLOCK_MONOTONIC periodic timer with SIGEV_SIGNAL
 * (SIGRTMIN, sigev_value 0x5eed), a 150 ms CLOCK_REALTIME periodic timer with
 * SIGEV_THREAD_ID aimed at a worker thread (SIGRTMIN+1, value 77), a disarmed timer and a
 * one-shot CLOCK_BOOTTIME timer far in the future. Prints "ids a b c d tid=T" once, then
 * one line per signal: "tick which=A n=N value=V t=SECONDS tid=TID". */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static FILE *out;
static timer_t ta, tb, tc, td;
static volatile pid_t worker_tid;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *worker(void *arg) {
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + 1);
    worker_tid = syscall(SYS_gettid);
    int n = 0;
    for (;;) {
        siginfo_t si;
        if (sigwaitinfo(&set, &si) < 0)
            continue;
        fprintf(out, "tick which=B n=%d value=%d t=%.4f tid=%ld\n", ++n, si.si_value.sival_int,
                now(), (long)syscall(SYS_gettid));
    }
    return NULL;
}

int main(void) {
    out = fopen("posix_timers.log", "w");
    setvbuf(out, NULL, _IOLBF, 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN);
    sigaddset(&set, SIGRTMIN + 1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t th;
    pthread_create(&th, NULL, worker, NULL);
    while (!worker_tid)
        usleep(1000);

    struct sigevent sa = {0};
    sa.sigev_notify = SIGEV_SIGNAL;
    sa.sigev_signo = SIGRTMIN;
    sa.sigev_value.sival_int = 0x5eed;
    /* a few timers made and deleted first, so the ids are not simply 0, 1, 2 */
    for (int i = 0; i < 3; i++) {
        timer_t x;
        timer_create(CLOCK_MONOTONIC, &sa, &x);
        if (i != 1)
            timer_delete(x);
    }
    if (timer_create(CLOCK_MONOTONIC, &sa, &ta) < 0) { perror("a"); return 1; }
    struct sigevent sb = {0};
    sb.sigev_notify = SIGEV_THREAD_ID;
    sb._sigev_un._tid = worker_tid;
    sb.sigev_signo = SIGRTMIN + 1;
    sb.sigev_value.sival_int = 77;
    if (timer_create(CLOCK_REALTIME, &sb, &tb) < 0) { perror("b"); return 1; }
    if (timer_create(CLOCK_MONOTONIC, &sa, &tc) < 0) { perror("c"); return 1; }
    if (timer_create(CLOCK_BOOTTIME, &sa, &td) < 0) { perror("d"); return 1; }
    struct itimerspec ia = {{0, 100000000}, {0, 100000000}};
    struct itimerspec ib = {{0, 150000000}, {0, 150000000}};
    struct itimerspec id = {{0, 0}, {3600, 0}};
    timer_settime(ta, 0, &ia, NULL);
    timer_settime(tb, 0, &ib, NULL);
    timer_settime(td, 0, &id, NULL);
    fprintf(out, "ids %ld %ld %ld %ld tid=%d\n", (long)ta, (long)tb, (long)tc, (long)td, worker_tid);

    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, SIGRTMIN);
    int n = 0;
    for (;;) {
        siginfo_t si;
        if (sigwaitinfo(&only, &si) < 0)
            continue;
        fprintf(out, "tick which=A n=%d value=%d t=%.4f tid=%ld timer=%d\n", ++n,
                si.si_value.sival_int, now(), (long)syscall(SYS_gettid), si.si_timerid);
    }
}

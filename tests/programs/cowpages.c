/* cowpages OUT MIB THREADS: one anonymous area of MIB MiB cut into THREADS sections of P pages,
 * each written nonstop by one thread so that the process can check its memory is one
 * consistent instant. Thread t keeps a counter c[t] (in .bss, so in another mapping than the
 * pages) and repeats: v = c[t]; write v into page v mod P of its section (first and last 8
 * bytes); c[t] = v + 1. Between steps, page j of the section holds the largest v < c[t] with
 * v = j (mod P).
 *
 * SIGUSR1: each thread checks its section at its next step boundary and appends
 *   "OK <pid> <t> <c>" or "BAD <pid> <t> <page> <found> <expected>" to OUT.
 * SIGUSR2 (THREADS = 1): thread 0 performs the action named by $COW_ACTION once, then appends
 *   "ACTED <pid> <action> [<child pid>]":
 *   dontneed: madvise(MADV_DONTNEED) of the last quarter of the section (it must read as zero
 *             from then on; the writer skips it),
 *   unmap:    munmap of the last quarter (the writer skips it; never read again),
 *   fork:     fork(); the child goes on writing its own copy and answers SIGUSR1 itself.
 * Starts by writing "READY <pid> <addr> <len>". */
#include "tp.h"
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>

#define MAXT 16
#define PAGE 4096

static volatile uint64_t counter[MAXT];
static volatile int check_gen, action_gen;
static volatile int cut;  /* 1: the last quarter was dropped (dontneed) or unmapped (unmap) */
static unsigned char *area;
static uint64_t P;
static int out_fd, nthreads;
static const char *action = "";

static void on_usr1(int sig) { (void)sig; check_gen++; }
static void on_usr2(int sig) { (void)sig; action_gen++; }

static void check(int t)
{
    volatile uint64_t *c = &counter[t];
    unsigned char *sec = area + (uint64_t)t * P * PAGE;
    uint64_t top = *c - 1;
    for (uint64_t j = 0; j < P; j++) {
        if (cut && j >= P - P / 4) {
            if (cut == 2)
                continue;  /* unmapped */
            uint64_t a, b;
            memcpy(&a, sec + j * PAGE, 8);
            memcpy(&b, sec + j * PAGE + PAGE - 8, 8);
            if (a || b) {
                tp_printf(out_fd, "BAD %d %d %lu %lu 0\n", getpid(), t, (unsigned long)j, (unsigned long)a);
                return;
            }
            continue;
        }
        uint64_t want = top - ((top - j) % P), a, b;
        memcpy(&a, sec + j * PAGE, 8);
        memcpy(&b, sec + j * PAGE + PAGE - 8, 8);
        if (a != want || b != want) {
            tp_printf(out_fd, "BAD %d %d %lu %lu %lu\n", getpid(), t, (unsigned long)j,
                      (unsigned long)a, (unsigned long)want);
            return;
        }
    }
    tp_printf(out_fd, "OK %d %d %lu\n", getpid(), t, (unsigned long)*c);
}

static void act(void)
{
    uint64_t q = P - P / 4;
    if (!strcmp(action, "dontneed")) {
        cut = 1;
        madvise(area + q * PAGE, (P - q) * PAGE, MADV_DONTNEED);
        tp_printf(out_fd, "ACTED %d dontneed\n", getpid());
    } else if (!strcmp(action, "unmap")) {
        cut = 2;
        munmap(area + q * PAGE, (P - q) * PAGE);
        tp_printf(out_fd, "ACTED %d unmap\n", getpid());
    } else if (!strcmp(action, "fork")) {
        pid_t child = fork();
        if (child == 0)
            return;
        tp_printf(out_fd, "ACTED %d fork %d\n", getpid(), (int)child);
    }
}

static void *writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    volatile uint64_t *c = &counter[t];
    unsigned char *sec = area + (uint64_t)t * P * PAGE;
    int seen_check = check_gen, seen_action = action_gen;
    for (;;) {
        if (seen_check != check_gen) {
            seen_check = check_gen;
            check(t);
        }
        if (t == 0 && seen_action != action_gen) {
            seen_action = action_gen;
            act();
        }
        uint64_t v = *c, j = v % P;
        if (!(cut && j >= P - P / 4)) {
            volatile uint64_t *first = (volatile uint64_t *)(sec + j * PAGE);
            volatile uint64_t *last = (volatile uint64_t *)(sec + j * PAGE + PAGE - 8);
            *first = v;
            *last = v;
        }
        *c = v + 1;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: cowpages OUT MIB THREADS\n");
        return 2;
    }
    out_fd = tp_open_out(argv[1]);
    uint64_t size = (uint64_t)atol(argv[2]) << 20;
    nthreads = atoi(argv[3]);
    if (nthreads < 1 || nthreads > MAXT)
        return 2;
    if (getenv("COW_ACTION"))
        action = getenv("COW_ACTION");
    P = size / PAGE / nthreads;
    area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        return 3;
    for (int t = 0; t < nthreads; t++) {
        unsigned char *sec = area + (uint64_t)t * P * PAGE;
        for (uint64_t j = 0; j < P; j++) {
            memcpy(sec + j * PAGE, &j, 8);
            memcpy(sec + j * PAGE + PAGE - 8, &j, 8);
        }
        counter[t] = P;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    tp_printf(out_fd, "READY %d %lu %lu\n", getpid(), (unsigned long)(uintptr_t)area, (unsigned long)size);
    pthread_t th[MAXT];
    for (int t = 1; t < nthreads; t++)
        pthread_create(&th[t], NULL, writer, (void *)(intptr_t)t);
    writer((void *)0);
    return 0;
}

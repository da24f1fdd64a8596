/* An epoll set inside an epoll set over a pipe (level-triggered) and an eventfd
 * (edge-triggered). The outer epoll watches the inner one.
 *
 * Prints "ready fds pipe_r=R pipe_w=W efd=E inner=I outer=O". Each event is one line
 * "n=N pipe byte=C data=D" (one byte per wake-up: level-triggered must wake again for the
 * rest) or "n=N efd val=V data=D". SIGUSR1 toggles pause (no epoll_wait while paused;
 * "paused=1/0"); SIGUSR2 does EPOLL_CTL_MOD of the pipe entry to data 0x5555 and prints
 * "n=N mod rc=R". Data is fed by the test through the pipe's write end and the eventfd.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static volatile sig_atomic_t paused, want_mod;
static void on_usr1(int s) { (void)s; paused = !paused; }
static void on_usr2(int s) { (void)s; want_mod = 1; }

int main(void) {
    int p[2];
    if (pipe(p)) return 1;
    int efd = eventfd(0, EFD_NONBLOCK);
    int inner = epoll_create1(0), outer = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1111222233334444ULL};
    if (epoll_ctl(inner, EPOLL_CTL_ADD, p[0], &ev)) return 2;
    ev.events = EPOLLIN | EPOLLET; ev.data.u64 = 0xE0E0E0E0E0ULL;
    if (epoll_ctl(inner, EPOLL_CTL_ADD, efd, &ev)) return 3;
    ev.events = EPOLLIN; ev.data.u64 = 0x2;
    if (epoll_ctl(outer, EPOLL_CTL_ADD, inner, &ev)) return 4;
    signal(SIGUSR1, on_usr1);
    signal(SIGUSR2, on_usr2);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready fds pipe_r=%d pipe_w=%d efd=%d inner=%d outer=%d\n", p[0], p[1], efd, inner, outer);
    unsigned long n = 0;
    int was_paused = 0;
    for (;;) {
        if (want_mod) {
            want_mod = 0;
            struct epoll_event m = {.events = EPOLLIN, .data.u64 = 0x5555};
            int rc = epoll_ctl(inner, EPOLL_CTL_MOD, p[0], &m);
            printf("n=%lu mod rc=%d errno=%d\n", ++n, rc, rc ? errno : 0);
        }
        if (paused != was_paused) {
            was_paused = paused;
            printf("paused=%d\n", was_paused);
        }
        if (paused) { usleep(10000); continue; }
        struct epoll_event out[4];
        int k = epoll_wait(outer, out, 4, 50);
        if (k <= 0) continue;
        if (out[0].data.u64 != 0x2) { printf("bad outer data %llx\n", (unsigned long long)out[0].data.u64); continue; }
        struct epoll_event in[4];
        int m = epoll_wait(inner, in, 4, 0);
        for (int i = 0; i < m; i++) {
            unsigned long long d = in[i].data.u64;
            if (d == 0xE0E0E0E0E0ULL) {
                uint64_t v;
                if (read(efd, &v, 8) == 8) printf("n=%lu efd val=%llu data=%llx\n", ++n, (unsigned long long)v, d);
            } else {
                char c;
                if (read(p[0], &c, 1) == 1) printf("n=%lu pipe byte=%c data=%llx\n", ++n, c, d);
            }
        }
    }
}

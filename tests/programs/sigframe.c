/* sigframe OUT: checkpointed while running inside a signal handler on the alternate stack.
 * main blocks SIGWINCH, puts a pattern in xmm15 and sends itself SIGUSR2 (raw syscalls in one
 * asm block). The SIGUSR2 handler (SA_ONSTACK|SA_SIGINFO) loops "handler n=N onstack=1" every
 * 50 ms until SIGUSR1 arrives, then returns: sigreturn must put back xmm15 and the signal mask
 * from the frame, which lives on the alternate stack. Back in main: "back xmm=1 mask=1", then
 * "main n=N" every 50 ms. */
#include "tp.h"
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static int out_fd;
static volatile sig_atomic_t go_back;
static char altstack[256 * 1024] __attribute__((aligned(64)));

static void on_usr1(int sig)
{
    (void)sig;
    go_back = 1;
}

static void on_usr2(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    char here;
    int on_alt = &here >= altstack && &here < altstack + sizeof altstack;
    for (long n = 1; !go_back; n++) {
        stack_t ss;
        sigaltstack(NULL, &ss);
        tp_printf(out_fd, "handler n=%ld onstack=%d ss_onstack=%d\n", n, on_alt,
                  !!(ss.ss_flags & SS_ONSTACK));
        tp_sleep_ms(50);
    }
    tp_printf(out_fd, "handler returns\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: sigframe OUT\n");
        return 2;
    }
    out_fd = tp_open_out(argv[1]);
    prctl(PR_SET_NAME, "tp-sigframe");
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        return 3;
    struct sigaction sa = {0};
    sa.sa_sigaction = on_usr2;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    struct sigaction sa1 = {0};
    sa1.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa1, NULL);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGWINCH);
    sigprocmask(SIG_SETMASK, &mask, NULL);

    static const uint64_t pattern[2] __attribute__((aligned(16))) = {0x0123456789abcdefULL,
                                                                      0xfedcba9876543210ULL};
    uint64_t after[2] __attribute__((aligned(16)));
    long pid = getpid(), tid = syscall(SYS_gettid);
    long ret;
    __asm__ volatile("movdqa (%[p]), %%xmm15\n\t"
                     "syscall\n\t"
                     "movdqu %%xmm15, (%[a])"
                     : "=a"(ret)
                     : "a"((long)SYS_tgkill), "D"(pid), "S"(tid), "d"((long)SIGUSR2),
                       [p] "r"(pattern), [a] "r"(after)
                     : "rcx", "r11", "memory", "xmm15");
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    int mask_ok = 1;
    for (int s = 1; s < 32; s++)
        if (sigismember(&now, s) != sigismember(&mask, s))
            mask_ok = 0;
    tp_printf(out_fd, "back ret=%ld xmm=%d mask=%d\n", ret,
              after[0] == pattern[0] && after[1] == pattern[1], mask_ok);
    for (long n = 1;; n++) {
        tp_printf(out_fd, "main n=%ld\n", n);
        tp_sleep_ms(50);
    }
}

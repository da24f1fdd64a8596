/* signalfd over SIGUSR1 and SIGUSR2 (blocked). Prints "ready sfd=S". Every 20 ms: when the
 * file "read" exists in the working directory, reads every queued signal from the signalfd
 * ("n=N sig=SIGNO") and removes "read"; else prints nothing. Signals sent while "read" is
 * absent stay pending in the process. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <unistd.h>

int main(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready sfd=%d\n", sfd);
    unsigned long n = 0;
    for (;;) {
        usleep(20000);
        if (access("read", F_OK)) continue;
        struct pollfd pf = {.fd = sfd, .events = POLLIN};
        while (poll(&pf, 1, 0) == 1) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) != sizeof si) break;
            printf("n=%lu sig=%u\n", ++n, si.ssi_signo);
        }
        unlink("read");
        printf("drained\n");
    }
}

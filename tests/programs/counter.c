/* counter OUT [INTERVAL_MS]: appends 1, 2, 3, ... (one per line) to OUT every INTERVAL_MS
 * (default 50). After a checkpoint/restore the sequence must go on with no gap and no repeat. */
#include "tp.h"
#include <sys/prctl.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: counter OUT [INTERVAL_MS]\n");
        return 2;
    }
    long interval = argc > 2 ? atol(argv[2]) : 50;
    int fd = tp_open_out(argv[1]);
    prctl(PR_SET_NAME, "tp-counter");
    for (long n = 1;; n++) {
        tp_printf(fd, "%ld\n", n);
        tp_sleep_ms(interval);
    }
}

/* mdwe OUT: turns on memory-deny-write-execute (prctl PR_SET_MDWE), then appends
 * "N mdwe=FLAGS wx=refused|allowed" every 50 ms: the prctl's flags and whether a new writable
 * and executable mapping is refused. The flags cannot be turned off once set, so a restored
 * process must still show them, and still be refused. */
#include "tp.h"
#include <sys/mman.h>
#include <sys/prctl.h>

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66
#endif
#define MDWE_REFUSE_EXEC_GAIN 1

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: mdwe OUT\n");
        return 2;
    }
    int fd = tp_open_out(argv[1]);
    prctl(PR_SET_NAME, "tp-mdwe");
    if (prctl(PR_SET_MDWE, MDWE_REFUSE_EXEC_GAIN, 0, 0, 0)) {
        perror("PR_SET_MDWE");
        return 1;
    }
    for (long n = 1;; n++) {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED)
            munmap(p, 4096);
        tp_printf(fd, "%ld mdwe=%d wx=%s\n", n, prctl(PR_GET_MDWE, 0, 0, 0, 0),
                  p == MAP_FAILED ? "refused" : "allowed");
        tp_sleep_ms(50);
    }
}

/* memhog MIB READY_FILE [TS_FILE]
 * malloc and fill MIB MiB with a pattern (every page dirty, different content per page), write
 * "ADDR SIZE\n" to READY_FILE (via a temp name + rename), then loop forever: sleep ~1 ms and, if
 * TS_FILE is given, append the CLOCK_MONOTONIC time in ns (8 bytes) to it. The benchmark reads
 * the timestamps back and computes the longest pause the process saw. MIB 0 = a tiny process.
 * SIGUSR1: write one byte in every 10th page, then create READY_FILE.dirtyN (N = 1, 2, ...):
 * the pages an incremental checkpoint must store again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

static volatile sig_atomic_t dirty_requested;
static void on_usr1(int sig) { (void)sig; dirty_requested = 1; }

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: memhog MIB READY [TS]\n"); return 2; }
    size_t size = (size_t)atol(argv[1]) << 20;
    unsigned char *buf = NULL;
    if (size) {
        buf = malloc(size);
        if (!buf) { perror("malloc"); return 1; }
        for (size_t off = 0; off < size; off += 8) {
            uint64_t v = (off * 0x9E3779B97F4A7C15ull) ^ 0x746f72706f72ull;
            memcpy(buf + off, &v, 8);
        }
    }
    int ts = -1;
    if (argc > 3) ts = open(argv[3], O_WRONLY | O_CREAT | O_APPEND, 0600);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[2]);
    FILE *f = fopen(tmp, "w");
    if (!f) { perror("ready"); return 1; }
    fprintf(f, "%lu %lu\n", (unsigned long)(uintptr_t)buf, (unsigned long)size);
    fclose(f);
    rename(tmp, argv[2]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    struct timespec d = {0, 1000000}, now;
    volatile uint64_t sum = 0;
    int dirtied = 0;
    for (;;) {
        if (dirty_requested) {
            dirty_requested = 0;
            for (size_t off = 0; off < size; off += 10 * 4096) buf[off]++;
            snprintf(tmp, sizeof tmp, "%s.dirty%d", argv[2], ++dirtied);
            int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd >= 0) close(fd);
        }
        nanosleep(&d, NULL);
        if (ts >= 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            uint64_t ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
            if (write(ts, &ns, 8) != 8) return 1;
        }
        if (size) sum += buf[sum % size];
    }
}

/* manymaps OUT [NMAPS]: NMAPS (default 3000) one-page anonymous mappings with alternating
 * protections (so the kernel cannot merge them: one VMA each), each filled with its own
 * pattern, plus a 1 GiB MAP_NORESERVE area with one page touched every 64 MiB. Loops forever:
 * checksum of everything, "pass=N sum=HEX" appended to OUT, 20 ms pause. A restore must bring
 * back every area (same sum, same /proc/PID/maps) and the image must not hold 1 GiB of zeros. */
#include "tp.h"
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#define PAGE 4096UL

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: manymaps OUT [NMAPS]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 3000;
    int fd = tp_open_out(argv[1]);
    prctl(PR_SET_NAME, "tp-manymaps");
    unsigned char **pages = calloc(n, sizeof *pages);
    /* reserve one range and carve it, so the areas are adjacent and really alternate */
    unsigned char *base = mmap(NULL, n * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return 3;
    for (int i = 0; i < n; i++) {
        pages[i] = mmap(base + i * PAGE, PAGE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (pages[i] == MAP_FAILED)
            return 3;
        uint64_t x = 0x9e3779b97f4a7c15ULL * (i + 1);
        for (unsigned j = 0; j < PAGE; j += 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            memcpy(pages[i] + j, &x, 8);
        }
        if (i % 2 && mprotect(pages[i], PAGE, PROT_READ) != 0)
            return 4;
    }
    size_t big_len = 1UL << 30;
    unsigned char *big = mmap(NULL, big_len, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (big == MAP_FAILED)
        return 3;
    for (size_t off = 0; off < big_len; off += 64UL << 20)
        memset(big + off + 123 * PAGE, (int)(off >> 26) + 1, PAGE);

    for (long pass = 1;; pass++) {
        uint64_t h = 0xcbf29ce484222325ULL;
        for (int i = 0; i < n; i++)
            for (unsigned j = 0; j < PAGE; j += 8)
                h = (h ^ *(uint64_t *)(pages[i] + j)) * 0x100000001b3ULL;
        for (size_t off = 0; off < big_len; off += 64UL << 20)
            for (unsigned j = 0; j < 2 * PAGE; j += 8)
                h = (h ^ *(uint64_t *)(big + off + 122 * PAGE + j)) * 0x100000001b3ULL;
        tp_printf(fd, "pass=%ld sum=%016llx\n", pass, (unsigned long long)h);
        tp_sleep_ms(20);
    }
}

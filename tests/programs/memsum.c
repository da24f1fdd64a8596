/* memsum OUT [MIB]: maps MIB MiB (default 256) of anonymous memory and fills it: most pages
 * with a pseudo-random pattern, every 7th page never touched (not present), every 11th page
 * written with zeros. Then it loops forever computing a checksum over the whole area, appending
 * "pass=N sum=HEX" after each full pass. A checkpoint lands mid-pass (the running sum lives in
 * registers); after restore every pass must still give the same sum. */
#include "tp.h"
#include <sys/mman.h>
#include <sys/prctl.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: memsum OUT [MIB]\n");
        return 2;
    }
    unsigned long size = (argc > 2 ? atol(argv[2]) : 256) << 20;
    int fd = tp_open_out(argv[1]);
    prctl(PR_SET_NAME, "tp-memsum");
    unsigned long *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                              -1, 0);
    if (mem == MAP_FAILED)
        return 3;
    unsigned long x = 0x2545f4914f6cdd1dUL;
    unsigned long words_per_page = 4096 / sizeof(long);
    for (unsigned long p = 0; p < size / 4096; p++) {
        unsigned long *page = mem + p * words_per_page;
        if (p % 7 == 3)
            continue;
        if (p % 11 == 5) {
            memset(page, 0, 4096);
            continue;
        }
        for (unsigned long i = 0; i < words_per_page; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            page[i] = x;
        }
    }
    unsigned long words = size / sizeof(long);
    for (long pass = 1;; pass++) {
        unsigned long h = 0xcbf29ce484222325UL;
        for (unsigned long i = 0; i < words; i++)
            h = (h ^ mem[i]) * 0x100000001b3UL;
        tp_printf(fd, "pass=%ld sum=%016lx\n", pass, h);
    }
}

/* avx512 OUT: loads a pattern into zmm0-zmm31 and k1-k7 once, then loops forever checking that
 * the registers still hold it: 200 checks, a 1 ms nanosleep (raw syscall), again. Every 32
 * rounds it appends "OK <round>" to OUT (round = 32, 64, 96, ...). If a register differs it
 * appends "FAIL <round> bad=<mask>" (bit i: zmm i, bit 32+i: k i, bit 40: MXCSR, bit 41: x87
 * control word; both are set to non-default values) and exits 3.
 * After the load nothing but this file's general-register-only code and raw syscalls runs, so
 * the registers can only change if the checkpoint/restore loses them. Needs AVX512F+BW. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NOVEC __attribute__((target("general-regs-only"), noinline))

static unsigned char zpat[32 * 64] __attribute__((aligned(64)));
static unsigned long kpat[8];

static NOVEC long raw3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

#define LOADZ(i) "vmovdqa64 " #i "*64(%[z]), %%zmm" #i "\n\t"
#define LOADK(i) "kmovq " #i "*8(%[k]), %%k" #i "\n\t"

static NOVEC void load(void)
{
    __asm__ volatile(LOADZ(0) LOADZ(1) LOADZ(2) LOADZ(3) LOADZ(4) LOADZ(5) LOADZ(6) LOADZ(7)
                     LOADZ(8) LOADZ(9) LOADZ(10) LOADZ(11) LOADZ(12) LOADZ(13) LOADZ(14)
                     LOADZ(15) LOADZ(16) LOADZ(17) LOADZ(18) LOADZ(19) LOADZ(20) LOADZ(21)
                     LOADZ(22) LOADZ(23) LOADZ(24) LOADZ(25) LOADZ(26) LOADZ(27) LOADZ(28)
                     LOADZ(29) LOADZ(30) LOADZ(31)
                     LOADK(1) LOADK(2) LOADK(3) LOADK(4) LOADK(5) LOADK(6) LOADK(7)
                     :
                     : [z] "r"(zpat), [k] "r"(kpat)
                     : "memory");
}

/* compare zmm i with its pattern (8 qwords must all be equal) */
#define CHKZ(i)                                                                                   \
    "vpcmpeqq " #i "*64(%[z]), %%zmm" #i ", %%k0\n\t"                                             \
    "kmovw %%k0, %%edx\n\t"                                                                       \
    "cmp $0xff, %%edx\n\t"                                                                        \
    "je 1" #i "f\n\t"                                                                             \
    "bts $" #i ", %[bad]\n"                                                                       \
    "1" #i ":\n\t"
#define CHKK(i)                                                                                   \
    "kmovq %%k" #i ", %%rdx\n\t"                                                                  \
    "cmp " #i "*8(%[k]), %%rdx\n\t"                                                               \
    "je 2" #i "f\n\t"                                                                             \
    "bts $(32+" #i "), %[bad]\n"                                                                  \
    "2" #i ":\n\t"

#define MXCSR_VALUE 0xffc0 /* all exceptions masked, round toward zero, FTZ, DAZ */
#define FCW_VALUE 0x0f7f   /* x87: round toward zero, 64-bit precision, all masked */

static NOVEC void load_control(void)
{
    unsigned int mx = MXCSR_VALUE;
    unsigned short cw = FCW_VALUE;
    __asm__ volatile("ldmxcsr %0\n\tfldcw %1" ::"m"(mx), "m"(cw));
}

static NOVEC unsigned long check_control(void)
{
    unsigned int mx = 0;
    unsigned short cw = 0;
    unsigned long bad = 0;
    __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mx), "=m"(cw));
    if ((mx & ~0x3fU) != MXCSR_VALUE) /* ignore the sticky exception flags */
        bad |= 1UL << 40;
    if (cw != FCW_VALUE)
        bad |= 1UL << 41;
    return bad;
}

static NOVEC unsigned long check(void)
{
    unsigned long bad = check_control();
    __asm__ volatile(CHKZ(0) CHKZ(1) CHKZ(2) CHKZ(3) CHKZ(4) CHKZ(5) CHKZ(6) CHKZ(7) CHKZ(8)
                     CHKZ(9) CHKZ(10) CHKZ(11) CHKZ(12) CHKZ(13) CHKZ(14) CHKZ(15) CHKZ(16)
                     CHKZ(17) CHKZ(18) CHKZ(19) CHKZ(20) CHKZ(21) CHKZ(22) CHKZ(23) CHKZ(24)
                     CHKZ(25) CHKZ(26) CHKZ(27) CHKZ(28) CHKZ(29) CHKZ(30) CHKZ(31)
                     CHKK(1) CHKK(2) CHKK(3) CHKK(4) CHKK(5) CHKK(6) CHKK(7)
                     : [bad] "+r"(bad)
                     : [z] "r"(zpat), [k] "r"(kpat)
                     : "rdx", "cc", "memory");
    return bad;
}

static NOVEC int fmt_u(char *p, unsigned long v, int base)
{
    char tmp[24];
    int n = 0, len = 0;
    do {
        unsigned d = v % base;
        tmp[n++] = d < 10 ? '0' + d : 'a' + d - 10;
        v /= base;
    } while (v);
    while (n)
        p[len++] = tmp[--n];
    return len;
}

static NOVEC void put(int fd, const char *word, unsigned long round, unsigned long bad)
{
    char line[80];
    int len = 0;
    for (const char *s = word; *s; s++)
        line[len++] = *s;
    line[len++] = ' ';
    len += fmt_u(line + len, round, 10);
    if (bad) {
        const char *b = " bad=";
        for (const char *s = b; *s; s++)
            line[len++] = *s;
        len += fmt_u(line + len, bad, 16);
    }
    line[len++] = '\n';
    raw3(SYS_write, fd, (long)line, len);
}

static NOVEC __attribute__((noreturn)) void run(int fd)
{
    struct {
        long sec, nsec;
    } ts;
    load();
    load_control();
    for (unsigned long round = 1;; round++) {
        for (int i = 0; i < 200; i++) {
            unsigned long bad = check();
            if (bad) {
                put(fd, "FAIL", round, bad);
                raw3(SYS_exit_group, 3, 0, 0);
            }
        }
        ts.sec = 0;
        ts.nsec = 1000000;
        raw3(SYS_nanosleep, (long)&ts, 0, 0);
        if (round % 32 == 0)
            put(fd, "OK", round, 0);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: avx512 OUT\n");
        return 2;
    }
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) {
        fprintf(stderr, "avx512f/avx512bw not supported\n");
        return 4;
    }
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return 2;
    unsigned long x = 0x9e3779b97f4a7c15UL;
    for (int i = 0; i < 32 * 64; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        zpat[i] = (unsigned char)(x >> 24);
    }
    for (int i = 0; i < 8; i++)
        kpat[i] = 0x0123456789abcdefUL ^ ((unsigned long)i * 0x1111111111111111UL);
    run(fd);
}

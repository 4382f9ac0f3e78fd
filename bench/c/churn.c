/* Allocation churn for `just checked-compare` (scripts/checked-compare.sh): one thread, a working
 * set of 1000 slots; each op picks a random slot, frees the block there (if any), mallocs a new
 * one of a random size from 8 to 1024 bytes and writes its first and last byte. The slots and
 * sizes come from a fixed-seed xorshift64 and are drawn before the loop, so every allocator sees
 * the same requests and the loop itself costs only a handful of instructions an op.
 *
 * Usage: churn [OPS]   (default 1000000)
 *
 * The ops run in churn_loop(), kept out of line so that callgrind can count just it
 * (--toggle-collect=churn_loop: start-up, drawing the ops, the final frees and exit are not
 * counted). The loop's CPU time is printed too, for allocators that cannot run under valgrind
 * (ASan). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SLOTS 1000

struct op {
    uint16_t slot; /* 0..SLOTS-1 */
    uint16_t size; /* 8..1024 */
};

static char *slots[SLOTS];

static struct op *draw_ops(long n) {
    struct op *ops = malloc((size_t)n * sizeof *ops);
    if (!ops) {
        fprintf(stderr, "churn: no memory for %ld ops\n", n);
        exit(2);
    }
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (long i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ops[i].slot = (uint16_t)((x & 0xffffffffu) % SLOTS);
        ops[i].size = (uint16_t)(8 + (x >> 32) % 1017);
    }
    return ops;
}

__attribute__((noinline)) static void churn_loop(const struct op *ops, long n) {
    for (long i = 0; i < n; i++) {
        struct op o = ops[i];
        free(slots[o.slot]);
        char *p = malloc(o.size);
        if (!p) {
            fprintf(stderr, "churn: malloc(%u) failed\n", o.size);
            exit(2);
        }
        p[0] = (char)i;
        p[o.size - 1] = (char)(i >> 8);
        slots[o.slot] = p;
    }
}

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    struct op *ops = draw_ops(n);
    double start = cpu_seconds();
    churn_loop(ops, n);
    double cpu = cpu_seconds() - start;
    unsigned sum = 0;
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i])
            sum += (unsigned char)slots[i][0];
        free(slots[i]);
    }
    free(ops);
    printf("churn: %ld ops, checksum %u, loop cpu %.6f s\n", n, sum, cpu);
    return 0;
}

/* Per-thread malloc/free loop over a working set (after glibc's benchtests/bench-malloc-thread):
 * each thread keeps WORKING_SET blocks and replaces a random one at each step, with a size drawn
 * from 4 to 32768 bytes with a probability inversely proportional to the size (log-uniform), so
 * most requests are small but large ones are frequent enough to matter. Sizes and slots are drawn
 * into tables before the clock starts, as glibc's does, so the loop is malloc and free. Threads
 * are independent: every free is local.
 *
 * glibc's runs each thread for a fixed time; this one does a fixed number of steps per thread.
 * LOW and HIGH narrow the sizes to 2^LOW..2^(HIGH+1)-1, to see which sizes an allocator is slow
 * at (the C suite runs the whole range).
 *
 * Usage: bench-malloc-thread [THREADS [STEPS_PER_THREAD [LOW HIGH]]]
 *        (default 1 thread, 20000000 steps, sizes 2^2..2^15-1) */
#include "bench.h"

#define WORKING_SET 1024
/* Table lengths; coprime, so the (slot, size) pairs repeat only every TABLE * (TABLE - 1) steps. */
#define TABLE 4096

static long steps;
static unsigned low_bits = 2, high_bits = 14;

struct thread {
    uint64_t sum;
    uint32_t slot[TABLE - 1];
    uint32_t size[TABLE];
};

/* 4..=32767 by default, log-uniform: a power of two from 4 to 16384, then uniform up to the
 * next one. */
static uint32_t draw_size(struct rng *r) {
    unsigned bits = (unsigned)rng_range(r, low_bits, high_bits);
    return (uint32_t)rng_range(r, (size_t)1 << bits, ((size_t)2 << bits) - 1);
}

static void *run(void *arg) {
    struct thread *t = arg;
    char *block[WORKING_SET] = {0};
    uint32_t size[WORKING_SET] = {0};
    for (long i = 0; i < steps; i++) {
        uint32_t s = t->slot[i % (TABLE - 1)];
        if (block[s])
            stamp_free(block[s], size[s], &t->sum);
        size[s] = t->size[i % TABLE];
        block[s] = must_malloc(size[s]);
        stamp_write(block[s], size[s], (uint64_t)i);
    }
    for (int s = 0; s < WORKING_SET; s++)
        if (block[s])
            stamp_free(block[s], size[s], &t->sum);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = (int)arg_long(argc, argv, 1, 1);
    steps = arg_long(argc, argv, 2, 20000000);
    low_bits = (unsigned)arg_long(argc, argv, 3, low_bits);
    high_bits = (unsigned)arg_long(argc, argv, 4, high_bits);
    if (low_bits > high_bits || high_bits > 24) {
        fprintf(stderr, "bench-malloc-thread: need LOW <= HIGH <= 24\n");
        return 2;
    }
    struct thread *t = calloc((size_t)threads, sizeof *t);
    if (!t)
        return 2;
    for (int i = 0; i < threads; i++) {
        struct rng r;
        rng_seed(&r, 500 + (uint64_t)i);
        for (int j = 0; j < TABLE - 1; j++)
            t[i].slot[j] = (uint32_t)(rng_next(&r) % WORKING_SET);
        for (int j = 0; j < TABLE; j++)
            t[i].size[j] = draw_size(&r);
    }
    double start = now_seconds();
    uint64_t sum = run_threads(threads, run, t, sizeof *t);
    free(t);
    char params[96];
    snprintf(params, sizeof params, "threads=%d steps=%ld sizes=2^%u..2^%u", threads, steps, low_bits, high_bits + 1);
    finish("bench-malloc-thread", params, sum, start);
    return 0;
}

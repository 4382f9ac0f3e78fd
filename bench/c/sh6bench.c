/* Allocation-order stress (after MicroQuill's sh6bench from SmartHeap, as run by mimalloc-bench):
 * each thread repeatedly allocates an array of blocks of random, mostly small sizes, then frees
 * half of them last-allocated-first (LIFO) and the other half first-allocated-first (FIFO), so a
 * free list sees both orders. One block in 16 outlives its round in a ring of KEEP blocks, which
 * scatters long-lived blocks among short-lived ones. Threads are independent: every free is
 * local.
 *
 * Usage: sh6bench [THREADS [ROUNDS [BLOCKS [MIN [MAX]]]]]
 *        (default 2 threads, 6000 rounds of 2000 blocks, sizes 16..=512, small first) */
#include "bench.h"

#define KEEP 4096

static void *run(void *arg) {
    struct worker *t = arg;
    long n = t->cfg->blocks;
    struct rng r;
    rng_seed(&r, 600 + (uint64_t)t->id);
    struct keep kept;
    keep_init(&kept, KEEP);
    for (long round = 0; round < t->cfg->rounds; round++) {
        alloc_blocks(&r, t->block, t->size, n, t->cfg->min, t->cfg->max, 1);
        for (long i = n - 1 - (n & 1); i >= 1; i -= 2)
            stamp_free(t->block[i], t->size[i], &t->sum);
        for (long i = 0; i < n; i += 2) {
            if (i % 16 == 0)
                keep_put(&kept, t->block[i], t->size[i], &t->sum);
            else
                stamp_free(t->block[i], t->size[i], &t->sum);
        }
    }
    keep_drain(&kept, &t->sum);
    return NULL;
}

int main(int argc, char **argv) {
    struct rounds cfg = parse_rounds(argc, argv, 2, 6000, 2000, 16, 512);
    double start = now_seconds();
    uint64_t sum = run_workers(&cfg, run);
    finish("sh6bench", cfg.params, sum, start);
    return 0;
}

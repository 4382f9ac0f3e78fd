/* All-to-all exchange: in each round every thread allocates an array of blocks of random sizes;
 * after a barrier, thread t frees blocks t, t + THREADS, t + 2 * THREADS, ... of every thread's
 * array, its own included. So each slab gets remote frees from every other thread at once, and
 * (THREADS - 1) / THREADS of all frees are remote, the pattern of a parallel program whose
 * results are consumed by whichever worker is free. A second barrier ends the round.
 *
 * Usage: exchange [THREADS [ROUNDS [BLOCKS [MIN [MAX]]]]]
 *        (default 4 threads, 1200 rounds of 4000 blocks per thread, sizes 16..=512) */
#include "bench.h"

static void *run(void *arg) {
    struct worker *t = arg;
    int threads = t->cfg->threads;
    struct rng r;
    rng_seed(&r, 900 + (uint64_t)t->id);
    for (long round = 0; round < t->cfg->rounds; round++) {
        alloc_blocks(&r, t->block, t->size, t->cfg->blocks, t->cfg->min, t->cfg->max, 0);
        pthread_barrier_wait(t->barrier);
        for (int o = 0; o < threads; o++) {
            struct worker *owner = &t->all[(t->id + o) % threads];
            for (long i = t->id; i < t->cfg->blocks; i += threads)
                stamp_free(owner->block[i], owner->size[i], &t->sum);
        }
        pthread_barrier_wait(t->barrier);
    }
    return NULL;
}

int main(int argc, char **argv) {
    struct rounds cfg = parse_rounds(argc, argv, 4, 1200, 4000, 16, 512);
    double start = now_seconds();
    uint64_t sum = run_workers(&cfg, run);
    finish("exchange", cfg.params, sum, start);
    return 0;
}

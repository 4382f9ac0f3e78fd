/* Allocation-order stress with frees by other threads (after MicroQuill's sh8bench from
 * SmartHeap, as run by mimalloc-bench): like sh6bench, each round a thread allocates an array of
 * blocks of random, mostly small sizes and frees its odd-numbered blocks last-allocated-first;
 * its even-numbered blocks are freed first-allocated-first by the next thread in a ring, so half
 * of all frees are remote. That thread keeps one block in 16 it was handed in a ring of KEEP
 * blocks for a while, so a slab's remote frees trickle in long after its owner moved on. A
 * barrier separates allocating from freeing, which makes the work of each thread, and the
 * checksum, independent of scheduling.
 *
 * Usage: sh8bench [THREADS [ROUNDS [BLOCKS [MIN [MAX]]]]]
 *        (default 2 threads, 4500 rounds of 2000 blocks, sizes 16..=512, small first) */
#include "bench.h"

#define KEEP 4096

static void *run(void *arg) {
    struct worker *t = arg;
    long n = t->cfg->blocks;
    struct worker *left = &t->all[(t->id + t->cfg->threads - 1) % t->cfg->threads];
    struct rng r;
    rng_seed(&r, 800 + (uint64_t)t->id);
    struct keep kept;
    keep_init(&kept, KEEP);
    for (long round = 0; round < t->cfg->rounds; round++) {
        alloc_blocks(&r, t->block, t->size, n, t->cfg->min, t->cfg->max, 1);
        pthread_barrier_wait(t->barrier);
        for (long i = n - 1 - (n & 1); i >= 1; i -= 2)
            stamp_free(t->block[i], t->size[i], &t->sum);
        for (long i = 0; i < n; i += 2) {
            if (i % 16 == 0)
                keep_put(&kept, left->block[i], left->size[i], &t->sum);
            else
                stamp_free(left->block[i], left->size[i], &t->sum);
        }
        pthread_barrier_wait(t->barrier);
    }
    keep_drain(&kept, &t->sum);
    return NULL;
}

int main(int argc, char **argv) {
    struct rounds cfg = parse_rounds(argc, argv, 2, 4500, 2000, 16, 512);
    double start = now_seconds();
    uint64_t sum = run_workers(&cfg, run);
    finish("sh8bench", cfg.params, sum, start);
    return 0;
}

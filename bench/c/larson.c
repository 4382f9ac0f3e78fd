/* Larson-style server simulation (after the larson benchmark of Larson and Krishnan, as run by
 * mimalloc-bench): each thread owns an array of slots and replaces a random slot's block with one
 * of a random size, again and again. At the end of a generation every thread exits and a new
 * thread takes over its array, so the blocks one thread allocated are freed by its successor:
 * frees are remote and threads come and go, as in a server that hands connections between
 * workers. The main thread fills the arrays first, so the first generation frees its blocks.
 *
 * The original runs for a fixed time and counts operations; this one does a fixed number of
 * operations so that every allocator computes the same checksum.
 *
 * Usage: larson [THREADS [GENERATIONS [OPS_PER_GENERATION [SLOTS [MIN [MAX]]]]]]
 *        (default 2 threads, 20 generations, 200000 replacements per thread and generation,
 *        5000 slots per thread, sizes 8..=1000) */
#include "bench.h"

struct area {
    /* The sum of the stamps this area's threads read. */
    uint64_t sum;
    char **block;
    uint32_t *size;
    long slots;
    struct rng rng;
    /* Replacements per generation. */
    long ops;
};

static size_t min_size, max_size;

static void replace(struct area *a, long slot) {
    if (a->block[slot])
        stamp_free(a->block[slot], a->size[slot], &a->sum);
    size_t n = rng_range(&a->rng, min_size, max_size);
    a->block[slot] = must_malloc(n);
    a->size[slot] = (uint32_t)n;
    stamp_write(a->block[slot], n, rng_next(&a->rng));
}

static void *generation(void *arg) {
    struct area *a = arg;
    for (long i = 0; i < a->ops; i++)
        replace(a, (long)(rng_next(&a->rng) % (uint64_t)a->slots));
    return NULL;
}

int main(int argc, char **argv) {
    int threads = (int)arg_long(argc, argv, 1, 2);
    long generations = arg_long(argc, argv, 2, 20);
    long ops = arg_long(argc, argv, 3, 200000);
    long slots = arg_long(argc, argv, 4, 5000);
    min_size = (size_t)arg_long(argc, argv, 5, 8);
    max_size = (size_t)arg_long(argc, argv, 6, 1000);
    if (max_size < min_size) {
        fprintf(stderr, "larson: MAX below MIN\n");
        return 2;
    }
    double start = now_seconds();
    struct area *areas = must_malloc((size_t)threads * sizeof *areas);
    for (int t = 0; t < threads; t++) {
        struct area *a = &areas[t];
        a->block = calloc((size_t)slots, sizeof *a->block);
        a->size = calloc((size_t)slots, sizeof *a->size);
        if (!a->block || !a->size)
            return 2;
        a->slots = slots;
        rng_seed(&a->rng, 4141 + (uint64_t)t);
        a->ops = ops;
        a->sum = 0;
        for (long i = 0; i < slots; i++)
            replace(a, i);
    }
    for (long g = 0; g < generations; g++)
        run_threads(threads, generation, areas, sizeof *areas);
    uint64_t sum = 0;
    for (int t = 0; t < threads; t++) {
        struct area *a = &areas[t];
        for (long i = 0; i < slots; i++)
            stamp_free(a->block[i], a->size[i], &a->sum);
        sum += a->sum;
        free(a->block);
        free(a->size);
    }
    free(areas);
    char params[128];
    snprintf(params, sizeof params, "threads=%d generations=%ld ops=%ld slots=%ld sizes=%zu..%zu",
             threads, generations, ops, slots, min_size, max_size);
    finish("larson", params, sum, start);
    return 0;
}

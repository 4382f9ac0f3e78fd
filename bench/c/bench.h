/* Shared by the C benchmark programs (the C suite of hakmem-bench, bench/src/csuite.rs): a
 * fixed-seed PRNG, a clock, argument parsing, block stamps and the result lines.
 *
 * Every program is deterministic given its arguments: what it computes does not depend on thread
 * scheduling, so its stdout (parameters and checksum) must be the same byte for byte under every
 * allocator; the runner checks that against glibc's. The elapsed time goes to stderr, which is
 * not compared.
 *
 * Each block a program allocates gets a stamp (a value written at its start and into its last
 * byte) that is read back just before the block is freed, possibly by another thread, and summed
 * into the checksum: an allocator that hands one block out twice, or lets a free list overwrite a
 * live block, changes the checksum. */
#ifndef HAKMEM_BENCH_H
#define HAKMEM_BENCH_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* xorshift64* seeded through splitmix64, so nearby seeds (thread 0, 1, 2) diverge at once. */
struct rng {
    uint64_t s;
};

static inline void rng_seed(struct rng *r, uint64_t seed) {
    uint64_t z = seed + 0x9E3779B97F4A7C15u;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    r->s = (z ^ (z >> 31)) | 1;
}

static inline uint64_t rng_next(struct rng *r) {
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Du;
}

/* Uniform in lo..=hi (the modulo bias is irrelevant at these ranges). */
static inline size_t rng_range(struct rng *r, size_t lo, size_t hi) {
    return lo + (size_t)(rng_next(r) % (hi - lo + 1));
}

static inline double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* argv[i] as a positive number, or `dflt` when absent; anything else ends the program. */
static inline long arg_long(int argc, char **argv, int i, long dflt) {
    if (i >= argc)
        return dflt;
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end || v <= 0) {
        fprintf(stderr, "%s: argument %d must be a positive number, not '%s'\n", argv[0], i,
                argv[i]);
        exit(2);
    }
    return v;
}

/* malloc that ends the program on NULL: a benchmark cannot go on without its block. */
static inline void *must_malloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "malloc(%zu) returned NULL\n", n);
        exit(2);
    }
    return p;
}

static inline void stamp_write(void *p, size_t n, uint64_t v) {
    memcpy(p, &v, n < 8 ? n : 8);
    if (n > 8)
        ((unsigned char *)p)[n - 1] = (unsigned char)(v >> 56);
}

/* What stamp_write(p, n, v) left, as one number: the first min(n, 8) bytes plus the last byte. */
static inline uint64_t stamp_read(const void *p, size_t n) {
    uint64_t v = 0;
    memcpy(&v, p, n < 8 ? n : 8);
    return n > 8 ? v + ((const unsigned char *)p)[n - 1] : v;
}

/* Reads the stamp of block p of n bytes into *sum and frees it. */
static inline void stamp_free(void *p, size_t n, uint64_t *sum) {
    *sum += stamp_read(p, n);
    free(p);
}

/* Fills block[0..n) with fresh blocks of sizes lo..=hi (with `small_first`, the smaller of two
 * draws, so small sizes dominate as in most programs), their sizes in size[], each stamped. */
static inline void alloc_blocks(struct rng *r, char **block, uint32_t *size, long n, size_t lo,
                                size_t hi, int small_first) {
    for (long i = 0; i < n; i++) {
        size_t s = rng_range(r, lo, hi);
        if (small_first) {
            size_t t = rng_range(r, lo, hi);
            s = t < s ? t : s;
        }
        block[i] = must_malloc(s);
        size[i] = (uint32_t)s;
        stamp_write(block[i], s, rng_next(r));
    }
}

/* A ring of blocks kept alive for a while: putting one in frees the one put in `n` puts ago. */
struct keep {
    char **block;
    uint32_t *size;
    long n, next;
};

static inline void keep_init(struct keep *k, long n) {
    k->block = calloc((size_t)n, sizeof *k->block);
    k->size = calloc((size_t)n, sizeof *k->size);
    if (!k->block || !k->size)
        exit(2);
    k->n = n;
    k->next = 0;
}

static inline void keep_put(struct keep *k, char *p, uint32_t size, uint64_t *sum) {
    if (k->block[k->next])
        stamp_free(k->block[k->next], k->size[k->next], sum);
    k->block[k->next] = p;
    k->size[k->next] = size;
    k->next = (k->next + 1) % k->n;
}

/* Frees every block still in the ring, and the ring. */
static inline void keep_drain(struct keep *k, uint64_t *sum) {
    for (long i = 0; i < k->n; i++)
        if (k->block[i])
            stamp_free(k->block[i], k->size[i], sum);
    free(k->block);
    free(k->size);
}

/* Starts n threads running fn(arg + i * stride), waits for all of them and returns the sum of
 * the uint64_t each argument begins with: the stamps its thread read. */
static inline uint64_t run_threads(int n, void *(*fn)(void *), void *arg, size_t stride) {
    pthread_t *t = must_malloc((size_t)n * sizeof *t);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&t[i], NULL, fn, (char *)arg + (size_t)i * stride)) {
            fprintf(stderr, "pthread_create failed\n");
            exit(2);
        }
    }
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        uint64_t part;
        memcpy(&part, (char *)arg + (size_t)i * stride, sizeof part);
        sum += part;
    }
    free(t);
    return sum;
}

/* The arguments of the programs that work in rounds of blocks (sh6bench, sh8bench, exchange):
 * THREADS ROUNDS BLOCKS MIN MAX, and their text for the result line. */
struct rounds {
    int threads;
    long rounds, blocks;
    size_t min, max;
    char params[128];
};

static inline struct rounds parse_rounds(int argc, char **argv, int threads, long rounds,
                                         long blocks, long min, long max) {
    struct rounds c;
    c.threads = (int)arg_long(argc, argv, 1, threads);
    c.rounds = arg_long(argc, argv, 2, rounds);
    c.blocks = arg_long(argc, argv, 3, blocks);
    c.min = (size_t)arg_long(argc, argv, 4, min);
    c.max = (size_t)arg_long(argc, argv, 5, max);
    if (c.max < c.min) {
        fprintf(stderr, "%s: MAX below MIN\n", argv[0]);
        exit(2);
    }
    snprintf(c.params, sizeof c.params, "threads=%d rounds=%ld blocks=%ld sizes=%zu..%zu",
             c.threads, c.rounds, c.blocks, c.min, c.max);
    return c;
}

/* One thread of a rounds program: the stamps it read, its array of blocks, which other threads
 * may free from, and the barrier all of them share. */
struct worker {
    uint64_t sum;
    int id;
    const struct rounds *cfg;
    struct worker *all;
    pthread_barrier_t *barrier;
    char **block;
    uint32_t *size;
};

/* Runs fn on cfg->threads workers and returns the sum of their sums. */
static inline uint64_t run_workers(const struct rounds *cfg, void *(*fn)(void *)) {
    struct worker *all = calloc((size_t)cfg->threads, sizeof *all);
    pthread_barrier_t barrier;
    if (!all || pthread_barrier_init(&barrier, NULL, (unsigned)cfg->threads))
        exit(2);
    for (int i = 0; i < cfg->threads; i++) {
        all[i] = (struct worker){0, i, cfg, all, &barrier, NULL, NULL};
        all[i].block = must_malloc((size_t)cfg->blocks * sizeof *all[i].block);
        all[i].size = must_malloc((size_t)cfg->blocks * sizeof *all[i].size);
    }
    uint64_t sum = run_threads(cfg->threads, fn, all, sizeof *all);
    for (int i = 0; i < cfg->threads; i++) {
        free(all[i].block);
        free(all[i].size);
    }
    free(all);
    pthread_barrier_destroy(&barrier);
    return sum;
}

/* The result: parameters and checksum on stdout (compared across allocators), the time since
 * `start` on stderr. */
static inline void finish(const char *name, const char *params, uint64_t checksum, double start) {
    double secs = now_seconds() - start;
    printf("%s %s checksum %016llx\n", name, params, (unsigned long long)checksum);
    fprintf(stderr, "%s: elapsed %.6f s\n", name, secs);
}

#endif

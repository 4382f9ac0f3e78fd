/* Passive false sharing (after cache-scratch from the Hoard benchmarks, as run by
 * mimalloc-bench): the main thread allocates one small object per worker, back to back, so they
 * likely share a cache line, and hands object i to worker i. Each worker frees its object, then
 * over and over allocates an object of the same size, writes it many times and frees it. An
 * allocator that gives a worker back the block it just freed (another thread's, next to its
 * neighbours') makes the workers write to one cache line from different cores, which is slow;
 * one that serves each thread from its own memory does not. With one worker it is the baseline.
 *
 * Usage: cache-scratch [THREADS [ITERATIONS [SIZE [WRITES]]]]
 *        (default 2 threads, 1000 iterations, 8-byte objects, each byte written 50000 times
 *        per iteration) */
#include "bench.h"

static long iterations, writes;
static size_t size;

struct writer {
    uint64_t sum;
    char *given;
    int id;
};

static void *work(void *arg) {
    struct writer *w = arg;
    free(w->given);
    for (long i = 0; i < iterations; i++) {
        volatile char *p = must_malloc(size);
        for (size_t j = 0; j < size; j++)
            p[j] = (char)(w->id + i);
        for (long j = 0; j < writes; j++)
            for (size_t k = 0; k < size; k++)
                p[k] += (char)(j + (long)k);
        for (size_t j = 0; j < size; j++)
            w->sum += (unsigned char)p[j];
        free((void *)p);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = (int)arg_long(argc, argv, 1, 2);
    iterations = arg_long(argc, argv, 2, 1000);
    size = (size_t)arg_long(argc, argv, 3, 8);
    writes = arg_long(argc, argv, 4, 50000);
    double start = now_seconds();
    struct writer *w = calloc((size_t)threads, sizeof *w);
    for (int i = 0; i < threads; i++) {
        w[i].given = must_malloc(size);
        w[i].id = i;
    }
    uint64_t sum = run_threads(threads, work, w, sizeof *w);
    free(w);
    char params[128];
    snprintf(params, sizeof params, "threads=%d iterations=%ld size=%zu writes=%ld", threads,
             iterations, size, writes);
    finish("cache-scratch", params, sum, start);
    return 0;
}

/* Producer/consumer with remote frees (after xmalloc-test, as run by mimalloc-bench): producer
 * threads allocate blocks of random sizes and pass them, in batches, through one shared bounded
 * queue to consumer threads, which read and free them. Every block is freed by a thread other
 * than the one that allocated it, and the batch records themselves travel the same way. With
 * more threads than cores (4 + 4 on two cores by default) producers and consumers are
 * descheduled while holding blocks, as in a loaded server.
 *
 * The original runs for a fixed time; this one moves a fixed number of blocks.
 *
 * Usage: xmalloc-test [PRODUCERS [CONSUMERS [BLOCKS_PER_PRODUCER [BATCH [MAX_SIZE]]]]]
 *        (default 4 producers, 4 consumers, 2000000 blocks each, 64 per batch, sizes
 *        8..=256) */
#include "bench.h"

/* Batches in the queue at most: bounds the memory in flight when consumers fall behind. */
#define QUEUE 64

struct batch {
    int n;
    char *block[];
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    struct batch *ring[QUEUE];
    int head, count, producers_left;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, 0};

static long blocks_each;
static int batch_size;
static size_t max_size;

struct party {
    int id;
    uint64_t sum;
};

static void push(struct batch *b) {
    pthread_mutex_lock(&q.lock);
    while (q.count == QUEUE)
        pthread_cond_wait(&q.not_full, &q.lock);
    q.ring[(q.head + q.count) % QUEUE] = b;
    q.count++;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.lock);
}

/* The next batch, or NULL once the queue is empty and every producer has finished. */
static struct batch *pop(void) {
    pthread_mutex_lock(&q.lock);
    while (q.count == 0 && q.producers_left > 0)
        pthread_cond_wait(&q.not_empty, &q.lock);
    struct batch *b = NULL;
    if (q.count > 0) {
        b = q.ring[q.head];
        q.head = (q.head + 1) % QUEUE;
        q.count--;
        pthread_cond_signal(&q.not_full);
    }
    pthread_mutex_unlock(&q.lock);
    return b;
}

/* A block's size travels in its first 4 bytes, so a batch is only pointers. */
static void *produce(void *arg) {
    struct party *w = arg;
    struct rng r;
    rng_seed(&r, 1000 + (uint64_t)w->id);
    struct batch *b = NULL;
    for (long i = 0; i < blocks_each; i++) {
        if (!b) {
            b = must_malloc(sizeof *b + (size_t)batch_size * sizeof b->block[0]);
            b->n = 0;
        }
        uint32_t n = (uint32_t)rng_range(&r, 8, max_size);
        char *p = must_malloc(n);
        memcpy(p, &n, 4);
        stamp_write(p + 4, n - 4, rng_next(&r));
        b->block[b->n++] = p;
        if (b->n == batch_size) {
            push(b);
            b = NULL;
        }
    }
    if (b)
        push(b);
    pthread_mutex_lock(&q.lock);
    if (--q.producers_left == 0)
        pthread_cond_broadcast(&q.not_empty);
    pthread_mutex_unlock(&q.lock);
    return NULL;
}

static void *consume(void *arg) {
    struct party *w = arg;
    struct batch *b;
    while ((b = pop())) {
        for (int i = 0; i < b->n; i++) {
            uint32_t n;
            memcpy(&n, b->block[i], 4);
            w->sum += n + stamp_read(b->block[i] + 4, n - 4);
            free(b->block[i]);
        }
        free(b);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int producers = (int)arg_long(argc, argv, 1, 4);
    int consumers = (int)arg_long(argc, argv, 2, 4);
    blocks_each = arg_long(argc, argv, 3, 2000000);
    batch_size = (int)arg_long(argc, argv, 4, 64);
    max_size = (size_t)arg_long(argc, argv, 5, 256);
    if (max_size < 8) {
        fprintf(stderr, "xmalloc-test: MAX_SIZE below 8\n");
        return 2;
    }
    double start = now_seconds();
    q.producers_left = producers;
    int n = producers + consumers;
    struct party *w = calloc((size_t)n, sizeof *w);
    pthread_t *t = must_malloc((size_t)n * sizeof *t);
    for (int i = 0; i < n; i++) {
        w[i].id = i;
        if (pthread_create(&t[i], NULL, i < producers ? produce : consume, &w[i]))
            return 2;
    }
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        sum += w[i].sum;
    }
    free(t);
    free(w);
    char params[128];
    snprintf(params, sizeof params, "producers=%d consumers=%d blocks=%ld batch=%d sizes=8..%zu",
             producers, consumers, blocks_each, batch_size, max_size);
    finish("xmalloc-test", params, sum, start);
    return 0;
}

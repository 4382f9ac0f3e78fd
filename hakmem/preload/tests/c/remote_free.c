/* Blocks allocated on one thread and freed (or realloc'd) on another.
 *
 * Producer threads allocate blocks of varied sizes (mostly 8..4096 bytes, some 4 KiB..32 KiB,
 * some 64 KiB..264 KiB), fill each with a pattern derived from its tag, sometimes grow and
 * shrink it through a realloc chain first, and hand it to consumer threads through a bounded
 * queue guarded by a mutex and two condition variables. Consumers check the pattern, realloc a
 * third of the blocks (a realloc of a block owned by another thread), and free them. Producers
 * also keep a small working set of their own that they free locally.
 *
 * Everything printed is a sum over all blocks, so it does not depend on scheduling: the output
 * is the same under any correct malloc.
 *
 * Build: cc -O2 -pthread remote_free.c -o remote_free */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPROD 4
#define NCONS 3
#define PER_PROD 25000
#define QCAP 128
#define KEEP 64

typedef struct {
    unsigned char *p;
    size_t size;
    uint64_t tag;
} msg;

static msg queue[QCAP];
static size_t qhead, qlen;
static pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qnot_empty = PTHREAD_COND_INITIALIZER;
static pthread_cond_t qnot_full = PTHREAD_COND_INITIALIZER;

static void push(msg m) {
    pthread_mutex_lock(&qmu);
    while (qlen == QCAP) pthread_cond_wait(&qnot_full, &qmu);
    queue[(qhead + qlen) % QCAP] = m;
    qlen++;
    pthread_cond_signal(&qnot_empty);
    pthread_mutex_unlock(&qmu);
}

static msg pop(void) {
    pthread_mutex_lock(&qmu);
    while (qlen == 0) pthread_cond_wait(&qnot_empty, &qmu);
    msg m = queue[qhead];
    qhead = (qhead + 1) % QCAP;
    qlen--;
    pthread_cond_signal(&qnot_full);
    pthread_mutex_unlock(&qmu);
    return m;
}

static void die(const char *what, uint64_t tag, size_t size, size_t at) {
    fprintf(stderr, "remote_free: %s: block tag %llx size %zu at byte %zu\n", what,
            (unsigned long long)tag, size, at);
    fflush(stderr);
    abort();
}

static uint64_t next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline unsigned char pat(uint64_t tag, size_t i) {
    return (unsigned char)((tag * 0x9E3779B97F4A7C15ull >> 56) + i * 131 + (i >> 8));
}

static void fill(unsigned char *p, size_t from, size_t to, uint64_t tag) {
    for (size_t i = from; i < to; i++) p[i] = pat(tag, i);
}

static void check(const unsigned char *p, size_t n, uint64_t tag, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != pat(tag, i)) die(what, tag, n, i);
}

static size_t pick_size(uint64_t *s) {
    uint64_t r = next(s);
    unsigned k = (unsigned)(r % 64);
    r >>= 8;
    if (k == 0) return 65536 + r % 200000;
    if (k <= 4) return 4097 + r % 28000;
    return 8 + r % 4089;
}

/* Sums that do not depend on which thread did what, or in which order. */
typedef struct {
    uint64_t blocks, bytes, callocs, chains, local_frees, sent;
    uint64_t received, remote_reallocs, checksum;
} stats;

static stats totals;
static pthread_mutex_t totals_mu = PTHREAD_MUTEX_INITIALIZER;

static void add(const stats *s) {
    pthread_mutex_lock(&totals_mu);
    totals.blocks += s->blocks;
    totals.bytes += s->bytes;
    totals.callocs += s->callocs;
    totals.chains += s->chains;
    totals.local_frees += s->local_frees;
    totals.sent += s->sent;
    totals.received += s->received;
    totals.remote_reallocs += s->remote_reallocs;
    totals.checksum += s->checksum;
    pthread_mutex_unlock(&totals_mu);
}

static uint64_t mix(uint64_t tag, size_t size) {
    uint64_t s = tag ^ ((uint64_t)size << 40);
    return next(&s);
}

static void *producer(void *arg) {
    uint64_t id = (uint64_t)(uintptr_t)arg;
    uint64_t rng = 0x1234567 + id * 1000003;
    stats st = {0};
    msg keep[KEEP] = {{0}};
    for (uint64_t i = 0; i < PER_PROD; i++) {
        uint64_t tag = id << 32 | i;
        size_t size = pick_size(&rng);
        unsigned char *p;
        if (i % 7 == 0) {
            p = calloc(1, size);
            if (!p) die("calloc failed", tag, size, 0);
            for (size_t j = 0; j < size; j++)
                if (p[j]) die("calloc block not zeroed", tag, size, j);
            st.callocs++;
        } else {
            p = malloc(size);
            if (!p) die("malloc failed", tag, size, 0);
        }
        fill(p, 0, size, tag);
        if (i % 11 == 0) {
            /* A realloc chain: grow three times, then shrink. */
            for (int step = 0; step < 4; step++) {
                size_t to = step < 3 ? size * 3 / 2 + 1 + step * 1000 : size / 3 + 1;
                unsigned char *q = realloc(p, to);
                if (!q) die("realloc failed", tag, to, 0);
                check(q, size < to ? size : to, tag, "realloc chain lost contents");
                if (to > size) fill(q, size, to, tag);
                p = q;
                size = to;
            }
            st.chains++;
        }
        st.blocks++;
        st.bytes += size;
        st.checksum += mix(tag, size);
        if (i % 5 == 0) {
            /* Kept for a while in a local working set, then freed by this thread. */
            uint64_t slot = next(&rng) % KEEP;
            if (keep[slot].p) {
                check(keep[slot].p, keep[slot].size, keep[slot].tag, "kept block changed");
                free(keep[slot].p);
                st.local_frees++;
            }
            keep[slot] = (msg){p, size, tag};
        } else {
            push((msg){p, size, tag});
            st.sent++;
        }
    }
    for (int k = 0; k < KEEP; k++) {
        if (keep[k].p) {
            check(keep[k].p, keep[k].size, keep[k].tag, "kept block changed");
            free(keep[k].p);
            st.local_frees++;
        }
    }
    add(&st);
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    stats st = {0};
    for (;;) {
        msg m = pop();
        if (!m.p) break;
        check(m.p, m.size, m.tag, "received block corrupted");
        if (m.tag % 3 == 0) {
            size_t to = m.tag % 2 ? m.size * 2 + 17 : m.size / 2 + 1;
            unsigned char *q = realloc(m.p, to);
            if (!q) die("remote realloc failed", m.tag, to, 0);
            check(q, m.size < to ? m.size : to, m.tag, "remote realloc lost contents");
            if (to > m.size) fill(q, m.size, to, m.tag);
            check(q, to, m.tag, "remote realloc block corrupted");
            m.p = q;
            st.remote_reallocs++;
        }
        free(m.p);
        st.received++;
    }
    add(&st);
    return NULL;
}

int main(void) {
    pthread_t prod[NPROD], cons[NCONS];
    for (uintptr_t c = 0; c < NCONS; c++)
        if (pthread_create(&cons[c], NULL, consumer, (void *)c)) return 2;
    for (uintptr_t p = 0; p < NPROD; p++)
        if (pthread_create(&prod[p], NULL, producer, (void *)p)) return 2;
    for (int p = 0; p < NPROD; p++) pthread_join(prod[p], NULL);
    for (int c = 0; c < NCONS; c++) push((msg){NULL, 0, 0});
    for (int c = 0; c < NCONS; c++) pthread_join(cons[c], NULL);

    printf("producers %d consumers %d\n", NPROD, NCONS);
    printf("blocks %llu bytes %llu callocs %llu realloc-chains %llu\n",
           (unsigned long long)totals.blocks, (unsigned long long)totals.bytes,
           (unsigned long long)totals.callocs, (unsigned long long)totals.chains);
    printf("local-frees %llu sent %llu received %llu remote-reallocs %llu\n",
           (unsigned long long)totals.local_frees, (unsigned long long)totals.sent,
           (unsigned long long)totals.received, (unsigned long long)totals.remote_reallocs);
    printf("checksum %016llx\n", (unsigned long long)totals.checksum);
    if (totals.sent != totals.received || totals.local_frees + totals.sent != totals.blocks) {
        printf("FAIL: blocks lost\n");
        return 1;
    }
    printf("ok\n");
    return 0;
}

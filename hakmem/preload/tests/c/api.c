/* C allocation API conformance: facts that glibc's malloc and hakmem (under LD_PRELOAD) must both
 * satisfy, so the output is identical under either. Each check prints "ok <name>"; the first
 * failure prints "FAIL <name>: <detail>" and exits 1.
 *
 * Build: cc -O2 -fno-builtin api.c -o api   (-fno-builtin keeps GCC from folding away or
 * assuming things about malloc calls whose effects are the very thing under test). */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Sizes and pointers go through volatiles so the compiler cannot reason about them. */
static volatile size_t vz;
static size_t opaque(size_t n) { vz = n; return vz; }
static void *volatile sink;

static const char *current = "";

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s: ", current);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    exit(1);
}

#define CHECK(cond, ...) do { if (!(cond)) fail(__VA_ARGS__); } while (0)

static void begin(const char *name) { current = name; }
static void ok(void) { printf("ok %s\n", current); }

static int aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 7 + (i >> 9));
}
static int same(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7 + (i >> 9))) return 0;
    return 1;
}

static void t_malloc_zero(void) {
    begin("malloc_zero");
    for (int i = 0; i < 100; i++) {
        void *p = malloc(opaque(0));
        CHECK(p != NULL, "malloc(0) returned NULL");
        CHECK(aligned(p, 16), "malloc(0) = %p not 16-aligned", p);
        sink = p;
        free(p);
    }
    void *q = realloc(NULL, opaque(0));
    CHECK(q != NULL, "realloc(NULL, 0) returned NULL");
    free(q);
    void *c = calloc(opaque(0), opaque(8));
    CHECK(c != NULL, "calloc(0, 8) returned NULL");
    free(c);
    free(NULL);
    ok();
}

static void t_malloc_alignment(void) {
    begin("malloc_alignment_16");
    static void *ps[4096];
    size_t k = 0;
    for (size_t n = 1; n <= 4096; n++) {
        void *p = malloc(opaque(n));
        CHECK(p && aligned(p, 16), "malloc(%zu) = %p", n, p);
        memset(p, 0x5A, n);
        ps[k++] = p;
    }
    for (size_t n = 4097; n < (4u << 20); n = n * 5 / 4 + 3) {
        void *p = malloc(opaque(n));
        CHECK(p && aligned(p, 16), "malloc(%zu) = %p", n, p);
        memset(p, 0x5A, n);
        free(p);
    }
    for (size_t i = 0; i < k; i++) free(ps[i]);
    ok();
}

static void t_distinct_blocks(void) {
    begin("blocks_do_not_overlap");
    enum { N = 20000 };
    static unsigned char *ps[N];
    static size_t ns[N];
    unsigned r = 12345;
    for (int i = 0; i < N; i++) {
        r = r * 1103515245u + 12345u;
        ns[i] = 1 + (r >> 8) % (i % 50 == 0 ? 40000 : 300);
        ps[i] = malloc(opaque(ns[i]));
        CHECK(ps[i] != NULL, "malloc(%zu)", ns[i]);
        memset(ps[i], (unsigned char)i, ns[i]);
    }
    for (int i = 0; i < N; i += 2) free(ps[i]);
    for (int i = 0; i < N; i += 2) {
        ps[i] = malloc(opaque(ns[i]));
        CHECK(ps[i] != NULL, "malloc(%zu)", ns[i]);
        memset(ps[i], (unsigned char)i, ns[i]);
    }
    for (int i = 0; i < N; i++) {
        for (size_t j = 0; j < ns[i]; j++)
            CHECK(ps[i][j] == (unsigned char)i, "block %d byte %zu overwritten", i, j);
        free(ps[i]);
    }
    ok();
}

static void t_posix_memalign(void) {
    begin("posix_memalign");
    static const size_t sizes[] = {1, 8, 24, 100, 1000, 4096, 5000, 20000, 70000, 1 << 20};
    for (size_t a = 8; a <= (1u << 22); a <<= 1) {
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            void *p = (void *)0x1;
            int e = posix_memalign(&p, opaque(a), opaque(sizes[s]));
            CHECK(e == 0, "posix_memalign(%zu, %zu) = %d", a, sizes[s], e);
            CHECK(p != NULL && aligned(p, a), "posix_memalign(%zu, %zu) gave %p", a, sizes[s], p);
            memset(p, 0xC3, sizes[s]);
            free(p);
        }
    }
    static const size_t bad[] = {0, 1, 2, 4, 12, 24, 48, 100, 4097, (1u << 20) + 8};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *p = (void *)0x1;
        int e = posix_memalign(&p, opaque(bad[i]), opaque(64));
        CHECK(e == EINVAL, "posix_memalign(align %zu) = %d, want EINVAL", bad[i], e);
        CHECK(p == (void *)0x1, "posix_memalign(align %zu) wrote *out on failure", bad[i]);
    }
    void *p = (void *)0x1;
    int e = posix_memalign(&p, opaque(64), opaque(SIZE_MAX - 4096));
    CHECK(e == ENOMEM, "posix_memalign(64, SIZE_MAX - 4096) = %d, want ENOMEM", e);
    ok();
}

static void t_aligned_alloc_memalign(void) {
    begin("aligned_alloc");
    for (size_t a = 1; a <= (1u << 20); a <<= 1) {
        for (size_t n = a; n <= 3 * a + 5000; n += a + 777) {
            void *p = aligned_alloc(opaque(a), opaque(n));
            CHECK(p && aligned(p, a), "aligned_alloc(%zu, %zu) = %p", a, n, p);
            memset(p, 1, n);
            free(p);
        }
    }
    /* glibc before 2.38 (Debian 12: 2.36) serves any alignment, as memalign does: one that is
     * not a power of two is rounded up to the next (0 to none at all). */
    static const size_t odd_aa[][2] = {{0, 1}, {3, 4}, {24, 32}, {100, 128}, {3000, 4096}};
    for (size_t i = 0; i < sizeof odd_aa / sizeof *odd_aa; i++) {
        void *p = aligned_alloc(opaque(odd_aa[i][0]), opaque(10));
        CHECK(p && aligned(p, odd_aa[i][1]), "aligned_alloc(%zu, 10) = %p, want %zu-aligned",
              odd_aa[i][0], p, odd_aa[i][1]);
        memset(p, 3, 10);
        free(p);
    }
    ok();
    begin("memalign");
    for (size_t a = 1; a <= (1u << 21); a <<= 1) {
        void *p = memalign(opaque(a), opaque(a + 3));
        CHECK(p && aligned(p, a), "memalign(%zu) = %p", a, p);
        memset(p, 2, a + 3);
        free(p);
    }
    /* glibc rounds a non-power-of-two alignment up to the next power of two. */
    static const size_t odd[][2] = {{24, 32}, {48, 64}, {100, 128}, {3000, 4096}, {40000, 65536}};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        void *p = memalign(opaque(odd[i][0]), opaque(100));
        CHECK(p && aligned(p, odd[i][1]), "memalign(%zu) = %p, want %zu-aligned", odd[i][0], p,
              odd[i][1]);
        free(p);
    }
    ok();
    begin("valloc_pvalloc");
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    static const size_t sizes[] = {1, 100, 4095, 4096, 4097, 10000, 300000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        void *p = valloc(opaque(sizes[i]));
        CHECK(p && aligned(p, page), "valloc(%zu) = %p", sizes[i], p);
        CHECK(malloc_usable_size(p) >= sizes[i], "valloc(%zu) usable %zu", sizes[i],
              malloc_usable_size(p));
        memset(p, 3, sizes[i]);
        free(p);
        void *q = pvalloc(opaque(sizes[i]));
        size_t rounded = (sizes[i] + page - 1) / page * page;
        CHECK(q && aligned(q, page), "pvalloc(%zu) = %p", sizes[i], q);
        CHECK(malloc_usable_size(q) >= rounded, "pvalloc(%zu) usable %zu < %zu", sizes[i],
              malloc_usable_size(q), rounded);
        memset(q, 4, rounded);
        free(q);
    }
    ok();
}

static void calloc_after_dirty(const char *name, size_t lo, size_t hi, int count) {
    begin(name);
    enum { MAXN = 512 };
    static unsigned char *ps[MAXN];
    static size_t ns[MAXN];
    CHECK(count <= MAXN, "count");
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < count; i++) {
            ns[i] = lo + (size_t)(i * 2654435761u + round) % (hi - lo + 1);
            ps[i] = malloc(opaque(ns[i]));
            CHECK(ps[i] != NULL, "malloc(%zu)", ns[i]);
            memset(ps[i], 0xAB, malloc_usable_size(ps[i]));
        }
        for (int i = 0; i < count; i++) free(ps[i]);
        for (int i = 0; i < count; i++) {
            /* Same sizes, as n * size with n > 1 when it divides. */
            size_t n = ns[i] % 3 == 0 ? 3 : 1;
            ps[i] = calloc(opaque(n), opaque(ns[i] / n));
            CHECK(ps[i] != NULL, "calloc(%zu, %zu)", n, ns[i] / n);
            for (size_t j = 0; j < ns[i]; j++)
                CHECK(ps[i][j] == 0, "calloc(%zu, %zu) byte %zu = 0x%02x", n, ns[i] / n, j,
                      ps[i][j]);
            memset(ps[i], 0xAB, ns[i]);
        }
        for (int i = 0; i < count; i++) free(ps[i]);
    }
    ok();
}

static void t_overflow(void) {
    begin("calloc_overflow");
    errno = 0;
    void *p = calloc(opaque(SIZE_MAX / 2), opaque(3));
    CHECK(p == NULL && errno == ENOMEM, "calloc(SIZE_MAX/2, 3) = %p errno %d", p, errno);
    errno = 0;
    p = calloc(opaque(SIZE_MAX), opaque(SIZE_MAX));
    CHECK(p == NULL && errno == ENOMEM, "calloc(SIZE_MAX, SIZE_MAX) = %p errno %d", p, errno);
    errno = 0;
    p = calloc(opaque((SIZE_MAX >> 4) + 2), opaque(16));
    CHECK(p == NULL && errno == ENOMEM, "calloc((SIZE_MAX>>4)+2, 16) = %p errno %d", p, errno);
    ok();

    begin("malloc_huge");
    static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 15, SIZE_MAX - 4095,
                                  SIZE_MAX - (1u << 22), (SIZE_MAX >> 1) + 1, SIZE_MAX >> 1};
    for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
        errno = 0;
        p = malloc(opaque(huge[i]));
        CHECK(p == NULL && errno == ENOMEM, "malloc(%zu) = %p errno %d", huge[i], p, errno);
        errno = 0;
        p = aligned_alloc(opaque(4096), opaque(huge[i]));
        CHECK(p == NULL && errno == ENOMEM, "aligned_alloc(4096, %zu) = %p errno %d", huge[i], p,
              errno);
    }
    ok();

    begin("realloc_huge_keeps_block");
    unsigned char *q = malloc(opaque(1000));
    CHECK(q != NULL, "malloc(1000)");
    fill(q, 1000, 9);
    for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
        errno = 0;
        p = realloc(q, opaque(huge[i]));
        CHECK(p == NULL && errno == ENOMEM, "realloc(p, %zu) = %p errno %d", huge[i], p, errno);
        CHECK(same(q, 1000, 9), "realloc(p, %zu) failure changed the block", huge[i]);
    }
    ok();

    begin("reallocarray_overflow");
    errno = 0;
    p = reallocarray(q, opaque(SIZE_MAX / 2), opaque(3));
    CHECK(p == NULL && errno == ENOMEM, "reallocarray(p, SIZE_MAX/2, 3) = %p errno %d", p, errno);
    CHECK(same(q, 1000, 9), "reallocarray overflow changed the block");
    errno = 0;
    p = reallocarray(NULL, opaque(1u << 31), opaque(1u << 31) * opaque(1u << 2));
    CHECK(p == NULL && errno == ENOMEM, "reallocarray(NULL, 2^31, 2^33) = %p errno %d", p, errno);
    p = reallocarray(q, opaque(500), opaque(4));
    CHECK(p != NULL, "reallocarray(p, 500, 4)");
    CHECK(same(p, 1000, 9), "reallocarray(p, 500, 4) lost contents");
    free(p);
    ok();
}

static void t_realloc_tiers(void) {
    begin("realloc_across_tiers");
    static const size_t chain[] = {1,     24,    200,  1000,  4096,    5000,  20000,
                                   65536, 70000, 1 << 20, (1 << 20) + 123, 3 << 20,
                                   40000, 20000, 40, 8,   100000, 16, 2 << 20, 3};
    for (unsigned seed = 0; seed < 4; seed++) {
        unsigned char *p = malloc(opaque(chain[0]));
        CHECK(p != NULL, "malloc");
        size_t n = chain[0];
        fill(p, n, seed);
        for (size_t i = 1; i < sizeof chain / sizeof *chain; i++) {
            size_t m = chain[i] + seed;
            unsigned char *q = realloc(p, opaque(m));
            CHECK(q != NULL, "realloc(%zu -> %zu)", n, m);
            CHECK(aligned(q, 16), "realloc(%zu -> %zu) = %p", n, m, q);
            size_t keep = n < m ? n : m;
            CHECK(same(q, keep, seed), "realloc(%zu -> %zu) lost contents", n, m);
            CHECK(malloc_usable_size(q) >= m, "realloc(%zu -> %zu) usable %zu", n, m,
                  malloc_usable_size(q));
            fill(q, m, seed);
            p = q;
            n = m;
        }
        free(p);
    }
    /* Growing one byte at a time, like a naive string builder. */
    unsigned char *s = NULL;
    for (size_t n = 1; n <= 70000; n++) {
        s = realloc(s, opaque(n));
        CHECK(s != NULL, "realloc(s, %zu)", n);
        s[n - 1] = (unsigned char)(n * 13);
    }
    for (size_t n = 1; n <= 70000; n++)
        CHECK(s[n - 1] == (unsigned char)(n * 13), "byte-wise growth lost byte %zu", n - 1);
    free(s);
    /* Aligned blocks can be realloc'd and freed like any other. */
    unsigned char *a = memalign(opaque(4096), opaque(300));
    CHECK(a != NULL, "memalign");
    fill(a, 300, 77);
    unsigned char *b = realloc(a, opaque(200000));
    CHECK(b != NULL && same(b, 300, 77), "realloc of memalign block");
    free(b);
    ok();

    begin("realloc_null_and_zero");
    unsigned char *p = realloc(NULL, opaque(100));
    CHECK(p != NULL && aligned(p, 16), "realloc(NULL, 100) = %p", p);
    memset(p, 1, 100);
    /* glibc (REALLOC_ZERO_BYTES_FREES): realloc(p, 0) frees p and returns NULL. */
    void *z = realloc(p, opaque(0));
    CHECK(z == NULL, "realloc(p, 0) = %p, want NULL", z);
    p = malloc(opaque(300000));
    CHECK(p != NULL, "malloc(300000)");
    z = realloc(p, opaque(0));
    CHECK(z == NULL, "realloc(large p, 0) = %p, want NULL", z);
    ok();
}

static void t_usable_size(void) {
    begin("malloc_usable_size");
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu", malloc_usable_size(NULL));
    for (size_t n = 0; n < (8u << 20); n = n < 64 ? n + 1 : n * 9 / 8) {
        unsigned char *p = malloc(opaque(n));
        CHECK(p != NULL, "malloc(%zu)", n);
        size_t u = malloc_usable_size(p);
        CHECK(u >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, u);
        memset(p, 0xEE, u); /* all of it is ours to write */
        free(p);
        p = calloc(opaque(1), opaque(n));
        CHECK(p != NULL, "calloc(1, %zu)", n);
        u = malloc_usable_size(p);
        CHECK(u >= n, "malloc_usable_size(calloc(1, %zu)) = %zu", n, u);
        memset(p, 0xEE, u);
        free(p);
    }
    ok();
}

/* malloc_trim after a big shrink: returns 0 or 1, and the heap still works (calloc zeroes the
   purged memory it hands out again). */
static void t_trim(void) {
    begin("malloc_trim");
    enum { N = 40000, SIZE = 1000 };
    static unsigned char *ps[N];
    for (int i = 0; i < N; i++) {
        ps[i] = malloc(opaque(SIZE));
        CHECK(ps[i] != NULL, "malloc(%d)", SIZE);
        memset(ps[i], 0x5A, SIZE);
    }
    for (int i = 0; i < N; i++) free(ps[i]);
    int r = malloc_trim(0);
    CHECK(r == 0 || r == 1, "malloc_trim(0) = %d", r);
    for (int i = 0; i < N; i++) {
        ps[i] = calloc(1, opaque(SIZE));
        CHECK(ps[i] != NULL, "calloc(1, %d)", SIZE);
        for (int j = 0; j < SIZE; j++) CHECK(ps[i][j] == 0, "calloc after trim: byte %d = 0x%02x", j, ps[i][j]);
    }
    for (int i = 0; i < N; i++) free(ps[i]);
    ok();
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    t_malloc_zero();
    t_malloc_alignment();
    t_distinct_blocks();
    t_posix_memalign();
    t_aligned_alloc_memalign();
    calloc_after_dirty("calloc_zeroed_small", 1, 1024, 512);
    calloc_after_dirty("calloc_zeroed_mid", 16000, 24000, 128);
    calloc_after_dirty("calloc_zeroed_large", 1 << 20, (1 << 20) + 4096, 16);
    t_overflow();
    t_realloc_tiers();
    t_usable_size();
    t_trim();
    printf("all ok\n");
    return 0;
}

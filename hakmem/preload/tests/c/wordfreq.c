/* Input for the "gcc under the preload" test, and a small allocation-heavy program in its own
 * right: generates a deterministic pseudo-random text, counts its words in a chained hash table
 * of malloc'd nodes, grows the table and a string builder with realloc, sorts with qsort, and
 * prints the most frequent words and checksums. The output depends only on the input, never on
 * addresses, so it is the same under any correct malloc. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORDS 300000

struct node {
    struct node *next;
    uint64_t hash;
    unsigned count;
    size_t len;
    char word[]; /* flexible array member: one allocation per distinct word */
};

struct table {
    struct node **slots;
    size_t nslots, nitems;
};

struct builder {
    char *buf;
    size_t len, cap;
};

static uint64_t state = 88172645463325252ull;

static uint64_t rnd(void) { /* xorshift64 */
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return q;
}

static void table_grow(struct table *t) {
    size_t n = t->nslots ? t->nslots * 2 : 64;
    struct node **s = calloc(n, sizeof *s);
    if (!s) exit(2);
    for (size_t i = 0; i < t->nslots; i++) {
        struct node *e = t->slots[i];
        while (e) {
            struct node *next = e->next;
            size_t k = e->hash & (n - 1);
            e->next = s[k];
            s[k] = e;
            e = next;
        }
    }
    free(t->slots);
    t->slots = s;
    t->nslots = n;
}

static void table_add(struct table *t, const char *w, size_t n) {
    if (t->nitems * 4 >= t->nslots * 3) table_grow(t);
    uint64_t h = fnv1a(w, n);
    struct node **slot = &t->slots[h & (t->nslots - 1)];
    for (struct node *e = *slot; e; e = e->next) {
        if (e->hash == h && e->len == n && memcmp(e->word, w, n) == 0) {
            e->count++;
            return;
        }
    }
    struct node *e = xmalloc(sizeof *e + n + 1);
    e->hash = h;
    e->count = 1;
    e->len = n;
    memcpy(e->word, w, n);
    e->word[n] = 0;
    e->next = *slot;
    *slot = e;
    t->nitems++;
}

static void put(struct builder *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = b->cap ? b->cap + b->cap / 2 + n : 16;
        b->buf = xrealloc(b->buf, b->cap);
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
}

static int by_count(const void *a, const void *b) {
    const struct node *x = *(struct node *const *)a, *y = *(struct node *const *)b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return strcmp(x->word, y->word);
}

static const char *const syllables[] = {"ka", "lo", "mi", "ne", "su", "ra", "to", "vi",
                                        "an", "el", "or", "us", "qu", "ze", "pha", "tri"};

int main(void) {
    struct builder text = {0};
    char word[64];
    for (int i = 0; i < WORDS; i++) {
        /* Zipf-ish: short words are much more common than long ones. */
        int parts = 1 + (int)(rnd() % 4);
        if (rnd() % 8 == 0) parts += (int)(rnd() % 6);
        size_t n = 0;
        for (int k = 0; k < parts; k++) {
            const char *s = syllables[rnd() % (k == 0 ? 4 : 16)];
            size_t m = strlen(s);
            memcpy(word + n, s, m);
            n += m;
        }
        put(&text, word, n);
        put(&text, i % 17 == 16 ? "\n" : " ", 1);
    }

    struct table t = {0};
    size_t lines = 0;
    for (char *p = text.buf; *p;) {
        while (*p == ' ' || *p == '\n') lines += *p++ == '\n';
        char *start = p;
        while (*p && *p != ' ' && *p != '\n') p++;
        if (p > start) table_add(&t, start, (size_t)(p - start));
    }

    struct node **all = xmalloc(t.nitems * sizeof *all);
    size_t k = 0;
    uint64_t sum = 0;
    for (size_t i = 0; i < t.nslots; i++)
        for (struct node *e = t.slots[i]; e; e = e->next) {
            all[k++] = e;
            sum += e->hash * e->count;
        }
    qsort(all, k, sizeof *all, by_count);

    printf("text %zu bytes, %zu lines, %zu distinct words, checksum %016llx\n", text.len, lines,
           k, (unsigned long long)sum);
    for (size_t i = 0; i < 15 && i < k; i++) printf("%8u %s\n", all[i]->count, all[i]->word);

    /* Join the rarest words into one long string, shrinking the text buffer on the way. */
    struct builder rare = {0};
    for (size_t i = k; i-- > 0 && all[i]->count == 1;) {
        put(&rare, all[i]->word, all[i]->len);
        put(&rare, ",", 1);
    }
    text.buf = xrealloc(text.buf, 1);
    printf("rare words: %zu bytes, hash %016llx\n", rare.len,
           (unsigned long long)fnv1a(rare.buf ? rare.buf : "", rare.len));

    for (size_t i = 0; i < k; i++) free(all[i]);
    free(all);
    free(t.slots);
    free(rare.buf);
    free(text.buf);
    return 0;
}

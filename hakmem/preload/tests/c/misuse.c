/* One deliberate misuse per run, chosen by argv[1]; with no argument, none. The checked library
 * must report each (but read-after-free, which needs guard sampling) and abort.
 * tests/checked_preload.rs runs it under libhakmem_checked.so; `just checked-compare`
 * (scripts/checked-compare.sh) runs the nine misuses of its table under every allocator it compares.
 *
 * After the misuse the program goes on allocating and freeing (churn(), the misused size among
 * others), so that an allocator that checks a slot only when it hands it out again, or at a later
 * free, gets its chance; then it exits 0. A run that the allocator lets through therefore exits 0,
 * like the clean run.
 *
 * The bad accesses go through volatile pointers: the compiler would otherwise drop a store to a
 * block that is freed right after, or already freed, or a load from one. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static void *free_it(void *p) {
    free(p);
    return NULL;
}

/* Blocks of 40 bytes (the misused size) and of other sizes, allocated, written and freed. */
static void churn(void) {
    static char *volatile blocks[64];
    unsigned x = 12345;
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < 64; i++) {
            x = x * 1103515245u + 12345u;
            size_t size = i % 4 == 0 ? 40 : 8 + (x >> 16) % 1017;
            blocks[i] = malloc(size);
            memset(blocks[i], i, size);
        }
        for (int i = 0; i < 64; i++)
            free(blocks[i]);
    }
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    char *volatile p = malloc(40);
    char *volatile keep = malloc(40);
    memset(p, 1, 40);
    if (strcmp(what, "double-free") == 0) {
        free(p);
        free(p);
    } else if (strcmp(what, "overflow") == 0) {
        ((volatile char *)p)[40] = 0; /* one byte past the 40 requested */
        free(p);
    } else if (strcmp(what, "underflow") == 0) {
        /* The byte before the block, non-zero (a zero would leave glibc's size field, whose top
         * byte is zero, as it was). */
        ((volatile char *)p)[-1] = 0x41;
        free(p);
    } else if (strcmp(what, "write-after-free") == 0) {
        free(p);
        ((volatile char *)p)[7] = 3;
        char *q = malloc(40); /* the same slot comes back: its poison is checked */
        printf("%p\n", (void *)q);
    } else if (strcmp(what, "read-after-free") == 0) {
        free(p);
        volatile char c = ((volatile char *)p)[3];
        printf("read %d after free\n", c);
    } else if (strcmp(what, "interior") == 0) {
        char *volatile inside = p + 8;
        free(inside);
    } else if (strcmp(what, "wild") == 0) {
        static char not_heap[64];
        char *volatile w = not_heap + 16;
        free(w);
    } else if (strcmp(what, "stack") == 0) {
        char on_stack[64];
        memset(on_stack, 0, sizeof on_stack);
        char *volatile s = on_stack + 16;
        free(s);
    } else if (strcmp(what, "mapping") == 0) {
        /* A pointer into a mapping of the program's own: the 4 MiB-aligned span hakmem would
         * find a region header in is most likely not mapped at all. */
        char *m = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            perror("mmap");
            return 2;
        }
        char *volatile in_map = m + 4096 + 16;
        free(in_map);
    } else if (strcmp(what, "remote-double-free") == 0) {
        /* Freed by a thread that never allocated (its first free sets up its cache), then again
           by the owner once it has ended. */
        pthread_t t;
        if (pthread_create(&t, NULL, free_it, p) != 0 || pthread_join(t, NULL) != 0) {
            perror("pthread");
            return 2;
        }
        free(p);
    } else if (strcmp(what, "realloc-after-free") == 0) {
        free(p);
        char *q = realloc(p, 100);
        printf("%p\n", (void *)q);
    } else if (what[0] != '\0') {
        fprintf(stderr, "misuse: unknown misuse %s\n", what);
        return 2;
    } else {
        puts("no misuse");
        free(p);
    }
    churn();
    free(keep);
    return 0;
}

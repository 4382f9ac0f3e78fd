/* One deliberate misuse per run, chosen by argv[1]; the checked library must report it and abort.
 * The bad stores go through volatile pointers: the compiler would otherwise drop a store to a
 * block that is freed right after, or already freed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    } else if (strcmp(what, "write-after-free") == 0) {
        free(p);
        ((volatile char *)p)[7] = 3;
        char *q = malloc(40); /* the same slot comes back: its poison is checked */
        printf("%p\n", (void *)q);
    } else if (strcmp(what, "interior") == 0) {
        free(p + 8);
    } else if (strcmp(what, "wild") == 0) {
        static char not_heap[64];
        free(not_heap + 16);
    } else {
        puts("no misuse");
        free(p);
    }
    free(keep);
    return 0;
}

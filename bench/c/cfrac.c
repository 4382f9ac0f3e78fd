/* Bignum continued fractions (after cfrac, the continued-fraction factoring program in
 * mimalloc-bench): expands sqrt(N) as a continued fraction for a series of random N of 64 to
 * 400 bits and trial-divides every denominator Q by a base of small primes, looking for smooth
 * ones as the factoring method does. The arithmetic is a tiny bignum library in which, as in
 * cfrac's, every operation returns a freshly allocated number and the caller frees operands it
 * no longer needs: a stream of small (8 to 60 bytes), short-lived allocations of varying size,
 * one per quotient tried in the trial division alone.
 *
 * Every 64 steps the identity N = P^2 + Q_prev * Q is checked, which a corrupted number (say, a
 * block handed out twice) breaks; the program then exits 1.
 *
 * Usage: cfrac [NUMBERS [STEPS [PRIMES]]]
 *        (default 60 numbers, 15000 steps each, a factor base of the first 40 primes) */
#include "bench.h"

/* n limbs of 32 bits, least significant first; the top limb is non-zero (zero has n == 0). */
typedef struct {
    int n;
    uint32_t d[];
} big;

static big *big_new(int n) {
    big *b = must_malloc(sizeof *b + (size_t)n * sizeof b->d[0]);
    b->n = n;
    return b;
}

static big *big_trim(big *b) {
    while (b->n > 0 && b->d[b->n - 1] == 0)
        b->n--;
    return b;
}

static big *big_u64(uint64_t v) {
    big *b = big_new(2);
    b->d[0] = (uint32_t)v;
    b->d[1] = (uint32_t)(v >> 32);
    return big_trim(b);
}

static big *big_copy(const big *a) {
    big *b = big_new(a->n);
    memcpy(b->d, a->d, (size_t)a->n * sizeof a->d[0]);
    return b;
}

static int big_cmp(const big *a, const big *b) {
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    for (int i = a->n - 1; i >= 0; i--)
        if (a->d[i] != b->d[i])
            return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

static big *big_add(const big *a, const big *b) {
    if (a->n < b->n) {
        const big *t = a;
        a = b;
        b = t;
    }
    big *r = big_new(a->n + 1);
    uint64_t carry = 0;
    for (int i = 0; i < a->n; i++) {
        carry += (uint64_t)a->d[i] + (i < b->n ? b->d[i] : 0);
        r->d[i] = (uint32_t)carry;
        carry >>= 32;
    }
    r->d[a->n] = (uint32_t)carry;
    return big_trim(r);
}

/* a - b for a >= b. */
static big *big_sub(const big *a, const big *b) {
    big *r = big_new(a->n);
    int64_t borrow = 0;
    for (int i = 0; i < a->n; i++) {
        int64_t v = (int64_t)a->d[i] - (i < b->n ? b->d[i] : 0) - borrow;
        borrow = v < 0;
        r->d[i] = (uint32_t)v;
    }
    return big_trim(r);
}

static big *big_mul(const big *a, const big *b) {
    big *r = big_new(a->n + b->n);
    memset(r->d, 0, (size_t)r->n * sizeof r->d[0]);
    for (int i = 0; i < a->n; i++) {
        uint64_t carry = 0;
        for (int j = 0; j < b->n; j++) {
            carry += (uint64_t)a->d[i] * b->d[j] + r->d[i + j];
            r->d[i + j] = (uint32_t)carry;
            carry >>= 32;
        }
        r->d[i + b->n] = (uint32_t)carry;
    }
    return big_trim(r);
}

/* a / k, the remainder in *rem. */
static big *big_divmod_small(const big *a, uint32_t k, uint32_t *rem) {
    big *q = big_new(a->n);
    uint64_t r = 0;
    for (int i = a->n - 1; i >= 0; i--) {
        r = (r << 32) | a->d[i];
        q->d[i] = (uint32_t)(r / k);
        r %= k;
    }
    *rem = (uint32_t)r;
    return big_trim(q);
}

static int big_bits(const big *a) {
    return a->n == 0 ? 0 : 32 * a->n - __builtin_clz(a->d[a->n - 1]);
}

static big *big_shl(const big *a, int s) {
    int limbs = s / 32, bits = s % 32;
    big *r = big_new(a->n + limbs + 1);
    memset(r->d, 0, (size_t)r->n * sizeof r->d[0]);
    for (int i = 0; i < a->n; i++) {
        uint64_t v = (uint64_t)a->d[i] << bits;
        r->d[i + limbs] |= (uint32_t)v;
        r->d[i + limbs + 1] = (uint32_t)(v >> 32);
    }
    return big_trim(r);
}

/* floor(a / b) for b > 0 by shift and subtract: quotients here are mostly one or two bits. */
static big *big_div(const big *a, const big *b) {
    int s = big_bits(a) - big_bits(b);
    if (s < 0)
        return big_new(0);
    big *q = big_new(s / 32 + 1);
    memset(q->d, 0, (size_t)q->n * sizeof q->d[0]);
    big *rem = big_copy(a);
    for (; s >= 0; s--) {
        big *t = big_shl(b, s);
        if (big_cmp(rem, t) >= 0) {
            big *r = big_sub(rem, t);
            free(rem);
            rem = r;
            q->d[s / 32] |= 1u << (s % 32);
        }
        free(t);
    }
    free(rem);
    return big_trim(q);
}

static big *big_random(struct rng *r, int bits) {
    big *b = big_new((bits + 31) / 32);
    for (int i = 0; i < b->n; i++)
        b->d[i] = (uint32_t)rng_next(r);
    if (bits % 32)
        b->d[b->n - 1] &= (1u << (bits % 32)) - 1;
    b->d[b->n - 1] |= 1u << ((bits - 1) % 32);
    return b;
}

static uint64_t mix(uint64_t h, uint64_t v) {
    return (h ^ v) * 0x100000001B3u;
}

static uint64_t big_low(const big *a) {
    return a->n == 0 ? 0 : a->n == 1 ? a->d[0] : a->d[0] | (uint64_t)a->d[1] << 32;
}

static uint32_t *primes;
static int nprimes;

/* Whether q is a product of the factor base's primes; every quotient tried is a new number. */
static int smooth(const big *q) {
    big *rest = big_copy(q);
    for (int i = 0; i < nprimes && rest->n > 0; i++) {
        for (;;) {
            uint32_t rem;
            big *next = big_divmod_small(rest, primes[i], &rem);
            if (rem != 0) {
                free(next);
                break;
            }
            free(rest);
            rest = next;
        }
    }
    int one = rest->n == 1 && rest->d[0] == 1;
    free(rest);
    return one;
}

/* Expands sqrt(n) for n = a0^2 + r, 0 < r <= 2 * a0 (so a0 = floor(sqrt(n))), for `steps`
 * steps: P' = a Q - P, Q' = Q_prev + a (P - P'), a' = floor((a0 + P') / Q'). */
static uint64_t expand(const big *n, const big *a0, long steps, uint64_t h, long *smooths) {
    big *p = big_new(0), *q = big_u64(1), *q_prev = big_copy(n), *a = big_copy(a0);
    for (long k = 0; k < steps; k++) {
        big *aq = big_mul(a, q);
        big *p_next = big_sub(aq, p);
        free(aq);
        big *q_next;
        if (big_cmp(p, p_next) >= 0) {
            big *d = big_sub(p, p_next), *ad = big_mul(a, d);
            q_next = big_add(q_prev, ad);
            free(d);
            free(ad);
        } else {
            big *d = big_sub(p_next, p), *ad = big_mul(a, d);
            q_next = big_sub(q_prev, ad);
            free(d);
            free(ad);
        }
        if (k % 64 == 63) {
            big *pp = big_mul(p_next, p_next), *qq = big_mul(q, q_next), *sum = big_add(pp, qq);
            if (big_cmp(sum, n) != 0) {
                fprintf(stderr, "cfrac: N = P^2 + Q_prev Q fails at step %ld\n", k);
                exit(1);
            }
            free(pp);
            free(qq);
            free(sum);
        }
        big *num = big_add(a0, p_next);
        free(a);
        a = big_div(num, q_next);
        free(num);
        if (smooth(q_next))
            ++*smooths;
        h = mix(h, big_low(a));
        free(p);
        free(q_prev);
        p = p_next;
        q_prev = q;
        q = q_next;
    }
    h = mix(mix(h, big_low(p)), big_low(q));
    free(p);
    free(q);
    free(q_prev);
    free(a);
    return h;
}

int main(int argc, char **argv) {
    long numbers = arg_long(argc, argv, 1, 60);
    long steps = arg_long(argc, argv, 2, 15000);
    nprimes = (int)arg_long(argc, argv, 3, 40);
    double start = now_seconds();
    primes = must_malloc((size_t)nprimes * sizeof *primes);
    for (uint32_t c = 2, found = 0; found < (uint32_t)nprimes; c++) {
        uint32_t i = 0;
        while (i < found && c % primes[i] != 0)
            i++;
        if (i == found)
            primes[found++] = c;
    }
    struct rng r;
    rng_seed(&r, 7);
    uint64_t h = 0xCBF29CE484222325u;
    long smooths = 0;
    for (long i = 0; i < numbers; i++) {
        big *a0 = big_random(&r, (int)rng_range(&r, 32, 200));
        big *sq = big_mul(a0, a0), *rest = big_u64(rng_range(&r, 1, 1u << 31));
        big *n = big_add(sq, rest);
        h = expand(n, a0, steps, h, &smooths);
        free(a0);
        free(sq);
        free(rest);
        free(n);
    }
    free(primes);
    char params[128];
    snprintf(params, sizeof params, "numbers=%ld steps=%ld primes=%d smooth=%ld", numbers, steps,
             nprimes, smooths);
    finish("cfrac", params, h, start);
    return 0;
}

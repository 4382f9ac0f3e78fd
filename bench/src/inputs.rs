//! Generated inputs of the C suite's real programs, the same bytes on every run: a text file for
//! `sort` and a C file for `gcc -O2`.

use std::fmt::Write as _;

use crate::rng::Rng;

const WORDS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
];

/// `lines` lines of 1 to 12 words and two numbers, 55 bytes on average, in no order: `sort`'s
/// input.
pub fn sort_input(lines: u64) -> String {
    let mut rng = Rng::new(31);
    let mut s = String::with_capacity(lines as usize * 48);
    for i in 0..lines {
        let words = rng.range(1, 12);
        for w in 0..words {
            if w > 0 {
                s.push(' ');
            }
            s.push_str(WORDS[rng.below(WORDS.len())]);
        }
        let _ = writeln!(s, " {} {i}", rng.below(1_000_000));
    }
    s
}

/// A C file of `units` independent units, each a struct, a qsort comparator, a loop over a
/// switch, a floating-point recurrence, a string hash and an exported function that calls them
/// (so the static ones get inlined): about 50 lines a unit, 30 ms of `gcc -O2` each.
pub fn gcc_source(units: u64) -> String {
    let mut rng = Rng::new(47);
    let mut s = String::from("#include <stdlib.h>\n\n");
    for i in 0..units {
        let mut int = |lo: usize, hi: usize| rng.range(lo, hi);
        let (c1, c2, c3, s1, s2) = (
            int(1, 1 << 30),
            int(3, 999),
            int(3, 99_999) | 1,
            int(1, 20),
            int(1, 40),
        );
        let (c4, c5, c6, c7) = (
            int(3, 97),
            int(1, 1 << 20),
            int(1, 1 << 31),
            int(1, 1 << 16),
        );
        let (f1, f2, f3, f4) = (int(5, 90), int(10, 99), int(0, 300), int(50, 150));
        let _ = write!(
            s,
            r#"struct item_{i} {{ int key; long weight; double score; unsigned char tag[12]; struct item_{i} *next; }};

static int cmp_{i}(const void *a, const void *b) {{
    const struct item_{i} *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->score > y->score) - (x->score < y->score);
}}

static long step_{i}(struct item_{i} *v, int n, long seed) {{
    long acc = seed ^ {c1}L;
    for (int j = 0; j < n; j++) {{
        switch ((v[j].key ^ j) & 7) {{
        case 0: acc += v[j].weight * {c2}; break;
        case 1: acc ^= (long)(v[j].score * {f1}.5); break;
        case 2: acc -= (long)v[j].tag[j % 12] << {s1}; break;
        case 3: acc = acc * {c3} + v[j].key; break;
        case 4: v[j].weight += acc >> {s2}; break;
        case 5: v[j].score = v[j].score * 0.{f2} + (double)acc; break;
        case 6: if (v[j].next) acc += v[j].next->key; break;
        default: acc = (long)(((unsigned long)acc << 3) | ((unsigned long)acc >> 61)); break;
        }}
    }}
    return acc;
}}

static double mix_{i}(const double *x, int n) {{
    double s = 0, t = {f3}.25;
    for (int j = 0; j < n; j++) {{
        s += x[j] * t;
        t = t * {f4}e-2 + x[(j * {c4}) % n];
    }}
    return s / (n + 1);
}}

static unsigned hash_{i}(const char *s) {{
    unsigned h = {c6}u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u + {c7}u;
    return h;
}}

long unit_{i}(struct item_{i} *v, int n, const double *x) {{
    qsort(v, (size_t)n, sizeof *v, cmp_{i});
    long runs = 0;
    for (int j = 1; j < n; j++)
        runs += v[j].key != v[j - 1].key;
    return runs + step_{i}(v, n, {c5}) + (long)mix_{i}(x, n) + hash_{i}("unit {i}");
}}

"#
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_deterministic_and_sized() {
        assert_eq!(sort_input(1000), sort_input(1000));
        assert_eq!(sort_input(1000).lines().count(), 1000);
        let c = gcc_source(3);
        assert_eq!(c, gcc_source(3));
        assert!(c.contains("long unit_2(") && !c.contains("unit_3"));
    }
}

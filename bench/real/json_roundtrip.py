"""JSON round trip for the C suite of hakmem-bench (bench/src/csuite.rs), run by python3 under
each allocator: builds a large nested structure from a fixed-seed generator (records with nested
lists, dicts, strings of varied length, ints, floats, booleans, None), serialises it, parses it
back and checks the two are equal, ROUNDS times; prints the sizes and a digest of each text.

Python serves objects up to 512 bytes from its own pools; lists, dicts and strings beyond that,
the pools' arenas and the JSON texts come from malloc, realloc and free.

Usage: json_roundtrip.py [RECORDS [ROUNDS]]   (default 10000 records, 3 rounds)
"""
import hashlib
import json
import random
import sys

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
         "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def text(rng, words):
    return " ".join(rng.choice(WORDS) for _ in range(words))


def value(rng, depth):
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.randrange(-10**9, 10**9)
    if kind == 1:
        return round(rng.uniform(-1e6, 1e6), 3)
    if kind == 2:
        return text(rng, rng.randrange(1, 12))
    if kind == 3:
        return rng.random() < 0.5
    if kind == 4:
        return None
    if kind == 5:
        return [value(rng, depth + 1) for _ in range(rng.randrange(0, 8))]
    return {rng.choice(WORDS) + str(i): value(rng, depth + 1) for i in range(rng.randrange(0, 6))}


def record(rng, i):
    return {
        "id": i,
        "name": text(rng, 3),
        "tags": [rng.choice(WORDS) for _ in range(rng.randrange(0, 10))],
        "body": text(rng, rng.randrange(5, 200)),
        "attrs": {w: value(rng, 1) for w in rng.sample(WORDS, rng.randrange(1, 8))},
        "history": [{"at": rng.randrange(10**6), "what": value(rng, 2)}
                    for _ in range(rng.randrange(0, 6))],
    }


def main():
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rng = random.Random(2024)
    data = {"records": [record(rng, i) for i in range(records)]}
    for r in range(rounds):
        s = json.dumps(data, indent=r % 2 or None, sort_keys=r > 0)
        back = json.loads(s)
        if back != data:
            print("round trip changed the data", file=sys.stderr)
            sys.exit(1)
        data = back
        print(f"round {r}: {len(s)} chars, sha256 {hashlib.sha256(s.encode()).hexdigest()[:16]}")


main()

# An sqlite3 session of n inserts (awk -v n=ROWS -f sqlite-session.awk > session.sql): a table of
# names, quantities and notes of varied length filled in one transaction from a fixed-seed linear
# congruential generator, then three aggregating SELECTs whose output every allocator must
# reproduce. Run against an in-memory database (`sqlite3 :memory: < session.sql`) by
# scripts/checked-compare.sh and by the C suite of hakmem-bench.
BEGIN {
    q = sprintf("%c", 39)
    nw = split("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu", w, " ")
    print "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, note TEXT);"
    print "BEGIN;"
    x = 12345
    for (i = 1; i <= n; i++) {
        x = (x * 1101 + 12345) % 65536
        name = w[x % nw + 1] "-" w[int(x / nw) % nw + 1] "-" i
        note = ""
        for (j = 0; j <= x % 13; j++) note = note w[(x + j * 7) % nw + 1] " "
        printf "INSERT INTO t (name, qty, note) VALUES (%s%s%s, %d, %s%s%s);\n", q, name, q, x % 1000, q, note, q
    }
    print "COMMIT;"
    print "SELECT count(*), sum(qty), sum(length(note)) FROM t;"
    print "SELECT substr(name, 1, instr(name, " q "-" q ") - 1) AS k, count(*), avg(qty) FROM t GROUP BY k ORDER BY k LIMIT 5;"
    print "SELECT count(DISTINCT note), max(length(name)) FROM t WHERE qty > 500;"
}

/*
 * The storage limit of the retained path: how fast this machine's SQLite inserts the journal's
 * rows in batches, with nothing of the broker around it (scripts/retained-vs-sqlite runs it).
 *
 * The journal's schema (Sources/BrokerJournal/Schema.swift: topics, messages and its
 * (topic_id, offset) index), its settings (WAL, synchronous=NORMAL or FULL, incremental
 * auto-vacuum) and its row shape: an offset, a topic id, a 64-byte payload, a flag and a
 * timestamp, one prepared statement bound through the C API, `batch` rows per transaction (the
 * journal's writer commits up to 2,048 appends per transaction). Topics are round-robin.
 *
 *   cc -O2 -o /tmp/sqlite-insert-rate scripts/sqlite-insert-rate.c -lsqlite3
 *   /tmp/sqlite-insert-rate FILE [rows=200000] [topics=400] [batch=2048] [size=64] [synchronous=NORMAL]
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void check(int code, sqlite3 *db, const char *what) {
    if (code != SQLITE_OK && code != SQLITE_DONE && code != SQLITE_ROW) {
        fprintf(stderr, "sqlite-insert-rate: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static void exec(sqlite3 *db, const char *sql) { check(sqlite3_exec(db, sql, 0, 0, 0), db, sql); }

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE [rows] [topics] [batch] [size] [synchronous]\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    long rows = argc > 2 ? atol(argv[2]) : 200000;
    long topics = argc > 3 ? atol(argv[3]) : 400;
    long batch = argc > 4 ? atol(argv[4]) : 2048;
    long size = argc > 5 ? atol(argv[5]) : 64;
    const char *synchronous = argc > 6 ? argv[6] : "NORMAL";
    if (rows < 1 || topics < 1 || batch < 1 || size < 1) return 2;

    sqlite3 *db;
    check(sqlite3_open(path, &db), db, "open");
    exec(db, "PRAGMA auto_vacuum = INCREMENTAL");
    exec(db, "PRAGMA journal_mode = WAL");
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA synchronous = %s", synchronous);
    exec(db, pragma);
    exec(db,
         "CREATE TABLE topics (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
         " pruned_through INTEGER NOT NULL DEFAULT 0);"
         "CREATE TABLE messages (offset INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL,"
         " payload BLOB NOT NULL, is_binary INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL);"
         "CREATE INDEX messages_by_topic ON messages(topic_id, offset);");
    sqlite3_stmt *topic;
    check(sqlite3_prepare_v2(db, "INSERT INTO topics (name) VALUES (?)", -1, &topic, 0), db, "prepare topics");
    exec(db, "BEGIN");
    for (long t = 0; t < topics; t++) {
        char name[64];
        snprintf(name, sizeof name, "bench/retained/%ld", t);
        sqlite3_bind_text(topic, 1, name, -1, SQLITE_TRANSIENT);
        check(sqlite3_step(topic), db, "insert topic");
        sqlite3_reset(topic);
    }
    exec(db, "COMMIT");
    sqlite3_finalize(topic);

    char *payload = malloc(size);
    for (long i = 0; i < size; i++) payload[i] = 'a' + i % 26;
    sqlite3_stmt *insert;
    check(sqlite3_prepare_v2(db,
                             "INSERT INTO messages (offset, topic_id, payload, is_binary, timestamp_ms)"
                             " VALUES (?, ?, ?, ?, ?)", -1, &insert, 0), db, "prepare messages");
    double start = now_seconds();
    long offset = 0;
    while (offset < rows) {
        exec(db, "BEGIN IMMEDIATE");
        sqlite3_bind_int64(insert, 5, (sqlite3_int64)time(0) * 1000);
        for (long i = 0; i < batch && offset < rows; i++) {
            offset++;
            sqlite3_bind_int64(insert, 1, offset);
            sqlite3_bind_int64(insert, 2, 1 + offset % topics);
            sqlite3_bind_blob(insert, 3, payload, (int)size, SQLITE_STATIC);
            sqlite3_bind_int(insert, 4, 0);
            check(sqlite3_step(insert), db, "insert message");
            sqlite3_reset(insert);
        }
        exec(db, "COMMIT");
    }
    double elapsed = now_seconds() - start;
    sqlite3_finalize(insert);
    sqlite3_close(db);
    printf("sqlite %s: %ld rows of %ld B over %ld topics, %ld per transaction, synchronous=%s: %.3f s = %.0f rows/s\n",
           sqlite3_libversion(), rows, size, topics, batch, synchronous, elapsed, rows / elapsed);
    return 0;
}

/* test_recovery.c - integration: what a restart finds. The memory backend after its WAL rolled
 * over and snapshots released the first segments; a WAL segment cut short (refused, not
 * "repaired"); the member identity across a change of peer URLs; the keyspace hash as soon as
 * /health answers. */
#define _GNU_SOURCE
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The value of put i: its number, then filler up to len bytes. */
static void value_of(int i, size_t len, char *out)
{
    int n = snprintf(out, len + 1, "put-%05d-", i);
    memset(out + n, 'v', len - (size_t)n);
    out[len] = 0;
}

/* The base64 of key prefix/i (i with width digits). */
static void key_b64(const char *prefix, int width, int i, char *out)
{
    char key[64];
    snprintf(key, sizeof(key), "%s/%0*d", prefix, width, i);
    tu_b64(key, out);
}

/* POST the n bodies to path, pipelined; every answer must be 200. Frees the bodies. */
static void post_all(int port, const char *path, char **bodies, size_t n)
{
    int *st = calloc(n, sizeof(*st));
    ck_assert_uint_eq(tu_pipeline(port, path, bodies, n, st), n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(st[i], 200);
        free(bodies[i]);
    }
    free(st);
}

/* Lowest and highest sequence number of the WAL segments in the data dir, and how many. */
static int wal_segments(const struct tu_server *s, unsigned long long *lo, unsigned long long *hi)
{
    char dir[4300];
    snprintf(dir, sizeof(dir), "%s/data/member/wal", s->dir);
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (strlen(e->d_name) != 37 || strcmp(e->d_name + 33, ".wal") != 0)
            continue;
        unsigned long long seq = strtoull(e->d_name, NULL, 16);
        if (!n || seq < *lo)
            *lo = seq;
        if (!n || seq > *hi)
            *hi = seq;
        n++;
    }
    closedir(d);
    return n;
}

#define ROLL_PUTS  300
#define ROLL_KEYS  20
#define ROLL_VALUE 3000

/* Issue 10 item 2: small segments and a small --snapshot-count, so that segments roll and
 * snapshots release the oldest ones many times over; after a restart every acknowledged put
 * is there, at its revision. */
START_TEST(memory_rollover_restart)
{
    setenv("METASTORE_WAL_SEGMENT_BYTES", "131072", 1); /* this test's process only */
    const char *extra[] = {"--backend", "memory", "--snapshot-count", "25", NULL};
    struct tu_server s;
    tu_server_start(&s, extra);
    static long revs[ROLL_PUTS];
    static char value[ROLL_VALUE + 1], vb[ROLL_VALUE * 2], body[ROLL_VALUE * 2 + 128];
    for (int i = 0; i < ROLL_PUTS; i++) {
        char kb[96];
        key_b64("roll", 2, i % ROLL_KEYS, kb);
        value_of(i, ROLL_VALUE, value);
        tu_b64(value, vb);
        snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\"}", kb, vb);
        int st;
        char *got = tu_post(s.port, "/v3/kv/put", body, &st);
        ck_assert_int_eq(st, 200);
        revs[i] = tu_json_num(got, "revision", -1);
        ck_assert_int_gt(revs[i], 0);
        free(got);
    }
    /* Snapshots finish in the background: wait (bounded) until one released segment 0. */
    unsigned long long lo = 0, hi = 0;
    for (int w = 0; w < 500 && (wal_segments(&s, &lo, &hi), lo == 0); w++)
        tu_sleep_ms(10);
    ck_assert_msg(lo > 0, "segments %llu..%llu: none rolled and released", lo, hi);
    tu_server_stop_keep(&s, 1);
    tu_server_restart(&s, extra);
    for (int i = 0; i < ROLL_PUTS; i++) {
        char kb[96];
        key_b64("roll", 2, i % ROLL_KEYS, kb);
        snprintf(body, sizeof(body), "{\"key\":\"%s\",\"revision\":%ld}", kb, revs[i]);
        int st;
        char *got = tu_post(s.port, "/v3/kv/range", body, &st);
        ck_assert_int_eq(st, 200);
        value_of(i, ROLL_VALUE, value);
        tu_b64(value, vb);
        ck_assert_msg(strstr(got, vb) != NULL, "put %d (revision %ld) is missing", i, revs[i]);
        ck_assert_int_eq(tu_json_num(got, "mod_revision", -1), revs[i]);
        free(got);
    }
    tu_server_stop(&s);
}
END_TEST

/* Where the records of a preallocated segment end: the last non-zero byte before the first
 * 64 KiB of zeros (records of small puts never hold that many). */
static size_t segment_data(const char *path)
{
    static char chunk[65536];
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    size_t end = 0;
    for (off_t at = 0;; at += (off_t)sizeof(chunk)) {
        ssize_t n = pread(fd, chunk, sizeof(chunk), at);
        ck_assert_int_ge(n, 0);
        size_t last = (size_t)n;
        while (last && !chunk[last - 1])
            last--;
        if (!last)
            break;
        end = (size_t)at + last;
    }
    close(fd);
    return end;
}

/* Issue 10 item 8: a preallocated segment cut to half its data lost acknowledged puts: the
 * server refuses to start, naming the file and its size, instead of starting without them. */
START_TEST(truncated_segment_refused)
{
    enum { N = 3000 };
    const char *extra[] = {"--backend", "memory", NULL};
    struct tu_server s;
    tu_server_start(&s, extra);
    static char *bodies[N];
    for (int i = 0; i < N; i++) {
        char kb[96];
        key_b64("cut", 5, i, kb);
        bodies[i] = malloc(128);
        snprintf(bodies[i], 128, "{\"key\":\"%s\",\"value\":\"dmFsdWU=\"}", kb);
    }
    post_all(s.port, "/v3/kv/put", bodies, N);
    tu_server_stop_keep(&s, 1);
    char path[4300], data[4300], url[64];
    snprintf(path, sizeof(path), "%s/data/member/wal/0000000000000000-0000000000000000.wal", s.dir);
    size_t end = segment_data(path);
    ck_assert_uint_gt(end, 100000);
    ck_assert_int_eq(truncate(path, (off_t)(end / 2)), 0);

    snprintf(data, sizeof(data), "%s/data", s.dir);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port);
    const char *args[] = {"--listen-client-urls",
                          url,
                          "--advertise-client-urls",
                          url,
                          "--data-dir",
                          data,
                          "--backend",
                          "memory",
                          "--log-level",
                          "warn",
                          NULL};
    char *out;
    int rc = tu_run(args, NULL, 20000, &out);
    ck_assert_msg(rc > 0, "a truncated WAL was accepted (exit status %d): %s", rc, out);
    char size[64];
    snprintf(size, sizeof(size), " is %zu bytes", end / 2);
    ck_assert_msg(strstr(out, "0000000000000000-0000000000000000.wal") && strstr(out, size) &&
                      strstr(out, "cut short"),
                  "unclear message: %s", out);
    free(out);
    tu_rmtree(s.dir);
    free(s.dir);
}
END_TEST

/* Issue 10 item 10: before its first snapshot the memory backend holds its identity only in the
 * WAL; a restart with other peer URLs keeps the member and cluster IDs. */
START_TEST(identity_survives_peer_url_change)
{
    char peer1[64], peer2[64];
    snprintf(peer1, sizeof(peer1), "http://127.0.0.1:%d", tu_free_port());
    snprintf(peer2, sizeof(peer2), "http://127.0.0.1:%d", tu_free_port());
    const char *first[] = {"--backend", "memory", "--initial-advertise-peer-urls", peer1, NULL};
    const char *second[] = {"--backend", "memory", "--initial-advertise-peer-urls", peer2, NULL};
    struct tu_server s;
    tu_server_start(&s, first);
    char id1[32], id2[32];
    tu_member_id(s.port, id1, sizeof(id1));
    struct tu_resp r1, r2;
    tu_http(s.port, "POST", "/v3/kv/put", "{\"key\":\"aWQ=\",\"value\":\"MQ==\"}", &r1);
    ck_assert_int_eq(r1.status, 200);
    tu_server_stop_keep(&s, 1);
    tu_server_restart(&s, second);
    tu_member_id(s.port, id2, sizeof(id2));
    ck_assert_str_eq(id1, id2);
    tu_http(s.port, "POST", "/v3/kv/put", "{\"key\":\"aWQ=\",\"value\":\"Mg==\"}", &r2);
    ck_assert_int_eq(r2.status, 200);
    const char *c1 = strstr(r1.body, "\"cluster_id\":"), *c2 = strstr(r2.body, "\"cluster_id\":");
    ck_assert(c1 && c2);
    ck_assert_int_eq(strncmp(c1, c2, strcspn(c1, ",")), 0);
    tu_resp_free(&r1);
    tu_resp_free(&r2);
    tu_server_stop(&s);
}
END_TEST

#define HASH_TXNS 600
#define HASH_OPS  100

/* Issue 10 item 14: a compaction replayed from the WAL is carried out before /health answers,
 * so the first hash after a restart is the hash of the compacted keyspace. */
START_TEST(hash_stable_after_restart)
{
    const char *extra[] = {"--backend", "memory", NULL};
    struct tu_server s;
    tu_server_start(&s, extra);
    /* Many superseded revisions: their removal spans many slices of the compactor. */
    static char *bodies[HASH_TXNS];
    for (int t = 0; t < HASH_TXNS; t++) {
        size_t cap = HASH_OPS * 96 + 32, n = 0;
        bodies[t] = malloc(cap);
        n += (size_t)snprintf(bodies[t] + n, cap - n, "{\"success\":[");
        for (int k = 0; k < HASH_OPS; k++) {
            char kb[96];
            key_b64("h", 3, k, kb);
            n += (size_t)snprintf(bodies[t] + n, cap - n,
                                  "%s{\"request_put\":{\"key\":\"%s\",\"value\":\"eA==\"}}",
                                  k ? "," : "", kb);
        }
        snprintf(bodies[t] + n, cap - n, "]}");
    }
    post_all(s.port, "/v3/kv/txn", bodies, HASH_TXNS);
    char *got = tu_post(s.port, "/v3/kv/range", "{\"key\":\"AA==\",\"count_only\":true}", NULL);
    long rev = tu_json_num(got, "revision", -1);
    free(got);
    ck_assert_int_eq(rev, 1 + HASH_TXNS);
    char body[96];
    int code;
    snprintf(body, sizeof(body), "{\"revision\":%ld,\"physical\":true}", rev);
    free(tu_post(s.port, "/v3/kv/compaction", body, &code));
    ck_assert_int_eq(code, 200);
    char *h0 = tu_post(s.port, "/v3/maintenance/hash", "{}", NULL);
    tu_server_stop_keep(&s, 1);
    tu_server_restart(&s, extra);
    char *h1 = tu_post(s.port, "/v3/maintenance/hash", "{}", NULL);
    ck_assert_str_eq(h0, h1);
    free(h0);
    free(h1);
    tu_server_stop(&s);
}
END_TEST

/* A start that fails half-way (here: member/wal is a file, so the WAL cannot open) persists
 * nothing: the next start derives the member ID from its own flags, as a fresh one does. */
START_TEST(failed_start_persists_no_identity)
{
    char peer1[64], peer2[64], data[4300], wal[4400], id_next[32], id_fresh[32];
    snprintf(peer1, sizeof(peer1), "http://127.0.0.1:%d", tu_free_port());
    snprintf(peer2, sizeof(peer2), "http://127.0.0.1:%d", tu_free_port());
    struct tu_server s, fresh;
    tu_server_init(&s);
    snprintf(data, sizeof(data), "%s/data", s.dir);
    snprintf(wal, sizeof(wal), "%s/member/wal", data);
    char member[4400];
    snprintf(member, sizeof(member), "%s/member", data);
    ck_assert_int_eq(mkdir(data, 0700), 0);
    ck_assert_int_eq(mkdir(member, 0700), 0);
    int fd = open(wal, O_WRONLY | O_CREAT, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port);
    const char *args[] = {
        "--data-dir", data, "--listen-client-urls", url, "--initial-advertise-peer-urls",
        peer1,        NULL};
    char *out;
    ck_assert_int_ne(tu_run(args, NULL, 20000, &out), 0);
    free(out);
    ck_assert_int_eq(unlink(wal), 0);
    const char *second[] = {"--initial-advertise-peer-urls", peer2, NULL};
    tu_server_restart(&s, second);
    tu_member_id(s.port, id_next, sizeof(id_next));
    tu_server_start(&fresh, second);
    tu_member_id(fresh.port, id_fresh, sizeof(id_fresh));
    ck_assert_str_eq(id_next, id_fresh);
    tu_server_stop(&fresh);
    tu_server_stop(&s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("recovery");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"rollover", memory_rollover_restart},
        {"truncated", truncated_segment_refused},
        {"identity", identity_survives_peer_url_change},
        {"hash", hash_stable_after_restart},
        {"failed_start", failed_start_persists_no_identity},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return tu_run_suite(s);
}

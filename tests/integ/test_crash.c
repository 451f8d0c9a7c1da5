/* test_crash.c - acknowledged writes survive SIGKILL.
 *
 * A writer keeps 16 connections busy with puts of unique keys and records every acknowledged
 * put with its revision. The server is killed with SIGKILL after a pseudo-random number of
 * acknowledgements (fixed seed, so runs are reproducible), restarted, and checked:
 *   - every acknowledged key is present with exactly the acknowledged revision;
 *   - revisions never go backwards across restarts;
 *   - every revision from 2 to the current one holds exactly one key (nothing lost in the
 *     middle, nothing applied twice);
 *   - the keyspace hash after crash recovery equals the hash after a clean restart.
 * Several cycles per backend, on LMDB and on the memory backend.
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONNS  16
#define CYCLES 5

struct conn {
    int fd;
    long key; /* key of the put in flight, -1 if none */
    char in[4096];
    size_t in_len;
};

static long *acked_rev; /* acked_rev[key] = revision, 0 if not acknowledged */
static long next_key;
static long max_keys;

static void send_put(struct conn *c, long key)
{
    char k[32], kb[64], req[512];
    snprintf(k, sizeof(k), "crash/%08ld", key);
    tu_b64(k, kb);
    int body_len = (int)strlen(kb) + 40;
    char body[256];
    body_len = snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"dmFsdWU=\"}", kb);
    int n = snprintf(req, sizeof(req),
                     "POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s",
                     body_len, body);
    tu_send_all(c->fd, req, (size_t)n);
    c->key = key;
    c->in_len = 0;
}

/* A whole response in c->in? Returns its revision, 0 if incomplete, -1 on a non-200. */
static long parse_reply(struct conn *c)
{
    c->in[c->in_len] = 0;
    char *hend = strstr(c->in, "\r\n\r\n");
    if (!hend)
        return 0;
    char *cl = strcasestr(c->in, "Content-Length:");
    if (!cl)
        return -1;
    size_t len = strtoul(cl + 15, NULL, 10);
    if ((size_t)(c->in + c->in_len - (hend + 4)) < len)
        return 0;
    if (strncmp(c->in, "HTTP/1.1 200", 12) != 0)
        return -1;
    return tu_json_num(hend, "revision", -1);
}

/* Write until `stop_after` more acknowledgements, then SIGKILL the server. */
static void write_then_kill(struct tu_server *s, long stop_after)
{
    struct conn cs[CONNS];
    for (int i = 0; i < CONNS; i++) {
        cs[i].fd = tu_connect(s->port);
        ck_assert_int_ge(cs[i].fd, 0);
        send_put(&cs[i], next_key++);
    }
    long acks = 0;
    while (acks < stop_after) {
        struct pollfd p[CONNS];
        for (int i = 0; i < CONNS; i++)
            p[i] = (struct pollfd){.fd = cs[i].fd, .events = POLLIN};
        int n = poll(p, CONNS, 10000);
        ck_assert_msg(n > 0, "server stopped answering");
        for (int i = 0; i < CONNS && acks < stop_after; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r =
                recv(cs[i].fd, cs[i].in + cs[i].in_len, sizeof(cs[i].in) - cs[i].in_len - 1, 0);
            ck_assert_msg(r > 0, "connection dropped while the server is alive");
            cs[i].in_len += (size_t)r;
            long rev = parse_reply(&cs[i]);
            if (rev == 0)
                continue;
            ck_assert_msg(rev > 0, "put failed: %s", cs[i].in);
            acked_rev[cs[i].key] = rev;
            acks++;
            ck_assert_int_lt(next_key, max_keys);
            send_put(&cs[i], next_key++);
        }
    }
    /* Kill with requests still in flight: their outcome is unknown, which is allowed. */
    tu_server_kill(s);
    for (int i = 0; i < CONNS; i++)
        close(cs[i].fd);
}

static long current_revision(int port)
{
    char *got = tu_post(port, "/v3/kv/range", "{\"key\":\"AA==\",\"count_only\":true}", NULL);
    long rev = tu_json_num(got, "revision", -1);
    free(got);
    return rev;
}

static char *hash_of(int port)
{
    char *got = tu_post(port, "/v3/maintenance/hash", "{}", NULL);
    char *h = strstr(got, "\"hash\":");
    char *out = strdup(h ? h : got);
    free(got);
    return out;
}

/* Every acknowledged key has its revision; revisions 2..rev hold one key each. */
static void verify(int port, long rev)
{
    struct tu_resp r;
    tu_http(port, "POST", "/v3/kv/range",
            "{\"key\":\"Y3Jhc2gv\",\"range_end\":\"Y3Jhc2gw\",\"keys_only\":true}", &r);
    ck_assert_int_eq(r.status, 200);
    long *rev_of = calloc((size_t)max_keys, sizeof(long));
    char *seen = calloc((size_t)rev + 1, 1);
    long nkeys = 0;
    for (char *p = strstr(r.body, "\"key\":\""); p; p = strstr(p + 1, "\"key\":\"")) {
        /* keys are crash/NNNNNNNN: decode the 8 digits from base64 via the mod revision */
        char *mr = strstr(p, "\"mod_revision\":\"");
        ck_assert_ptr_nonnull(mr);
        long m = strtol(mr + 16, NULL, 10);
        ck_assert_int_le(m, rev);
        ck_assert_msg(!seen[m], "revision %ld holds two keys", m);
        seen[m] = 1;
        /* Decode the key to find its number. */
        char kb[64];
        char *q = p + 7;
        size_t kl = (size_t)(strchr(q, '"') - q);
        memcpy(kb, q, kl);
        kb[kl] = 0;
        static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char plain[64];
        size_t o = 0;
        for (size_t i = 0; i + 3 < kl + 1 && i < kl; i += 4) {
            unsigned v = 0;
            for (int j = 0; j < 4; j++) {
                const char *x = kb[i + j] == '=' ? a : strchr(a, kb[i + j]);
                v = v << 6 | (unsigned)(x - a);
            }
            plain[o++] = (char)(v >> 16);
            plain[o++] = (char)(v >> 8);
            plain[o++] = (char)v;
        }
        plain[o] = 0;
        long key = strtol(plain + 6, NULL, 10);
        ck_assert_int_lt(key, max_keys);
        rev_of[key] = m;
        nkeys++;
    }
    for (long m = 2; m <= rev; m++)
        ck_assert_msg(seen[m], "revision %ld is missing", m);
    for (long k = 0; k < max_keys; k++)
        if (acked_rev[k])
            ck_assert_msg(rev_of[k] == acked_rev[k], "key %ld acknowledged at %ld, found at %ld", k,
                          acked_rev[k], rev_of[k]);
    ck_assert_int_eq(nkeys, rev - 1);
    free(rev_of);
    free(seen);
    tu_resp_free(&r);
}

static void crash_cycles(const char *backend)
{
    const char *extra[] = {"--backend", backend, NULL};
    struct tu_server s;
    max_keys = 200000;
    next_key = 0;
    acked_rev = calloc((size_t)max_keys, sizeof(long));
    uint64_t rng = 0x243F6A8885A308D3ULL;
    tu_server_start(&s, extra);
    long last_rev = 1;
    for (int cycle = 0; cycle < CYCLES; cycle++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        long stop_after = 200 + (long)((rng >> 33) % 1500);
        write_then_kill(&s, stop_after);
        tu_server_restart(&s, extra);
        long rev = current_revision(s.port);
        ck_assert_msg(rev >= last_rev, "revision went back from %ld to %ld", last_rev, rev);
        last_rev = rev;
        verify(s.port, rev);
    }
    /* Recovery is deterministic: the hash after crash recovery equals a clean restart's. */
    char *h1 = hash_of(s.port);
    long rev = current_revision(s.port);
    tu_server_stop_keep(&s, 1);
    tu_server_restart(&s, extra);
    char *h2 = hash_of(s.port);
    ck_assert_str_eq(h1, h2);
    ck_assert_int_eq(current_revision(s.port), rev);
    verify(s.port, rev);
    printf("crash (%s): %d kills, %ld puts acknowledged, final revision %ld\n", backend, CYCLES,
           next_key - CONNS * CYCLES, rev);
    free(h1);
    free(h2);
    tu_server_stop(&s);
    free(acked_rev);
}

START_TEST(kill9_lmdb)
{
    crash_cycles("lmdb");
}
END_TEST

START_TEST(kill9_memory)
{
    crash_cycles("memory");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("crash");
    TCase *tc = tcase_create("kill9");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, kill9_lmdb);
    tcase_add_test(tc, kill9_memory);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}

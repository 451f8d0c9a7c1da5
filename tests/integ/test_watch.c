/* test_watch.c - integration: POST /v3/watch on the real binary over loopback.
 *
 * Each message kind of reference §6 is compared with what etcd 3.4.23 sends (header IDs
 * normalised to C, M and T; responses of different watchers of one stream may interleave in
 * any order, as in etcd, so lines are compared per watch_id). Then the load cases of the
 * issue: history replay over thousands of revisions, 1,000 concurrent streams receiving a
 * burst in order, a reader that stops reading while 100k events are written (bounded server
 * memory, then every event in order or a compaction cancel), clients killed mid-stream
 * (watcher count back to zero; the server's clean exit checks ASan), and streams that stop
 * reading under a small --watch-total-buffer-bytes (buffered output and memory bounded, other
 * clients answered, every event in order once they read, the counter back to zero). Every
 * wait is bounded.
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct tu_server srv;

static void setup(void)
{
    tu_server_start(&srv, NULL);
}

static void teardown(void)
{
    tu_server_stop(&srv);
}

#define H(r)                                                                                       \
    "{\"cluster_id\":\"C\",\"member_id\":\"M\",\"revision\":\"" #r "\",\"raft_term\":\"T\"}"
#define HNOREV "{\"cluster_id\":\"C\",\"member_id\":\"M\",\"raft_term\":\"T\"}"

/* ---- a watch stream reader: HTTP head, chunked framing, '\n'-separated messages ---- */

struct wsr {
    int fd;
    int status;
    bool head_done;
    bool chunked;
    bool eof;
    size_t chunk_left; /* body bytes left in the current chunk */
    bool chunk_crlf;   /* the CRLF after a chunk is due */
    char *raw;         /* bytes read, not yet decoded */
    size_t raw_read;   /* bytes read in all */
    size_t raw_len, raw_cap;
    char *body; /* decoded body; lines are taken from body_off */
    size_t body_len, body_cap, body_off;
    char head[4096];
};

static void grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t nc = *cap ? *cap : 65536;
    while (nc < need)
        nc *= 2;
    *p = realloc(*p, nc);
    ck_assert_ptr_nonnull(*p);
    *cap = nc;
}

static void body_add(struct wsr *r, const char *p, size_t n)
{
    if (r->body_off > 0 && r->body_off * 2 > r->body_len) {
        memmove(r->body, r->body + r->body_off, r->body_len - r->body_off);
        r->body_len -= r->body_off;
        r->body_off = 0;
    }
    grow(&r->body, &r->body_cap, r->body_len + n + 1);
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
}

/* Move what can be decoded from raw to body. */
static void decode(struct wsr *r)
{
    size_t off = 0;
    if (!r->head_done) {
        char *e = r->raw_len ? memmem(r->raw, r->raw_len, "\r\n\r\n", 4) : NULL;
        if (!e)
            return;
        size_t hl = (size_t)(e - r->raw) + 4;
        snprintf(r->head, sizeof(r->head), "%.*s", (int)hl, r->raw);
        ck_assert_int_eq(sscanf(r->head, "HTTP/1.%*d %d", &r->status), 1);
        r->chunked = strcasestr(r->head, "Transfer-Encoding: chunked") != NULL;
        r->head_done = true;
        off = hl;
    }
    while (off < r->raw_len && !r->eof) {
        if (!r->chunked) {
            body_add(r, r->raw + off, r->raw_len - off);
            off = r->raw_len;
            break;
        }
        if (r->chunk_crlf) {
            if (r->raw_len - off < 2)
                break;
            ck_assert(r->raw[off] == '\r' && r->raw[off + 1] == '\n');
            off += 2;
            r->chunk_crlf = false;
            continue;
        }
        if (r->chunk_left == 0) {
            char *e = memmem(r->raw + off, r->raw_len - off, "\r\n", 2);
            if (!e)
                break;
            r->chunk_left = strtoul(r->raw + off, NULL, 16);
            off = (size_t)(e - r->raw) + 2;
            if (r->chunk_left == 0)
                r->eof = true;
            continue;
        }
        size_t n = r->raw_len - off < r->chunk_left ? r->raw_len - off : r->chunk_left;
        body_add(r, r->raw + off, n);
        off += n;
        r->chunk_left -= n;
        if (r->chunk_left == 0)
            r->chunk_crlf = true;
    }
    memmove(r->raw, r->raw + off, r->raw_len - off);
    r->raw_len -= off;
}

/* Read what the socket has (waiting up to timeout_ms for something). False on EOF/timeout. */
static bool wsr_fill(struct wsr *r, int timeout_ms)
{
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return false;
    grow(&r->raw, &r->raw_cap, r->raw_len + 262144);
    ssize_t n = read(r->fd, r->raw + r->raw_len, r->raw_cap - r->raw_len);
    if (n <= 0) {
        r->eof = true;
        return false;
    }
    r->raw_len += (size_t)n;
    r->raw_read += (size_t)n;
    decode(r);
    return true;
}

/* The next message (without its '\n'), borrowed until the next call; NULL if none arrived
 * within timeout_ms. */
static char *wsr_next(struct wsr *r, int timeout_ms)
{
    long deadline = tu_now_ms() + timeout_ms;
    for (;;) {
        if (r->body_off < r->body_len) {
            char *s = r->body + r->body_off;
            char *nl = memchr(s, '\n', r->body_len - r->body_off);
            if (nl) {
                *nl = 0;
                r->body_off = (size_t)(nl - r->body) + 1;
                return s;
            }
        }
        long left = deadline - tu_now_ms();
        if (left <= 0 || r->eof || !wsr_fill(r, (int)left))
            return NULL;
    }
}

/* Send a watch request (POST body to path, HTTP/1.1 with Content-Length) on fd. */
static void wsr_start(struct wsr *r, int fd, const char *path, const char *body)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    ck_assert_int_ge(r->fd, 0);
    char hdr[256];
    int k = snprintf(hdr, sizeof(hdr), "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
                     path, strlen(body));
    tu_send_all(r->fd, hdr, (size_t)k);
    tu_send_all(r->fd, body, strlen(body));
}

static void wsr_open_path(struct wsr *r, const char *path, const char *body)
{
    wsr_start(r, tu_connect(srv.port), path, body);
}

static void wsr_open(struct wsr *r, const char *body)
{
    wsr_open_path(r, "/v3/watch", body);
}

static void wsr_close(struct wsr *r)
{
    if (r->fd >= 0)
        close(r->fd);
    free(r->raw);
    free(r->body);
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}

/* ---- writes ---- */

static void post_ok(const char *path, const char *body)
{
    int st;
    char *out = tu_post(srv.port, path, body, &st);
    ck_assert_msg(st == 200, "%s %s: %d %s", path, body, st, out);
    free(out);
}

static void put(const char *key_b64, const char *val_b64)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\"}", key_b64, val_b64);
    post_ok("/v3/kv/put", body);
}

/* Send n requests (bodies from make(i)) over conns keep-alive connections, pipelined, and
 * wait for every 200. Optionally record each answer's header revision in revs[i]. */
typedef void (*body_fn)(size_t i, char *out, size_t cap);

static void burst(const char *path, size_t n, size_t conns, body_fn make, size_t body_cap)
{
    int *fds = calloc(conns, sizeof(*fds));
    size_t *want = calloc(conns, sizeof(*want));
    char *body = malloc(body_cap);
    char *req = malloc(body_cap + 256);
    for (size_t c = 0; c < conns; c++) {
        fds[c] = tu_connect(srv.port);
        ck_assert_int_ge(fds[c], 0);
    }
    for (size_t i = 0; i < n; i++) {
        size_t c = i % conns;
        make(i, body, body_cap);
        size_t bl = strlen(body);
        int k = snprintf(req, 256, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
                         path, bl);
        memcpy(req + k, body, bl);
        tu_send_all(fds[c], req, (size_t)k + bl);
        want[c]++;
    }
    /* Read the answers: count "HTTP/1.1 200" heads, skipping bodies by Content-Length. */
    for (size_t c = 0; c < conns; c++) {
        struct wsr r = {.fd = fds[c]};
        size_t got = 0;
        long deadline = tu_now_ms() + 120000;
        while (got < want[c]) {
            char *e = r.raw_len ? memmem(r.raw, r.raw_len, "\r\n\r\n", 4) : NULL;
            if (e) {
                size_t hl = (size_t)(e - r.raw) + 4;
                ck_assert_msg(strncmp(r.raw, "HTTP/1.1 200", 12) == 0, "%.200s", r.raw);
                char *cl = strcasestr(r.raw, "Content-Length:");
                ck_assert(cl && cl < e);
                size_t bl = strtoul(cl + 15, NULL, 10);
                if (r.raw_len >= hl + bl) {
                    memmove(r.raw, r.raw + hl + bl, r.raw_len - hl - bl);
                    r.raw_len -= hl + bl;
                    got++;
                    continue;
                }
            }
            ck_assert_msg(tu_now_ms() < deadline, "burst: answers missing");
            struct pollfd p = {.fd = fds[c], .events = POLLIN};
            if (poll(&p, 1, 1000) <= 0)
                continue;
            grow(&r.raw, &r.raw_cap, r.raw_len + 65536);
            ssize_t k = read(fds[c], r.raw + r.raw_len, r.raw_cap - r.raw_len);
            ck_assert_int_gt(k, 0);
            r.raw_len += (size_t)k;
        }
        free(r.raw);
        close(fds[c]);
    }
    free(fds);
    free(want);
    free(body);
    free(req);
}

/* ---- metrics ---- */

static long metric(const char *name)
{
    return tu_metric(srv.port, name);
}

/* Wait (bounded) until the gauge reaches want. */
static void wait_metric(const char *name, long want, int timeout_ms)
{
    long deadline = tu_now_ms() + timeout_ms, v = -1;
    while (tu_now_ms() < deadline) {
        if ((v = metric(name)) == want)
            return;
        tu_sleep_ms(20);
    }
    ck_abort_msg("%s stayed %ld, want %ld", name, v, want);
}

/* ---- comparing responses ---- */

static long watch_id_of(const char *line)
{
    const char *p = strstr(line, "\"watch_id\":\"");
    return p ? strtol(p + 12, NULL, 10) : 0;
}

/* Read n messages and compare them with want[0..n) per watch_id (order between watchers is
 * free, as in etcd), each normalised. Then nothing more may arrive within quiet_ms. */
static void expect_msgs(struct wsr *r, const char *const *want, size_t n, int quiet_ms)
{
    char **got = calloc(n, sizeof(*got));
    for (size_t i = 0; i < n; i++) {
        char *m = wsr_next(r, 10000);
        ck_assert_msg(m != NULL, "message %zu of %zu missing (status %d)", i, n, r->status);
        got[i] = tu_norm(m);
    }
    ck_assert_int_eq(r->status, 200);
    bool *used = calloc(n, sizeof(*used));
    for (size_t i = 0; i < n; i++) {
        /* want[i] must be the first unused got line of its watch_id */
        long id = watch_id_of(want[i]);
        size_t j = 0;
        while (j < n && (used[j] || watch_id_of(got[j]) != id))
            j++;
        ck_assert_msg(j < n, "no message for watch %ld:\n want %s", id, want[i]);
        ck_assert_msg(strcmp(got[j], want[i]) == 0, "watch %ld:\n got  %s\n want %s", id, got[j],
                      want[i]);
        used[j] = true;
    }
    if (quiet_ms) {
        char *extra = wsr_next(r, quiet_ms);
        ck_assert_msg(extra == NULL, "unexpected message %s", extra ? extra : "");
    }
    for (size_t i = 0; i < n; i++)
        free(got[i]);
    free(got);
    free(used);
}

#define CREATED(rev) "{\"result\":{\"header\":" H(rev) ",\"created\":true}}"
#define CREATED_ID(rev, id)                                                                        \
    "{\"result\":{\"header\":" H(rev) ",\"watch_id\":\"" #id "\",\"created\":true}}"
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- message kinds (reference §6.3 and the transcript) ---- */

START_TEST(single_key_events)
{
    struct wsr r;
    wsr_open(&r, "{\"create_request\":{\"key\":\"dy8x\"}}");
    const char *w0[] = {CREATED(1)};
    expect_msgs(&r, w0, 1, 0);
    ck_assert_ptr_nonnull(strstr(r.head, "Content-Type: application/json"));
    ck_assert_ptr_nonnull(strstr(r.head, "Grpc-Metadata-Content-Type: application/grpc"));
    ck_assert(r.chunked);
    put("dy8x", "b25l");
    put("dy8x", "dHdv");
    put("b3RoZXI=", "eA==");
    post_ok("/v3/kv/deleterange", "{\"key\":\"dy8x\"}");
    const char *w1[] = {
        "{\"result\":{\"header\":" H(2) ",\"events\":[{\"kv\":{\"key\":\"dy8x\","
                                        "\"create_revision\":\"2\",\"mod_revision\":\"2\","
                                        "\"version\":\"1\",\"value\":\"b25l\"}}]}}",
        "{\"result\":{\"header\":" H(3) ",\"events\":[{\"kv\":{\"key\":\"dy8x\","
                                        "\"create_revision\":\"2\",\"mod_revision\":\"3\","
                                        "\"version\":\"2\",\"value\":\"dHdv\"}}]}}",
        "{\"result\":{\"header\":" H(5) ",\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\":"
                                        "\"dy8x\",\"mod_revision\":\"5\"}}]}}",
    };
    expect_msgs(&r, w1, N_OF(w1), 300);
    wsr_close(&r);
}
END_TEST

/* A lease's keys go in one revision when it is revoked, and when it expires: a watcher sees
 * one DELETE per key, all under that revision (lease issue). */
START_TEST(lease_revoke_and_expiry_delete)
{
    struct wsr r;
    wsr_open(&r, "{\"create_request\":{\"key\":\"bC8=\",\"range_end\":\"bDA=\"}}");
    const char *w0[] = {CREATED(1)};
    expect_msgs(&r, w0, 1, 0);
    post_ok("/v3/lease/grant", "{\"TTL\":60,\"ID\":7}");
    post_ok("/v3/kv/put", "{\"key\":\"bC9h\",\"value\":\"MQ==\",\"lease\":7}");
    post_ok("/v3/kv/put", "{\"key\":\"bC9i\",\"value\":\"Mg==\",\"lease\":7}");
    post_ok("/v3/lease/revoke", "{\"ID\":7}");
#define LKV(k, r, v, l)                                                                            \
    "{\"kv\":{\"key\":\"" k "\",\"create_revision\":\"" #r "\",\"mod_revision\":\"" #r             \
    "\",\"version\":\"1\",\"value\":\"" v "\",\"lease\":\"" #l "\"}}"
#define LDEL(k, r) "{\"type\":\"DELETE\",\"kv\":{\"key\":\"" k "\",\"mod_revision\":\"" #r "\"}}"
    const char *w1[] = {
        "{\"result\":{\"header\":" H(2) ",\"events\":[" LKV("bC9h", 2, "MQ==", 7) "]}}",
        "{\"result\":{\"header\":" H(3) ",\"events\":[" LKV("bC9i", 3, "Mg==", 7) "]}}",
        "{\"result\":{\"header\":" H(4) ",\"events\":[" LDEL("bC9h", 4) "," LDEL("bC9i", 4) "]}}",
    };
    expect_msgs(&r, w1, N_OF(w1), 0);
    /* The minimum TTL (2 s): the DELETE arrives within expect_msgs' 10 s bound. */
    post_ok("/v3/lease/grant", "{\"TTL\":2,\"ID\":8}");
    post_ok("/v3/kv/put", "{\"key\":\"bC9j\",\"value\":\"Mw==\",\"lease\":8}");
    const char *w2[] = {
        "{\"result\":{\"header\":" H(5) ",\"events\":[" LKV("bC9j", 5, "Mw==", 8) "]}}",
        "{\"result\":{\"header\":" H(6) ",\"events\":[" LDEL("bC9j", 6) "]}}",
    };
    expect_msgs(&r, w2, N_OF(w2), 300);
#undef LKV
#undef LDEL
    wsr_close(&r);
    int st;
    char *out = tu_post(srv.port, "/v3/kv/range", "{\"key\":\"bC8=\",\"range_end\":\"bDA=\"}", &st);
    ck_assert_int_eq(st, 200);
    ck_assert_ptr_null(strstr(out, "\"kvs\""));
    free(out);
}
END_TEST

START_TEST(several_watchers_filters_prev_kv_progress)
{
    struct wsr r;
    /* The transcript's body: prefix with prev_kv, NOPUT, NODELETE with id 100, progress. */
    wsr_open(&r, "{\"create_request\":{\"key\":\"dy8=\",\"range_end\":\"dzA=\",\"prev_kv\":true}}"
                 "{\"create_request\":{\"key\":\"dy8=\",\"range_end\":\"dzA=\",\"filters\":["
                 "\"NOPUT\"]}}\n{\"create_request\":{\"key\":\"dy8=\",\"range_end\":\"dzA=\","
                 "\"filters\":[\"NODELETE\"],\"watch_id\":100}}{\"progress_request\":{}}");
    const char *w0[] = {CREATED(1), CREATED_ID(1, 1), CREATED_ID(1, 100),
                        "{\"result\":{\"header\":" H(1) ",\"watch_id\":\"-1\"}}"};
    expect_msgs(&r, w0, N_OF(w0), 0);
    put("dy8y", "YQ==");
    put("dy8y", "Yg==");
    post_ok("/v3/kv/deleterange", "{\"key\":\"dy8=\",\"range_end\":\"dzA=\"}");
#define KV2 "{\"key\":\"dy8y\",\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\""
#define KV3 "{\"key\":\"dy8y\",\"create_revision\":\"2\",\"mod_revision\":\"3\",\"version\":\"2\""
    const char *w1[] = {
        "{\"result\":{\"header\":" H(2) ",\"events\":[{\"kv\":" KV2 ",\"value\":\"YQ==\"}}]}}",
        "{\"result\":{\"header\":" H(2) ",\"watch_id\":\"100\",\"events\":[{\"kv\":" KV2
                                        ",\"value\":\"YQ==\"}}]}}",
        "{\"result\":{\"header\":" H(3) ",\"events\":[{\"kv\":" KV3 ",\"value\":\"Yg==\"},"
                                        "\"prev_kv\":" KV2 ",\"value\":\"YQ==\"}}]}}",
        "{\"result\":{\"header\":" H(3) ",\"watch_id\":\"100\",\"events\":[{\"kv\":" KV3
                                        ",\"value\":\"Yg==\"}}]}}",
        "{\"result\":{\"header\":" H(4) ",\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\":"
                                        "\"dy8y\",\"mod_revision\":\"4\"},\"prev_kv\":" KV3
                                        ",\"value\":\"Yg==\"}}]}}",
        "{\"result\":{\"header\":" H(4) ",\"watch_id\":\"1\",\"events\":[{\"type\":\"DELETE\","
                                        "\"kv\":{\"key\":\"dy8y\",\"mod_revision\":\"4\"}}]}}",
    };
    expect_msgs(&r, w1, N_OF(w1), 300);
    wsr_close(&r);
}
END_TEST

START_TEST(ids_cancel_all_keys_future)
{
    struct wsr r;
    wsr_open(&r, "{\"create_request\":{\"key\":\"eC8=\",\"watch_id\":5}}"
                 "{\"create_request\":{\"key\":\"eC8=\",\"watch_id\":5}}"
                 "{\"cancel_request\":{\"watch_id\":5}}{\"cancel_request\":{\"watch_id\":77}}"
                 "{\"create_request\":{\"range_end\":\"AA==\"}}"
                 "{\"create_request\":{\"key\":\"ZnV0\",\"start_revision\":4}}");
    const char *w0[] = {
        CREATED_ID(1, 5),
        "{\"result\":{\"header\":" H(
            1) ",\"watch_id\":\"-1\",\"created\":true,\"canceled\":true,"
               "\"cancel_reason\":\"mvcc: duplicate watch ID provided on the WatchStream\"}}",
        "{\"result\":{\"header\":" H(1) ",\"watch_id\":\"5\",\"canceled\":true}}",
        CREATED(1),
        CREATED_ID(1, 1),
    };
    expect_msgs(&r, w0, N_OF(w0), 0);
    put("eC8=", "YQ=="); /* 2: the all-keys watcher only */
    put("ZnV0", "YQ=="); /* 3: below the future watcher's start */
    put("ZnV0", "Yg=="); /* 4 */
    const char *w1[] = {
        "{\"result\":{\"header\":" H(2) ",\"events\":[{\"kv\":{\"key\":\"eC8=\","
                                        "\"create_revision\":\"2\",\"mod_revision\":\"2\","
                                        "\"version\":\"1\",\"value\":\"YQ==\"}}]}}",
        "{\"result\":{\"header\":" H(3) ",\"events\":[{\"kv\":{\"key\":\"ZnV0\","
                                        "\"create_revision\":\"3\",\"mod_revision\":\"3\","
                                        "\"version\":\"1\",\"value\":\"YQ==\"}}]}}",
        "{\"result\":{\"header\":" H(4) ",\"events\":[{\"kv\":{\"key\":\"ZnV0\","
                                        "\"create_revision\":\"3\",\"mod_revision\":\"4\","
                                        "\"version\":\"2\",\"value\":\"Yg==\"}}]}}",
        "{\"result\":{\"header\":" H(4) ",\"watch_id\":\"1\",\"events\":[{\"kv\":{\"key\":"
                                        "\"ZnV0\",\"create_revision\":\"3\",\"mod_revision\":\"4\","
                                        "\"version\":\"2\",\"value\":"
                                        "\"Yg==\"}}]}}",
    };
    expect_msgs(&r, w1, N_OF(w1), 300);
    /* An empty range fails the create (etcd's reason). */
    struct wsr e;
    wsr_open(&e, "{\"create_request\":{\"key\":\"Yg==\",\"range_end\":\"YQ==\"}}");
    const char *we[] = {
        "{\"result\":{\"header\":" H(4) ",\"watch_id\":\"-1\",\"created\":true,\"canceled\":true,"
                                        "\"cancel_reason\":\"mvcc: watcher range is empty\"}}"};
    expect_msgs(&e, we, 1, 0);
    wsr_close(&e);
    wsr_close(&r);
}
END_TEST

START_TEST(txn_events_share_a_revision)
{
    struct wsr r;
    wsr_open(&r, "{\"create_request\":{\"key\":\"dA==\",\"range_end\":\"dQ==\"}}"
                 "{\"create_request\":{\"key\":\"dDI=\"}}");
    const char *w0[] = {CREATED(1), CREATED_ID(1, 1)};
    expect_msgs(&r, w0, 2, 0);
    post_ok("/v3/kv/txn", "{\"success\":[{\"request_put\":{\"key\":\"dDE=\",\"value\":\"eA==\"}},"
                          "{\"request_put\":{\"key\":\"dDI=\",\"value\":\"eQ==\"}},"
                          "{\"request_put\":{\"key\":\"eg==\",\"value\":\"eg==\"}}]}");
    const char *w1[] = {
        "{\"result\":{\"header\":" H(2) ",\"events\":[{\"kv\":{\"key\":\"dDE=\","
                                        "\"create_revision\":\"2\",\"mod_revision\":\"2\","
                                        "\"version\":\"1\",\"value\":\"eA==\"}},"
                                        "{\"kv\":{\"key\":\"dDI=\",\"create_revision\":\"2\",\"mod_"
                                        "revision\":\"2\",\"version\":"
                                        "\"1\",\"value\":\"eQ==\"}}]}}",
        "{\"result\":{\"header\":" H(2) ",\"watch_id\":\"1\",\"events\":[{\"kv\":{\"key\":"
                                        "\"dDI=\",\"create_revision\":\"2\",\"mod_revision\":\"2\","
                                        "\"version\":\"1\",\"value\":"
                                        "\"eQ==\"}}]}}",
    };
    expect_msgs(&r, w1, 2, 0);
    /* A multi-key delete is one message too. */
    post_ok("/v3/kv/deleterange", "{\"key\":\"dA==\",\"range_end\":\"dQ==\"}");
    const char *w2[] = {
        "{\"result\":{\"header\":" H(
            3) ",\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\":"
               "\"dDE=\",\"mod_revision\":\"3\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":\"dDI=\","
               "\"mod_revision\":\"3\"}}]}}",
        "{\"result\":{\"header\":" H(3) ",\"watch_id\":\"1\",\"events\":[{\"type\":\"DELETE\","
                                        "\"kv\":{\"key\":\"dDI=\",\"mod_revision\":\"3\"}}]}}",
    };
    expect_msgs(&r, w2, 2, 300);
    wsr_close(&r);
}
END_TEST

START_TEST(history_and_compaction)
{
    for (int i = 0; i < 5; i++)
        put("YQ==", "dg=="); /* 2..6 */
    post_ok("/v3/kv/compaction", "{\"revision\":4}");
    struct wsr r;
    /* Below the compaction point: created, then cancelled with compact_revision (header
     * without revision). */
    wsr_open(&r, "{\"create_request\":{\"key\":\"YQ==\",\"start_revision\":2,\"watch_id\":3}}");
    const char *w0[] = {CREATED_ID(6, 3), "{\"result\":{\"header\":" HNOREV ",\"watch_id\":\"3\","
                                          "\"canceled\":true,\"compact_revision\":\"4\"}}"};
    expect_msgs(&r, w0, 2, 300);
    /* The compacted watcher keeps its id until cancelled, as in etcd. */
    wsr_close(&r);
    /* At the compaction point: the history from there, in one message with the current
     * revision in its header, prev_kv read from the store. */
    wsr_open(&r, "{\"create_request\":{\"key\":\"YQ==\",\"start_revision\":5,\"prev_kv\":true}}");
#define KVA(m, v)                                                                                  \
    "{\"key\":\"YQ==\",\"create_revision\":\"2\",\"mod_revision\":\"" #m "\",\"version\":\"" #v    \
    "\",\"value\":\"dg==\"}"
    const char *w1[] = {
        CREATED(6),
        "{\"result\":{\"header\":" H(6) ",\"events\":[{\"kv\":" KVA(5, 4) ",\"prev_kv\":" KVA(
            4, 3) "},{\"kv\":" KVA(6, 5) ",\"prev_kv\":" KVA(5, 4) "}]}}"};
    expect_msgs(&r, w1, 2, 300);
    wsr_close(&r);
    /* A negative start is below etcd's initial compaction revision (-1). */
    wsr_open(&r, "{\"create_request\":{\"key\":\"YQ==\",\"start_revision\":-5}}");
    const char *w2[] = {CREATED(6), "{\"result\":{\"header\":" HNOREV ",\"canceled\":true,"
                                    "\"compact_revision\":\"4\"}}"};
    expect_msgs(&r, w2, 2, 0);
    wsr_close(&r);
}
END_TEST

START_TEST(progress_notify)
{
    tu_server_stop(&srv);
    const char *flags[] = {"--experimental-watch-progress-notify-interval", "150ms", NULL};
    tu_server_start(&srv, flags);
    struct wsr r;
    wsr_open(&r, "{\"create_request\":{\"key\":\"YQ==\",\"progress_notify\":true,\"watch_id\":7}}"
                 "{\"create_request\":{\"key\":\"Yg==\"}}");
    const char *w0[] = {CREATED_ID(1, 7), CREATED(1),
                        "{\"result\":{\"header\":" H(1) ",\"watch_id\":\"7\"}}",
                        "{\"result\":{\"header\":" H(1) ",\"watch_id\":\"7\"}}"};
    expect_msgs(&r, w0, N_OF(w0), 0);
    wsr_close(&r);
    /* Malformed durations are refused at start. */
    char *out;
    const char *bad[] = {"--experimental-watch-progress-notify-interval", "10x", NULL};
    ck_assert_int_eq(tu_run(bad, NULL, 10000, &out), 2);
    ck_assert_ptr_nonnull(strstr(out, "want a duration"));
    free(out);
}
END_TEST

START_TEST(body_errors_and_silence)
{
    struct tu_resp resp;
    /* A first message that does not decode: 500, code 2 (reference §4.3). */
    tu_http(srv.port, "POST", "/v3/watch", "{\"create_request\":", &resp);
    ck_assert_int_eq(resp.status, 500);
    ck_assert_str_eq(resp.body, "{\"error\":\"unexpected EOF\",\"message\":\"unexpected EOF\","
                                "\"code\":2}");
    ck_assert_str_eq(tu_header(&resp, "Content-Type"), "application/json");
    tu_resp_free(&resp);
    tu_http(srv.port, "POST", "/v3/watch", "{\"create_request\":{\"key\":5}}", &resp);
    ck_assert_int_eq(resp.status, 500);
    ck_assert_ptr_nonnull(strstr(resp.body, "json: cannot unmarshal number into Go value of "
                                            "type []uint8\",\"code\":2"));
    tu_resp_free(&resp);
    tu_http(srv.port, "POST", "/v3/watch", "[1]", &resp);
    ck_assert_int_eq(resp.status, 500);
    tu_resp_free(&resp);
    /* Two members of the union: refused (etcd picks one at random). */
    tu_http(srv.port, "POST", "/v3/watch",
            "{\"create_request\":{\"key\":\"YQ==\"},\"progress_request\":{}}", &resp);
    ck_assert_int_eq(resp.status, 500);
    tu_resp_free(&resp);
    /* A later message that does not decode ends the request side only. */
    struct wsr r;
    wsr_open(&r, "{\"create_request\":{\"key\":\"Zm9v\"}} garbage {\"create_request\":{}}");
    const char *w0[] = {CREATED(1)};
    expect_msgs(&r, w0, 1, 300);
    wsr_close(&r);
    /* {} and null are ignored; {} then a create answers the create. */
    wsr_open(&r, "{}null{\"create_request\":{\"key\":\"Zm9v\"}}");
    expect_msgs(&r, w0, 1, 0);
    wsr_close(&r);
    /* Nothing to answer: no status line at all, and the stream stays registered. */
    wait_metric("etcd_debugging_mvcc_watch_stream_total", 0, 10000);
    const char *silent[] = {"", "{}", "{\"cancel_request\":{\"watch_id\":3}}"};
    for (size_t i = 0; i < N_OF(silent); i++) {
        wsr_open(&r, silent[i]);
        ck_assert_ptr_null(wsr_next(&r, 300));
        ck_assert_uint_eq(r.raw_len, 0);
        ck_assert(!r.head_done);
        wait_metric("etcd_debugging_mvcc_watch_stream_total", 1, 10000);
        wsr_close(&r);
        wait_metric("etcd_debugging_mvcc_watch_stream_total", 0, 10000);
    }
    /* /v3beta is an alias; other methods are refused. */
    wsr_open_path(&r, "/v3beta/watch", "{\"create_request\":{\"key\":\"Zm9v\"}}");
    expect_msgs(&r, w0, 1, 0);
    wsr_close(&r);
    tu_http(srv.port, "GET", "/v3/watch", NULL, &resp);
    ck_assert_int_eq(resp.status, 405);
    tu_resp_free(&resp);
    /* HTTP/1.0: the stream is sent unchunked (and would end by closing). */
    memset(&r, 0, sizeof(r));
    r.fd = tu_connect(srv.port);
    const char *r10 = "POST /v3/watch HTTP/1.0\r\nContent-Length: 33\r\n\r\n"
                      "{\"create_request\":{\"key\":\"Zm9v\"}}";
    tu_send_all(r.fd, r10, strlen(r10));
    expect_msgs(&r, w0, 1, 0);
    ck_assert(!r.chunked);
    put("Zm9v", "YQ==");
    char *m = wsr_next(&r, 10000);
    ck_assert_msg(m && strstr(m, "\"events\":[{\"kv\":{\"key\":\"Zm9v\""), "%s", m ? m : "");
    wsr_close(&r);
}
END_TEST

/* fragment: pieces of a response bigger than the gRPC limit (max-request-bytes + 512 KiB). */
static void big_put(size_t i, char *out, size_t cap)
{
    /* key f/<i>, value 90,000 bytes of 'v' (base64 "dnZ2") */
    int k = snprintf(out, cap, "{\"key\":\"Zi8%c\",\"value\":\"", "wxyz01234"[i]);
    size_t o = (size_t)k;
    for (size_t j = 0; j < 30000; j++) {
        memcpy(out + o, "dnZ2", 4);
        o += 4;
    }
    snprintf(out + o, cap - o, "\"}");
}

static size_t count_events(const char *m)
{
    size_t n = 0;
    for (const char *p = m; (p = strstr(p, "{\"kv\":")); p++)
        n++;
    return n;
}

START_TEST(fragment)
{
    tu_server_stop(&srv);
    const char *flags[] = {"--max-request-bytes", "100000", NULL};
    tu_server_start(&srv, flags);
    burst("/v3/kv/put", 8, 1, big_put, 130000); /* revisions 2..9, 90 kB each */
    struct wsr r;
    wsr_open(&r,
             "{\"create_request\":{\"key\":\"Zi8=\",\"range_end\":\"ZjA=\",\"start_revision\":2,"
             "\"fragment\":true}}");
    const char *w0[] = {CREATED(9)};
    expect_msgs(&r, w0, 1, 0);
    /* etcd's cut: events are added while the piece stays under 624,288 bytes. */
    char *m = wsr_next(&r, 10000);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_nonnull(strstr(m, ",\"fragment\":true,\"events\":["));
    ck_assert_uint_eq(count_events(m), 6);
    m = wsr_next(&r, 10000);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_null(strstr(m, "fragment"));
    ck_assert_uint_eq(count_events(m), 2);
    wsr_close(&r);
    /* Without fragment: one message. */
    wsr_open(&r,
             "{\"create_request\":{\"key\":\"Zi8=\",\"range_end\":\"ZjA=\",\"start_revision\":2}}");
    expect_msgs(&r, w0, 1, 0);
    m = wsr_next(&r, 10000);
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(count_events(m), 8);
    wsr_close(&r);
}
END_TEST

/* ---- load ---- */

static void seq_put(size_t i, char *out, size_t cap)
{
    /* key "h" (aA==), value = i */
    snprintf(out, cap, "{\"key\":\"aA==\",\"value\":\"%s\"}", i % 2 ? "MQ==" : "MA==");
}

/* Read every event of r up to revision last; check one event per revision, contiguous from
 * first. Returns the number of events. */
static size_t read_revisions(struct wsr *r, int64_t first, int64_t last, int timeout_ms)
{
    int64_t next = first;
    long deadline = tu_now_ms() + timeout_ms;
    while (next <= last) {
        ck_assert_msg(tu_now_ms() < deadline, "stuck at revision %lld", (long long)next);
        char *m = wsr_next(r, 2000);
        if (!m)
            continue;
        for (char *p = m; (p = strstr(p, "\"mod_revision\":\"")); p++) {
            int64_t rev = strtoll(p + 16, NULL, 10);
            ck_assert_msg(rev == next, "got revision %lld, want %lld", (long long)rev,
                          (long long)next);
            next++;
        }
    }
    return (size_t)(next - first);
}

START_TEST(history_replay_thousands)
{
    enum { N = 3000 };
    burst("/v3/kv/put", N, 8, seq_put, 256); /* revisions 2..N+1 */
    struct wsr r;
    wsr_open(&r, "{\"create_request\":{\"key\":\"aA==\",\"start_revision\":1}}");
    char *m = wsr_next(&r, 10000);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_nonnull(strstr(m, "\"created\":true"));
    ck_assert_uint_eq(read_revisions(&r, 2, N + 1, 60000), N);
    /* Then live. */
    put("aA==", "eA==");
    ck_assert_uint_eq(read_revisions(&r, N + 2, N + 2, 10000), 1);
    wsr_close(&r);
}
END_TEST

static void raise_fd_limit(void)
{
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 4096 && rl.rlim_max > rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void burst_put(size_t i, char *out, size_t cap)
{
    snprintf(out, cap, "{\"key\":\"Yi8=\",\"value\":\"%c%c==\"}", 'A' + (int)(i % 26),
             'A' + (int)(i / 26 % 26));
}

START_TEST(thousand_streams)
{
    enum { STREAMS = 1000, PUTS = 100, BATCH = 100 };
    tu_server_stop(&srv);
    raise_fd_limit(); /* the server inherits it */
    tu_server_start(&srv, NULL);
    struct wsr *rs = calloc(STREAMS, sizeof(*rs));
    for (size_t b = 0; b < STREAMS; b += BATCH) {
        for (size_t i = b; i < b + BATCH; i++)
            wsr_open(&rs[i], "{\"create_request\":{\"key\":\"Yi8=\"}}");
        for (size_t i = b; i < b + BATCH; i++) {
            char *m = wsr_next(&rs[i], 20000);
            ck_assert_msg(m && strstr(m, "\"created\":true"), "stream %zu not created", i);
        }
    }
    ck_assert_int_eq(metric("etcd_debugging_mvcc_watcher_total"), STREAMS);
    long t0 = tu_now_ms();
    burst("/v3/kv/put", PUTS, 10, burst_put, 256); /* revisions 2..PUTS+1 */
    for (size_t i = 0; i < STREAMS; i++)
        ck_assert_uint_eq(read_revisions(&rs[i], 2, PUTS + 1, 60000), PUTS);
    fprintf(stderr, "thousand_streams: %d events delivered in %ld ms\n", STREAMS * PUTS,
            tu_now_ms() - t0);
    for (size_t i = 0; i < STREAMS; i++)
        ck_assert_ptr_null(wsr_next(&rs[i], 0));
    for (size_t i = 0; i < STREAMS; i++)
        wsr_close(&rs[i]);
    free(rs);
    wait_metric("etcd_debugging_mvcc_watcher_total", 0, 20000);
}
END_TEST

/* A txn putting 100 keys s/00..s/99 with 256-byte values: 100 events at one revision. */
static void txn_100(size_t i, char *out, size_t cap)
{
    (void)i;
    size_t o = (size_t)snprintf(out, cap, "{\"success\":[");
    for (int k = 0; k < 100; k++) {
        char key[8];
        snprintf(key, sizeof(key), "s/%02d", k);
        /* base64 of "s/NN" is 8 chars: encode by hand via a small table */
        static const char *b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        unsigned char in[4] = {(unsigned char)key[0], (unsigned char)key[1], (unsigned char)key[2],
                               (unsigned char)key[3]};
        char kb[9];
        kb[0] = b64[in[0] >> 2];
        kb[1] = b64[((in[0] & 3) << 4) | (in[1] >> 4)];
        kb[2] = b64[((in[1] & 15) << 2) | (in[2] >> 6)];
        kb[3] = b64[in[2] & 63];
        kb[4] = b64[in[3] >> 2];
        kb[5] = b64[(in[3] & 3) << 4];
        kb[6] = kb[7] = '=';
        kb[8] = 0;
        o += (size_t)snprintf(out + o, cap - o, "%s{\"request_put\":{\"key\":\"%s\",\"value\":\"",
                              k ? "," : "", kb);
        for (int j = 0; j < 256 / 4 * 4 / 3 + 1 && o + 8 < cap; j++)
            o += (size_t)snprintf(out + o, cap - o, "AAAA");
        o += (size_t)snprintf(out + o, cap - o, "\"}}");
    }
    snprintf(out + o, cap - o, "]}");
}

/* Write total events while r does not read; watch the server's buffered bytes. Returns the
 * largest value seen. */
static long write_while_stalled(size_t txns)
{
    long max_buffered = 0;
    for (size_t done = 0; done < txns; done += 50) {
        burst("/v3/kv/txn", 50, 5, txn_100, 64 << 10);
        long b = metric("metastore_watch_stream_buffered_bytes");
        if (b > max_buffered)
            max_buffered = b;
    }
    return max_buffered;
}

/* A watch on s/ from a client that will not read. */
static void open_stalled(struct wsr *r)
{
    wsr_start(r, tu_connect_rcvbuf(srv.port, 32 << 10), "/v3/watch",
              "{\"create_request\":{\"key\":\"cy8=\",\"range_end\":\"czA=\"}}");
    char *m = wsr_next(r, 10000);
    ck_assert_msg(m && strstr(m, "\"created\":true"), "no created");
}

/* Restart the server with flags and a small ASan quarantine (tu_server_start_lean). */
static void restart_for_memory(const char *const *flags)
{
    tu_server_stop(&srv);
    tu_server_start_lean(&srv, flags);
}

START_TEST(slow_reader_catches_up)
{
    enum { TXNS = 1000, LIMIT = 256 << 10 };
    const char *flags[] = {"--watch-stream-buffer-bytes", "262144", NULL};
    restart_for_memory(flags);
    struct wsr r;
    open_stalled(&r);
    long rss0 = tu_rss_anon_kb(srv.pid);
    long max_buffered = write_while_stalled(TXNS); /* 100k events, ~50 MB of JSON */
    long rss1 = tu_rss_anon_kb(srv.pid);
    fprintf(stderr, "slow reader: max buffered %ld bytes, RssAnon %ld -> %ld kB, victims %ld\n",
            max_buffered, rss0, rss1, metric("metastore_watch_victims_total"));
    /* The limit plus one response in flight (a history slice is about 1 MiB at most). */
    ck_assert_int_le(max_buffered, LIMIT + (2 << 20));
    ck_assert_int_ge(metric("metastore_watch_victims_total"), 1);
    ck_assert_int_lt(rss1 - rss0, 32 << 10);
    /* Now read: every event, in order, 100 per revision. */
    int64_t want_rev = 2;
    int per_rev = 0;
    size_t events = 0;
    long deadline = tu_now_ms() + 120000;
    while (events < (size_t)TXNS * 100) {
        ck_assert_msg(tu_now_ms() < deadline, "only %zu events", events);
        char *m = wsr_next(&r, 2000);
        if (!m)
            continue;
        for (char *p = m; (p = strstr(p, "\"mod_revision\":\"")); p++) {
            int64_t rev = strtoll(p + 16, NULL, 10);
            ck_assert_msg(rev == want_rev, "event %zu: revision %lld want %lld", events,
                          (long long)rev, (long long)want_rev);
            if (++per_rev == 100) {
                per_rev = 0;
                want_rev++;
            }
            events++;
        }
    }
    ck_assert_ptr_null(wsr_next(&r, 200));
    wsr_close(&r);
    wait_metric("etcd_debugging_mvcc_watcher_total", 0, 10000);
}
END_TEST

START_TEST(slow_reader_compacted)
{
    enum { TXNS = 300 };
    tu_server_stop(&srv);
    const char *flags[] = {"--watch-stream-buffer-bytes", "65536", NULL};
    tu_server_start(&srv, flags);
    struct wsr r;
    open_stalled(&r);
    write_while_stalled(TXNS);
    ck_assert_int_ge(metric("metastore_watch_victims_total"), 1);
    char body[64];
    snprintf(body, sizeof(body), "{\"revision\":%d}", TXNS + 1);
    post_ok("/v3/kv/compaction", body);
    /* The events sent before it fell behind arrive in order, then the cancel. */
    int64_t want_rev = 2;
    int per_rev = 0;
    long deadline = tu_now_ms() + 60000;
    for (;;) {
        ck_assert_msg(tu_now_ms() < deadline, "no compaction cancel");
        char *m = wsr_next(&r, 2000);
        if (!m)
            continue;
        if (strstr(m, "\"canceled\":true")) {
            char *n = tu_norm(m);
            char want[256];
            snprintf(want, sizeof(want),
                     "{\"result\":{\"header\":" HNOREV ",\"canceled\":true,"
                     "\"compact_revision\":\"%d\"}}",
                     TXNS + 1);
            ck_assert_str_eq(n, want);
            free(n);
            break;
        }
        for (char *p = m; (p = strstr(p, "\"mod_revision\":\"")); p++) {
            ck_assert_int_eq(strtoll(p + 16, NULL, 10), want_rev);
            if (++per_rev == 100) {
                per_rev = 0;
                want_rev++;
            }
        }
    }
    ck_assert_int_eq(per_rev, 0);
    ck_assert_int_lt(want_rev, TXNS + 1);
    ck_assert_ptr_null(wsr_next(&r, 200));
    wsr_close(&r);
}
END_TEST

#define BUFFERED "metastore_watch_stream_buffered_bytes"

START_TEST(cheap_requests_wait_for_the_reader)
{
    enum { N = 60000 };
    const char *flags[] = {"--watch-stream-buffer-bytes", "65536", NULL};
    restart_for_memory(flags);
    /* 60,000 progress requests in one body: 1.4 MB in, 8.4 MB of answers out. */
    size_t len = N * 23 + 64;
    char *body = malloc(len);
    size_t o = (size_t)snprintf(body, len, "{\"create_request\":{\"key\":\"YQ==\"}}");
    for (int i = 0; i < N; i++)
        o += (size_t)snprintf(body + o, len - o, "{\"progress_request\":{}}");
    int fd = tu_connect_rcvbuf(srv.port, 32 << 10);
    struct wsr r;
    wsr_start(&r, fd, "/v3/watch", body);
    free(body);
    /* The server handles the body's messages in one go until the stream's output holds the
     * limit, then waits for the reader; output under the low mark (a quarter of the limit)
     * resumes it. So once the output is past the low mark the server has stopped: it must
     * not hold more than the limit plus one answer, and most requests must still be owed. */
    long buffered = 0;
    for (int64_t end = tu_now_ms() + 30000; (buffered = metric(BUFFERED)) <= 65536 / 4;
         tu_sleep_ms(10))
        ck_assert_msg(tu_now_ms() < end, "the stream's output never filled: %ld bytes", buffered);
    long stx, srx, ctx, crx;
    ck_assert(tu_tcp_queues(srv.port, tu_local_port(fd), &stx, &srx));
    ck_assert(tu_tcp_queues(tu_local_port(fd), srv.port, &ctx, &crx));
    /* What the server has answered so far (nothing is read yet): the bytes buffered, plus those
     * in the kernel on either side (a send buffer grows up to tcp_wmem's maximum, 4 MiB). */
    long made = buffered + stx + crx;
    ck_assert_int_le(buffered, 65536 + 4096);
    size_t got = 0;
    long deadline = tu_now_ms() + 60000;
    while (got < N + 1) {
        ck_assert_msg(tu_now_ms() < deadline, "only %zu answers", got);
        char *m = wsr_next(&r, 2000);
        if (m)
            got++;
    }
    ck_assert_ptr_null(wsr_next(&r, 200));
    /* A quarter of the answers or more were made only once the reader read. */
    fprintf(stderr, "cheap requests: %ld bytes buffered, %ld + %ld in the kernel: %ld of %zu\n",
            buffered, stx, crx, made, r.raw_read);
    ck_assert_msg(made < (long)(r.raw_read / 4 * 3), "%ld of %zu bytes answered unread", made,
                  r.raw_read);
    wsr_close(&r);
}
END_TEST

/* ---- the server-wide budget (--watch-total-buffer-bytes) ---- */

/* A put of key "L" (TA==) with a value of n bytes (base64 of 'A's). */
static char *large_put_body(size_t n)
{
    size_t b64 = (n + 2) / 3 * 4;
    char *body = malloc(b64 + 64);
    size_t o = (size_t)sprintf(body, "{\"key\":\"TA==\",\"value\":\"");
    memset(body + o, 'Q', b64); /* "QUFB" would be exact; any base64 text decodes */
    o += b64;
    strcpy(body + o, "\"}");
    return body;
}

/* A small put and a range from another client; returns how long both took (ms). */
static long other_client_ms(void)
{
    long t0 = tu_now_ms();
    post_ok("/v3/kv/put", "{\"key\":\"b3RoZXI=\",\"value\":\"eA==\"}");
    post_ok("/v3/kv/range", "{\"key\":\"b3RoZXI=\"}");
    return tu_now_ms() - t0;
}

START_TEST(total_budget_slow_streams)
{
    enum { STREAMS = 32, PUTS = 6, VALUE = 1000000, BUDGET = 8 << 20 };
    const char *flags[] = {"--watch-total-buffer-bytes", "8388608", NULL};
    raise_fd_limit();
    restart_for_memory(flags);
    ck_assert_int_eq(metric("metastore_watch_buffer_budget_bytes"), BUDGET);
    struct wsr *rs = calloc(STREAMS, sizeof(*rs));
    for (size_t i = 0; i < STREAMS; i++) {
        wsr_start(&rs[i], tu_connect_rcvbuf(srv.port, 32 << 10), "/v3/watch",
                  "{\"create_request\":{\"key\":\"TA==\"}}");
        char *m = wsr_next(&rs[i], 10000);
        ck_assert_msg(m && strstr(m, "\"created\":true"), "stream %zu not created", i);
    }
    long rss0 = tu_rss_anon_kb(srv.pid), rss_max = rss0, buffered_max = 0, other_max = 0;
    char *body = large_put_body(VALUE);
    long revs[PUTS];
    for (int p = 0; p < PUTS; p++) { /* nobody reads */
        int status;
        char *out = tu_post(srv.port, "/v3/kv/put", body, &status);
        ck_assert_int_eq(status, 200);
        revs[p] = tu_json_num(out, "revision", 0);
        free(out);
        long t = other_client_ms();
        other_max = t > other_max ? t : other_max;
        long b = metric("metastore_watch_stream_buffered_bytes");
        buffered_max = b > buffered_max ? b : buffered_max;
        long rss = tu_rss_anon_kb(srv.pid);
        rss_max = rss > rss_max ? rss : rss_max;
    }
    free(body);
    fprintf(stderr,
            "budget: %d streams stalled: max buffered %ld bytes, RssAnon %ld -> max %ld kB, "
            "other client's put+range at most %ld ms, victims %ld\n",
            STREAMS, buffered_max, rss0, rss_max, other_max,
            metric("metastore_watch_victims_total"));
    ck_assert_int_le(buffered_max, BUDGET + (64 << 10)); /* control responses are not refused */
    ck_assert_int_ge(metric("metastore_watch_victims_total"), 1);
    ck_assert_int_lt(rss_max - rss0, 32 << 10);
    /* Now every stream reads: each gets every event, in order. */
    size_t *next = calloc(STREAMS, sizeof(*next)); /* index into revs */
    size_t done = 0;
    struct pollfd *pf = calloc(STREAMS, sizeof(*pf));
    long deadline = tu_now_ms() + 120000;
    while (done < STREAMS) {
        ck_assert_msg(tu_now_ms() < deadline, "only %zu streams complete", done);
        for (size_t i = 0; i < STREAMS; i++)
            pf[i] = (struct pollfd){.fd = next[i] == PUTS ? -1 : rs[i].fd, .events = POLLIN};
        if (poll(pf, STREAMS, 1000) <= 0)
            continue;
        for (size_t i = 0; i < STREAMS; i++) {
            if (!(pf[i].revents & POLLIN))
                continue;
            wsr_fill(&rs[i], 0);
            char *m;
            while (next[i] < PUTS && (m = wsr_next(&rs[i], 0))) {
                for (char *q = m; (q = strstr(q, "\"mod_revision\":\"")); q++) {
                    long rev = strtol(q + 16, NULL, 10);
                    ck_assert_msg(next[i] < PUTS && rev == revs[next[i]],
                                  "stream %zu: revision %ld, want %ld", i, rev,
                                  next[i] < PUTS ? revs[next[i]] : -1L);
                    if (++next[i] == PUTS)
                        done++;
                }
            }
        }
    }
    for (size_t i = 0; i < STREAMS; i++)
        ck_assert_ptr_null(wsr_next(&rs[i], 0));
    wait_metric("metastore_watch_stream_buffered_bytes", 0, 10000);
    for (size_t i = 0; i < STREAMS; i++)
        wsr_close(&rs[i]);
    free(rs);
    free(next);
    free(pf);
    wait_metric("etcd_debugging_mvcc_watch_stream_total", 0, 10000);
    ck_assert_int_eq(metric("metastore_watch_stream_buffered_bytes"), 0);
}
END_TEST

START_TEST(clients_killed_mid_stream)
{
    enum { IDLE = 50, BUSY = 50 };
    struct wsr idle[IDLE], busy[BUSY];
    for (int i = 0; i < IDLE; i++) {
        wsr_open(&idle[i], "{\"create_request\":{\"key\":\"aQ==\"}}{\"create_request\":"
                           "{\"key\":\"aQ==\",\"start_revision\":1}}");
        ck_assert_ptr_nonnull(wsr_next(&idle[i], 10000));
    }
    for (int i = 0; i < BUSY; i++) {
        wsr_open(&busy[i], "{\"create_request\":{\"key\":\"aA==\",\"prev_kv\":true}}");
        ck_assert_ptr_nonnull(wsr_next(&busy[i], 10000));
    }
    ck_assert_int_eq(metric("etcd_debugging_mvcc_watcher_total"), 2 * IDLE + BUSY);
    /* Idle clients vanish: some with a reset, some with a plain close. */
    for (int i = 0; i < IDLE; i++) {
        if (i % 2) {
            struct linger lg = {1, 0};
            setsockopt(idle[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        wsr_close(&idle[i]);
    }
    wait_metric("etcd_debugging_mvcc_watcher_total", BUSY, 10000);
    /* Busy clients vanish while events are being written to them. */
    for (int round = 0; round < 4; round++) {
        burst("/v3/kv/put", 100, 4, seq_put, 256);
        for (int i = round * BUSY / 4; i < (round + 1) * BUSY / 4; i++) {
            struct linger lg = {1, 0};
            if (i % 2)
                setsockopt(busy[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            wsr_close(&busy[i]);
        }
    }
    burst("/v3/kv/put", 10, 1, seq_put, 256);
    wait_metric("etcd_debugging_mvcc_watcher_total", 0, 10000);
    wait_metric("etcd_debugging_mvcc_watch_stream_total", 0, 10000);
    /* Stray bytes after the body are dropped, not parsed. */
    struct wsr r;
    wsr_open(&r, "{\"create_request\":{\"key\":\"aQ==\"}}");
    ck_assert_ptr_nonnull(wsr_next(&r, 10000));
    tu_send_all(r.fd, "GET / HTTP/1.1\r\n\r\ngarbage", 25);
    put("aQ==", "eA==");
    char *m = wsr_next(&r, 10000);
    ck_assert_msg(m && strstr(m, "\"events\""), "no event after stray bytes");
    wsr_close(&r);
    wait_metric("etcd_debugging_mvcc_watch_stream_total", 0, 10000);
    /* Stopping the server with streams open (answered, silent, with output waiting) is clean:
     * tu_server_stop checks the exit status, which ASan turns non-zero on leaks. */
    struct wsr open[3];
    wsr_open(&open[0], "{\"create_request\":{\"key\":\"aQ==\",\"start_revision\":1}}");
    wsr_open(&open[1], "{}");
    wsr_open(&open[2], "{\"create_request\":{\"key\":\"aA==\",\"start_revision\":1}}");
    ck_assert_ptr_nonnull(wsr_next(&open[0], 10000));
    ck_assert_ptr_nonnull(wsr_next(&open[2], 10000));
    wait_metric("etcd_debugging_mvcc_watch_stream_total", 3, 10000);
    tu_server_stop_keep(&srv, 1);
    for (int i = 0; i < 3; i++)
        wsr_close(&open[i]);
    tu_server_restart(&srv, NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("watch_integ");
    struct {
        const char *name;
        const TTest *tests[8];
        int timeout;
    } cases[] = {
        {"kinds",
         {single_key_events, several_watchers_filters_prev_kv_progress, ids_cancel_all_keys_future,
          txn_events_share_a_revision, history_and_compaction, lease_revoke_and_expiry_delete,
          NULL},
         60},
        {"options", {progress_notify, body_errors_and_silence, fragment, NULL}, 60},
        {"load",
         {history_replay_thousands, thousand_streams, clients_killed_mid_stream, NULL},
         240},
        {"slow",
         {slow_reader_catches_up, slow_reader_compacted, cheap_requests_wait_for_the_reader, NULL},
         300},
        {"budget", {total_budget_slow_streams, NULL}, 120},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, cases[i].timeout);
        for (int j = 0; cases[i].tests[j]; j++)
            tcase_add_test(tc, cases[i].tests[j]);
        suite_add_tcase(s, tc);
    }
    return tu_run_suite(s);
}

/* test_fields.c - table-driven differential test against real etcd: every field of every
 * request message, given every kind of JSON value, sent to a fresh etcd and a fresh metastore;
 * status and body must match once header IDs are normalised. The cases are generated from two
 * tables, MSGS (where a field sits: route, the text around it, a base field that makes the
 * request otherwise valid) and VALUES (what it is given), so adding a field is one word.
 *
 * Requests that crash etcd 3.4 (reference §17) are never sent to it: etcd_unsafe() names them,
 * and they go to metastore alone, which must answer them without a server error. Differences
 * that are etcd defects we deliberately do not copy are listed in KNOWN with the reason.
 */
#define _GNU_SOURCE
#include "etcd_proc.h"
#include "testutil.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One of each JSON type, and the edges of the integer and bytes decoders. */
static const char *const VALUES[] = {
    "\"Zm9v\"",
    "\"\"",
    "\"\\u0031\"",
    "\"!\"",
    "\"1\"",
    "0",
    "1",
    "-1",
    "2",
    "1.5",
    "1e2",
    "2147483648",
    "99999999999999999999",
    "true",
    "false",
    "null",
    "[]",
    "[102,111]",
    "[\"a\"]",
    "{}",
    "{\"a\":1}",
};

enum {
    M_STATUS_ONLY = 1, /* a 200's body depends on the server (sizes, URLs): compare the status */
    M_STREAM = 2,      /* a watch stream: compare the first answers */
    M_LEASES = 4,      /* grant leases 1 and 2 before each case, revoke every lease after */
};

/* A message: body = pre "{" [base ","] "field":value "}" post. The base is left out when it
 * sets the field under test. extra are values tried on top of VALUES (enum names). */
static const struct msg {
    const char *path;
    const char *pre, *base, *post;
    unsigned flags;
    const char *fields[24];
    const char *extra[6];
} MSGS[] = {
#define RANGE_FIELDS                                                                               \
    "key", "range_end", "rangeEnd", "limit", "revision", "sort_order", "sortOrder", "sort_target", \
        "sortTarget", "serializable", "keys_only", "keysOnly", "count_only", "countOnly",          \
        "min_mod_revision", "minModRevision", "max_mod_revision", "maxModRevision",                \
        "min_create_revision", "minCreateRevision", "max_create_revision", "maxCreateRevision"
#define RANGE_EXTRA "\"DESCEND\"", "\"\\u0041SCEND\"", "\"MOD\"", "\"ay8=\"", "\"AA==\""
#define PUT_FIELDS                                                                                 \
    "key", "value", "lease", "prev_kv", "prevKv", "ignore_value", "ignoreValue", "ignore_lease",   \
        "ignoreLease"
#define DEL_FIELDS "key", "range_end", "rangeEnd", "prev_kv", "prevKv"
#define TXN_FIELDS "compare", "success", "failure"
    {"/v3/kv/range", "", "\"key\":\"ay8=\"", "", 0, {RANGE_FIELDS}, {RANGE_EXTRA}},
    {"/v3/kv/put", "", "\"key\":\"cHV0\"", "", 0, {PUT_FIELDS}, {NULL}},
    {"/v3/kv/deleterange", "", "\"key\":\"ZGVs\"", "", 0, {DEL_FIELDS}, {"\"AA==\""}},
    {"/v3/kv/txn", "", NULL, "", 0, {TXN_FIELDS}, {"[{}]", "[null]", "[1]"}},
    {"/v3/kv/txn",
     "{\"compare\":[",
     "\"key\":\"ay9h\"",
     "]}",
     0,
     {"result", "target", "key", "range_end", "rangeEnd", "version", "create_revision",
      "createRevision", "mod_revision", "modRevision", "value", "lease"},
     {"\"VALUE\"", "\"GREATER\"", "\"NOT_EQUAL\"", "\"MOD\"", "\"dmFsLWE=\""}},
    {"/v3/kv/txn",
     "{\"success\":[",
     NULL,
     "]}",
     0,
     {"request_range", "requestRange", "request_put", "requestPut", "request_delete_range",
      "requestDeleteRange", "request_txn", "requestTxn"},
     {"{\"key\":\"ay9h\"}"}},
    {"/v3/kv/txn",
     "{\"success\":[{\"request_range\":",
     "\"key\":\"ay8=\"",
     "}]}",
     0,
     {RANGE_FIELDS},
     {RANGE_EXTRA}},
    {"/v3/kv/txn",
     "{\"success\":[{\"request_put\":",
     "\"key\":\"dHB1dA==\"",
     "}]}",
     0,
     {PUT_FIELDS},
     {NULL}},
    {"/v3/kv/txn",
     "{\"failure\":[{\"request_delete_range\":",
     "\"key\":\"dGRlbA==\"",
     "}]}",
     0,
     {DEL_FIELDS},
     {"\"AA==\""}},
    {"/v3/kv/txn", "{\"success\":[{\"request_txn\":", NULL, "}]}", 0, {TXN_FIELDS}, {"[{}]"}},
    {"/v3/kv/compaction", "", NULL, "", 0, {"revision", "physical"}, {NULL}},
    {"/v3/lease/grant", "", "\"ID\":\"7\"", "", M_LEASES, {"TTL", "ID"}, {"60"}},
    {"/v3/lease/revoke", "", NULL, "", M_LEASES, {"ID"}, {NULL}},
    {"/v3/lease/timetolive", "", "\"ID\":\"1\"", "", M_LEASES, {"ID", "keys"}, {NULL}},
    {"/v3/lease/leases", "", NULL, "", M_LEASES, {"x"}, {NULL}},
    {"/v3/maintenance/status", "", NULL, "", M_STATUS_ONLY, {"x"}, {NULL}},
    {"/v3/maintenance/alarm",
     "",
     NULL,
     "",
     0,
     {"action", "memberID", "alarm"},
     {"\"GET\"", "\"NOSPACE\"", "\"CORRUPT\""}},
    {"/v3/cluster/member/list", "", NULL, "", M_STATUS_ONLY, {"x"}, {NULL}},
    {"/v3/watch",
     "",
     NULL,
     "",
     M_STREAM,
     {"create_request", "createRequest", "cancel_request", "cancelRequest"},
     {"{\"key\":\"Zm9v\"}", "{\"watch_id\":1}"}},
    {"/v3/watch",
     "{\"create_request\":",
     "\"key\":\"bm9oaXN0\"",
     "}",
     M_STREAM,
     {"key", "range_end", "rangeEnd", "start_revision", "startRevision", "progress_notify",
      "progressNotify", "filters", "prev_kv", "prevKv", "watch_id", "watchId", "fragment"},
     {"[\"NOPUT\"]", "[1,0]", "[\"x\"]", "\"AA==\"", "\"NOPUT\""}},
    {"/v3/watch", "{\"cancel_request\":", NULL, "}", M_STREAM, {"watch_id", "watchId"}, {NULL}},
};

/* Differences that are etcd defects we do not copy: a case matching path, field and value is
 * compared and reported, but does not fail the test. */
static const struct {
    const char *path, *field, *value, *reason;
} KNOWN[] = {
    /* A null in a list of messages panics etcd's handler: the connection is dropped without
     * an answer. metastore answers InvalidArgument with Go's decoding error. */
    {"/v3/kv/txn", "compare", "[null]", "etcd drops the connection"},
    {"/v3/kv/txn", "success", "[null]", "etcd drops the connection"},
    {"/v3/kv/txn", "failure", "[null]", "etcd drops the connection"},
};

/* Keys the cases read and compare against, written to both servers first. */
static const char *const SETUP[][2] = {
    {"/v3/kv/put", "{\"key\":\"ay9h\",\"value\":\"dmFsLWE=\"}"},
    {"/v3/kv/put", "{\"key\":\"ay9i\",\"value\":\"dmFsLWI=\"}"},
    {"/v3/kv/put", "{\"key\":\"Zm9v\",\"value\":\"YmFy\"}"},
    {"/v3/kv/put", "{\"key\":\"ay9h\",\"value\":\"dmFsLWEy\"}"},
};

/* Whole requests compared after the generated ones: the revision each response inside a txn
 * reports (the store's before the first write, the new one after), nested txns included. */
static const char *const FIXED[][2] = {
    {"/v3/kv/txn",
     "{\"success\":[{\"request_range\":{\"key\":\"ay9h\"}},{\"request_delete_range\":{"
     "\"key\":\"bm9uZQ==\"}},{\"request_txn\":{\"success\":[{\"request_range\":{"
     "\"key\":\"ay9h\",\"count_only\":true}}]}},{\"request_put\":{\"key\":\"ZnJ2\"}},{"
     "\"request_range\":{\"key\":\"ZnJ2\"}},{\"request_delete_range\":{\"key\":"
     "\"bm9uZQ==\"}},{\"request_txn\":{\"success\":[{\"request_range\":{\"key\":"
     "\"ay9h\",\"count_only\":true}}]}}]}"},
    {"/v3/kv/txn", "{\"success\":[{\"request_txn\":{\"success\":[{\"request_delete_range\":{"
                   "\"key\":\"ZnJ2\"}},{\"request_range\":{\"key\":\"ZnJ2\"}}]}}]}"},
};

static bool is_field(const char *base, const char *field)
{
    size_t n = strlen(field);
    return base && base[0] == '"' && strncmp(base + 1, field, n) == 0 && base[n + 1] == '"';
}

/* An integer literal that fits int32 (what an enum field decodes to), into *v. */
static bool int32_literal(const char *s, long long *v)
{
    char *end;
    errno = 0;
    *v = strtoll(s, &end, 10);
    return *s && !*end && !errno && *v >= -2147483648LL && *v <= 2147483647LL;
}

/* Why etcd 3.4 must not get this request (reference §17), or NULL. */
static const char *etcd_unsafe(const char *path, const char *field, const char *value)
{
    long long v;
    if ((strcmp(field, "sort_target") == 0 || strcmp(field, "sortTarget") == 0) &&
        int32_literal(value, &v) && (v < 0 || v > 4))
        return "a range sorted by an unknown target panics etcd";
    if (strcmp(path, "/v3/maintenance/alarm") == 0 && strcmp(field, "action") == 0 &&
        ((int32_literal(value, &v) && v != 0) || strstr(value, "ACTIVATE")))
        return "ACTIVATE with no alarm crashes etcd (for good), other actions panic it";
    return NULL;
}

static const char *known(const char *path, const char *field, const char *value)
{
    for (size_t i = 0; i < sizeof(KNOWN) / sizeof(KNOWN[0]); i++)
        if (KNOWN[i].path && strcmp(KNOWN[i].path, path) == 0 &&
            strcmp(KNOWN[i].field, field) == 0 && strcmp(KNOWN[i].value, value) == 0)
            return KNOWN[i].reason;
    return NULL;
}

/* ---- answers ---- */

struct answer {
    int status;
    char *body; /* normalised */
};

/* A lease ID etcd picked itself (not written in the request) is random: replace it by R. */
static void norm_lease_id(char *body, const char *req)
{
    for (char *p = body; (p = strstr(p, "\"ID\":\"")) != NULL;) {
        p += 6;
        size_t n = strspn(p, "0123456789");
        char id[32];
        snprintf(id, sizeof(id), "%.*s", (int)(n < 30 ? n : 30), p);
        if (n && !strstr(req, id)) {
            *p = 'R';
            memmove(p + 1, p + n, strlen(p + n) + 1);
        }
    }
}

/* What a watch stream answers up to the sentinel watcher's "created" (run_case appends it
 * to every watch case, and etcd answers a stream's messages in order), or up to the end of the
 * stream, or 2 s. The status is the HTTP status. */
#define SENTINEL      "{\"create_request\":{\"key\":\"eg==\",\"watch_id\":777}}"
#define SENTINEL_SEEN "\"watch_id\":\"777\""

static void stream_answer(int port, const char *body, struct answer *out)
{
    int fd = tu_connect(port);
    ck_assert_int_ge(fd, 0);
    char hdr[160];
    int k = snprintf(hdr, sizeof(hdr),
                     "POST /v3/watch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     strlen(body));
    tu_send_all(fd, hdr, (size_t)k);
    tu_send_all(fd, body, strlen(body));
    size_t cap = 1 << 16, len = 0;
    char *raw = malloc(cap);
    ck_assert_ptr_nonnull(raw);
    raw[0] = 0;
    long start = tu_now_ms();
    const char *seen = NULL;
    while (!(seen && strchr(seen, '\n')) && tu_now_ms() - start < 2000 && len + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t got = read(fd, raw + len, cap - len - 1);
        if (got <= 0)
            break;
        len += (size_t)got;
        raw[len] = 0;
        seen = strstr(raw, SENTINEL_SEEN);
    }
    close(fd);
    out->status = 0;
    sscanf(raw, "HTTP/1.1 %d", &out->status);
    /* Keep the JSON lines only (chunk sizes and headers are framing), up to the sentinel's:
     * what comes after it (history, compaction) is timed by etcd's 100 ms catch-up loop. */
    char *json = calloc(1, len + 1);
    ck_assert_ptr_nonnull(json);
    size_t o = 0;
    for (char *line = strtok(raw, "\r\n"); line; line = strtok(NULL, "\r\n")) {
        if (line[0] != '{')
            continue;
        o += (size_t)sprintf(json + o, "%s\n", line);
        if (strstr(line, SENTINEL_SEEN))
            break;
    }
    out->body = tu_norm(json);
    free(json);
    free(raw);
}

static void answer(int port, const struct msg *m, const char *body, struct answer *out)
{
    if (m->flags & M_STREAM) {
        stream_answer(port, body, out);
        return;
    }
    struct tu_resp r;
    tu_http(port, "POST", m->path, body, &r);
    out->status = r.status;
    out->body = tu_norm(r.body ? r.body : "");
    tu_resp_free(&r);
    if (strcmp(m->path, "/v3/lease/grant") == 0)
        norm_lease_id(out->body, body);
    if ((m->flags & M_STATUS_ONLY) && out->status == 200)
        out->body[0] = 0;
}

/* ---- lease fixtures ---- */

static void leases_before(int port)
{
    for (int id = 1; id <= 2; id++) {
        char b[64];
        snprintf(b, sizeof(b), "{\"ID\":%d,\"TTL\":60}", id);
        free(tu_post(port, "/v3/lease/grant", b, NULL));
    }
    /* etcd's remaining TTL is never the whole TTL (time has passed since the grant, and it
     * truncates); metastore's clock is the loop's, the same millisecond for both requests. */
    tu_sleep_ms(2);
}

static void leases_after(int port)
{
    char *list = tu_post(port, "/v3/lease/leases", "{}", NULL);
    for (char *p = list; (p = strstr(p, "\"ID\":\"")) != NULL;) {
        p += 6;
        char b[64];
        snprintf(b, sizeof(b), "{\"ID\":%lld}", strtoll(p, NULL, 10));
        free(tu_post(port, "/v3/lease/revoke", b, NULL));
    }
    free(list);
}

/* ---- the run ---- */

struct tally {
    size_t compared, mismatches, known, ms_only;
};

/* Send body to both servers and count the outcome. */
static void compare(const int ports[2], const struct msg *m, const char *body, const char *field,
                    const char *value, struct tally *t)
{
    struct answer a[2];
    for (int k = 0; k < 2; k++) {
        if (m->flags & M_LEASES)
            leases_before(ports[k]);
        answer(ports[k], m, body, &a[k]);
        if (m->flags & M_LEASES)
            leases_after(ports[k]);
    }
    t->compared++;
    if (a[0].status != a[1].status || strcmp(a[0].body, a[1].body) != 0) {
        const char *why = known(m->path, field, value);
        if (why)
            t->known++;
        else
            t->mismatches++;
        fprintf(stderr, "%s %s %s\n  etcd      %d %s\n  metastore %d %s\n",
                why ? "KNOWN" : "MISMATCH", m->path, body, a[0].status, a[0].body, a[1].status,
                a[1].body);
        if (why)
            fprintf(stderr, "  (%s)\n", why);
    }
    free(a[0].body);
    free(a[1].body);
}

static void run_case(const int ports[2], const struct msg *m, const char *field, const char *value,
                     struct tally *t)
{
    char body[1024];
    bool with_base = m->base && !is_field(m->base, field);
    snprintf(body, sizeof(body), "%s{%s%s\"%s\":%s}%s", m->pre, with_base ? m->base : "",
             with_base ? "," : "", field, value, m->post);
    /* Watch cases end with a second watcher, so that an ignored request still gets an answer
     * to wait for. */
    if (m->flags & M_STREAM)
        strncat(body, SENTINEL, sizeof(body) - strlen(body) - 1);
    const char *unsafe = etcd_unsafe(m->path, field, value);
    if (unsafe) {
        /* Not for etcd; metastore must answer it, and not with a server error. */
        struct answer a;
        answer(ports[1], m, body, &a);
        ck_assert_msg(a.status > 0 && a.status < 500, "%s %s: %d %s", m->path, body, a.status,
                      a.body);
        free(a.body);
        t->ms_only++;
        return;
    }
    compare(ports, m, body, field, value, t);
}

START_TEST(every_field_every_type)
{
    const char *etcd = etcd_bin();
    ck_assert_msg(etcd, "no etcd binary"); /* main skips the suite without one */
    char *dir = tu_mkdtemp("ms-compat-fields");
    int cport;
    pid_t pid = etcd_start(etcd, dir, &cport);
    struct tu_server ms;
    tu_server_start(&ms, NULL);
    int ports[2] = {cport, ms.port};
    for (size_t i = 0; i < sizeof(SETUP) / sizeof(SETUP[0]); i++)
        for (int k = 0; k < 2; k++)
            free(tu_post(ports[k], SETUP[i][0], SETUP[i][1], NULL));
    struct tally t = {0};
    long start = tu_now_ms();
    for (size_t i = 0; i < sizeof(MSGS) / sizeof(MSGS[0]); i++) {
        const struct msg *m = &MSGS[i];
        for (size_t f = 0; f < sizeof(m->fields) / sizeof(m->fields[0]) && m->fields[f]; f++) {
            for (size_t v = 0; v < sizeof(VALUES) / sizeof(VALUES[0]); v++)
                run_case(ports, m, m->fields[f], VALUES[v], &t);
            for (size_t v = 0; v < sizeof(m->extra) / sizeof(m->extra[0]) && m->extra[v]; v++)
                run_case(ports, m, m->fields[f], m->extra[v], &t);
        }
    }
    static const struct msg fixed = {.path = ""};
    for (size_t i = 0; i < sizeof(FIXED) / sizeof(FIXED[0]); i++) {
        struct msg m = fixed;
        m.path = FIXED[i][0];
        compare(ports, &m, FIXED[i][1], "", "", &t);
    }
    /* Nested txns up to the op budget and past it. */
    static const size_t levels[] = {32, 33, 127, 128, 129};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        struct msg m = fixed;
        m.path = "/v3/kv/txn";
        char *deep = tu_nested("", levels[i], "{\"success\":[{\"request_txn\":", "{}", "}]}", "");
        compare(ports, &m, deep, "", "", &t);
        free(deep);
    }
    etcd_stop(pid);
    tu_server_stop(&ms);
    tu_rmtree(dir);
    free(dir);
    printf("compat_fields: %zu requests compared with etcd in %ld ms, %zu mismatches, %zu known "
           "differences, %zu sent to metastore only\n",
           t.compared, tu_now_ms() - start, t.mismatches, t.known, t.ms_only);
    ck_assert_uint_eq(t.mismatches, 0);
}
END_TEST

int main(void)
{
    int missing = etcd_missing("compat_fields");
    if (missing >= 0)
        return missing;
    Suite *s = suite_create("compat_fields");
    TCase *tc = tcase_create("fields");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, every_field_every_type);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}

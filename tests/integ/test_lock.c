/* test_lock.c - integration: the lock and election services under load and failure. 50
 * clients contending for one lock (holders never overlap, grants in create-revision order), a
 * holder's and a waiter's lease expiring, observe (every leader change once and in order, a
 * disconnect frees the observer), an observer that stops reading (bounded memory, in order,
 * ending with the latest value), a waiter that disconnects, and 10,000 waiters on one lock
 * (memory per waiter, one wakeup per grant). Every loop is bounded in count and time.
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static struct tu_server srv;

static void setup(void)
{
    tu_server_start(&srv, NULL);
}

/* For memory bounds: tu_server_start_lean. */
static void setup_lean(void)
{
    tu_server_start_lean(&srv, NULL);
}

static void teardown(void)
{
    tu_server_stop(&srv);
}

static int64_t grant(int ttl)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"TTL\":%d}", ttl);
    char *got = tu_post(srv.port, "/v3/lease/grant", body, NULL);
    const char *p = strstr(got, "\"ID\":\"");
    ck_assert_ptr_nonnull(p);
    int64_t id = strtoll(p + 6, NULL, 10);
    free(got);
    return id;
}

/* Send a lock request on a fresh connection and return it unread. */
static int lock_send(const char *name_b64, int64_t lease)
{
    char body[256], req[512];
    int n = snprintf(body, sizeof(body), "{\"name\":\"%s\",\"lease\":\"%lld\"}", name_b64,
                     (long long)lease);
    int m = snprintf(req, sizeof(req),
                     "POST /v3/lock/lock HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     "Content-Length: %d\r\n\r\n%s",
                     n, body);
    int fd = tu_connect(srv.port);
    tu_send_all(fd, req, (size_t)m);
    return fd;
}

static char *read_all(int fd, int timeout_ms)
{
    size_t len;
    return tu_read_all(fd, timeout_ms, &len);
}

static int64_t metric(const char *name)
{
    struct tu_resp r;
    tu_http(srv.port, "GET", "/metrics", NULL, &r);
    char pat[128];
    snprintf(pat, sizeof(pat), "\n%s ", name);
    const char *p = strstr(r.body, pat);
    int64_t v = p ? strtoll(p + strlen(pat), NULL, 10) : -1;
    tu_resp_free(&r);
    return v;
}

/* Poll (bounded) until metric name equals want. */
static bool metric_becomes(const char *name, int64_t want, int timeout_ms)
{
    int64_t end = tu_now_ms() + timeout_ms;
    while (metric(name) != want) {
        if (tu_now_ms() > end)
            return false;
        tu_sleep_ms(20);
    }
    return true;
}

static int key_count(const char *key_b64)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"key\":\"%s\",\"count_only\":true}", key_b64);
    char *got = tu_post(srv.port, "/v3/kv/range", body, NULL);
    int n = (int)tu_json_num(got, "count", 0);
    free(got);
    return n;
}

static void unlock(const char *key_b64)
{
    char body[256];
    int st;
    snprintf(body, sizeof(body), "{\"key\":\"%s\"}", key_b64);
    free(tu_post(srv.port, "/v3/lock/unlock", body, &st));
    ck_assert_int_eq(st, 200);
}

/* ---- 50 clients, 2,000 acquisitions ---- */

#define CLIENTS 50
#define ROUNDS  40 /* per client: 2,000 in all */

struct shared {
    volatile int holders;
    volatile int overlaps;
    volatile int grants;
    volatile int errors;
    int64_t create_rev[CLIENTS * ROUNDS]; /* by grant order */
};

static void client(struct shared *sh, int i)
{
    char lease_body[64], name[16];
    (void)i;
    tu_b64("contended", name);
    snprintf(lease_body, sizeof(lease_body), "{\"TTL\":300}");
    char *got = tu_post(srv.port, "/v3/lease/grant", lease_body, NULL);
    const char *p = strstr(got, "\"ID\":\"");
    int64_t lease = p ? strtoll(p + 6, NULL, 10) : 0;
    free(got);
    for (int r = 0; r < ROUNDS && lease; r++) {
        char body[256], key[128];
        int st;
        snprintf(body, sizeof(body), "{\"name\":\"%s\",\"lease\":\"%lld\"}", name,
                 (long long)lease);
        got = tu_post(srv.port, "/v3/lock/lock", body, &st);
        if (st != 200 || !tu_json_str(got, "key", key, sizeof(key))) {
            __sync_fetch_and_add(&sh->errors, 1);
            free(got);
            return;
        }
        free(got);
        if (__sync_add_and_fetch(&sh->holders, 1) != 1)
            __sync_fetch_and_add(&sh->overlaps, 1);
        /* While holding: read our key's create revision, the fencing token. */
        snprintf(body, sizeof(body), "{\"key\":\"%s\"}", key);
        got = tu_post(srv.port, "/v3/kv/range", body, NULL);
        const char *c = strstr(got, "\"create_revision\":\"");
        int g = __sync_fetch_and_add(&sh->grants, 1);
        sh->create_rev[g] = c ? strtoll(c + 19, NULL, 10) : -1;
        free(got);
        __sync_fetch_and_sub(&sh->holders, 1);
        snprintf(body, sizeof(body), "{\"key\":\"%s\"}", key);
        free(tu_post(srv.port, "/v3/lock/unlock", body, &st));
        if (st != 200)
            __sync_fetch_and_add(&sh->errors, 1);
    }
}

START_TEST(contention)
{
    struct shared *sh =
        mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(sh, MAP_FAILED);
    memset(sh, 0, sizeof(*sh));
    pid_t pids[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            alarm(240);
            client(sh, i);
            _exit(0);
        }
    }
    for (int i = 0; i < CLIENTS; i++) {
        int status;
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "client %d failed", i);
    }
    ck_assert_int_eq(sh->errors, 0);
    ck_assert_int_eq(sh->overlaps, 0);
    ck_assert_int_eq(sh->grants, CLIENTS * ROUNDS);
    /* FIFO: each grant goes to the oldest waiter, so create revisions rise in grant order. */
    for (int g = 1; g < sh->grants; g++)
        ck_assert_msg(sh->create_rev[g] > sh->create_rev[g - 1], "grant %d: %lld after %lld", g,
                      (long long)sh->create_rev[g], (long long)sh->create_rev[g - 1]);
    ck_assert(metric_becomes("metastore_lock_waiters", 0, 5000));
    munmap(sh, sizeof(*sh));
}
END_TEST

/* ---- leases that expire ---- */

START_TEST(holder_expires)
{
    char name[32];
    tu_b64("expiring", name);
    int64_t short_lease = grant(2), long_lease = grant(300);
    int fd = lock_send(name, short_lease);
    char *got = read_all(fd, 10000);
    close(fd);
    ck_assert_ptr_nonnull(strstr(got, " 200 "));
    free(got);
    /* The holder never keeps its lease alive: once it expires the waiter is granted. */
    fd = lock_send(name, long_lease);
    got = read_all(fd, 20000);
    close(fd);
    ck_assert_msg(strstr(got, " 200 ") && strstr(got, "\"key\":"), "%s", got);
    free(got);
}
END_TEST

/* Lock name (plain text) with lease; the key (base64) into key. */
static void lock_now(const char *name, int64_t lease, char *key, size_t cap)
{
    char b64[64], body[256];
    int st;
    tu_b64(name, b64);
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"lease\":\"%lld\"}", b64, (long long)lease);
    char *got = tu_post(srv.port, "/v3/lock/lock", body, &st);
    ck_assert_msg(st == 200 && tu_json_str(got, "key", key, cap), "%s", got);
    free(got);
}

/* Keys under "name/". */
static int lock_keys(const char *name)
{
    char pfx[64], end[64], b64p[96], b64e[96], rb[256];
    snprintf(pfx, sizeof(pfx), "%s/", name);
    snprintf(end, sizeof(end), "%s0", name);
    tu_b64(pfx, b64p);
    tu_b64(end, b64e);
    snprintf(rb, sizeof(rb), "{\"key\":\"%s\",\"range_end\":\"%s\",\"count_only\":true}", b64p,
             b64e);
    char *got = tu_post(srv.port, "/v3/kv/range", rb, NULL);
    int n = (int)tu_json_num(got, "count", 0);
    free(got);
    return n;
}

START_TEST(waiter_expires)
{
    char name[32], key[128];
    tu_b64("waiting", name);
    int64_t holder = grant(300), waiter = grant(2);
    lock_now("waiting", holder, key, sizeof(key));
    int fd = lock_send(name, waiter);
    char *got = read_all(fd, 20000);
    close(fd);
    ck_assert_msg(strstr(got, " 500 ") && strstr(got, "etcdserver: requested lease not found"),
                  "%s", got);
    free(got);
    /* Its key went with its lease; only the holder's remains. */
    ck_assert_int_eq(lock_keys("waiting"), 1);
    ck_assert_int_eq(key_count(key), 1);
    ck_assert(metric_becomes("metastore_lock_waiters", 0, 5000));
}
END_TEST

/* A waiter that disconnects gives its place up: its key is deleted, nothing stays. */
START_TEST(disconnect)
{
    char name[32], key[128];
    tu_b64("leaving", name);
    int64_t holder = grant(300), waiter = grant(300);
    lock_now("leaving", holder, key, sizeof(key));
    int fd = lock_send(name, waiter);
    ck_assert(metric_becomes("metastore_lock_waiters", 1, 5000));
    ck_assert_int_eq(lock_keys("leaving"), 2);
    close(fd);
    ck_assert(metric_becomes("metastore_lock_waiters", 0, 5000));
    int64_t stop = tu_now_ms() + 5000;
    while (lock_keys("leaving") != 1 && tu_now_ms() < stop)
        tu_sleep_ms(20);
    ck_assert_int_eq(lock_keys("leaving"), 1);
    unlock(key);
}
END_TEST

/* ---- observe ---- */

/* Observe election name_b64 on connection fd, once the server has the observer; returns fd. */
static int observe_on(int fd, const char *name_b64)
{
    char body[128], req[512];
    int n = snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name_b64);
    int m = snprintf(
        req, sizeof(req),
        "POST /v3/election/observe HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s", n, body);
    tu_send_all(fd, req, (size_t)m);
    ck_assert(metric_becomes("metastore_lock_waiters", 1, 5000));
    return fd;
}

/* Campaign in election name_b64 with lease and value_b64 and win at once: the leader's key
 * (room for 128) and its rev (room for 32), as the answer gives them. */
static void campaign(const char *name_b64, int64_t lease, const char *value_b64, char *key,
                     char *rev)
{
    char body[512];
    int st;
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"lease\":\"%lld\",\"value\":\"%s\"}", name_b64,
             (long long)lease, value_b64);
    char *got = tu_post(srv.port, "/v3/election/campaign", body, &st);
    ck_assert_int_eq(st, 200);
    ck_assert(tu_json_str(got, "key", key, 128));
    ck_assert(tu_json_str(got, "rev", rev, 32));
    free(got);
}

START_TEST(observe)
{
    char name[32], body[512], req[512];
    tu_b64("obs", name);
    int obs = observe_on(tu_connect(srv.port), name);
    int64_t l1 = grant(300), l2 = grant(300);
    /* The first leader, a second candidate waiting behind it, three proclamations, then the
     * leader resigns and the second takes over. */
    int st;
    char key[128], rev[32];
    campaign(name, l1, "djA=", key, rev);
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"lease\":\"%lld\",\"value\":\"bjI=\"}", name,
             (long long)l2);
    int n = (int)strlen(body);
    int m = snprintf(req, sizeof(req),
                     "POST /v3/election/campaign HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     "Content-Length: %d\r\n\r\n%s",
                     n, body);
    int second = tu_connect(srv.port);
    tu_send_all(second, req, (size_t)m);
    const char *vals[] = {"djE=", "djI=", "djM="};
    for (int i = 0; i < 3; i++) {
        snprintf(body, sizeof(body),
                 "{\"leader\":{\"name\":\"%s\",\"key\":\"%s\",\"rev\":\"%s\",\"lease\":\"%lld\"},"
                 "\"value\":\"%s\"}",
                 name, key, rev, (long long)l1, vals[i]);
        free(tu_post(srv.port, "/v3/election/proclaim", body, &st));
        ck_assert_int_eq(st, 200);
    }
    snprintf(body, sizeof(body),
             "{\"leader\":{\"name\":\"%s\",\"key\":\"%s\",\"rev\":\"%s\",\"lease\":\"%lld\"}}",
             name, key, rev, (long long)l1);
    free(tu_post(srv.port, "/v3/election/resign", body, &st));
    ck_assert_int_eq(st, 200);
    char *got = read_all(second, 10000);
    close(second);
    ck_assert_msg(strstr(got, " 200 ") && strstr(got, "\"leader\":"), "%s", got);
    free(got);
    /* Every change once, in order: v0 v1 v2 v3 by the first leader, then n2. */
    got = read_all(obs, 1500);
    const char *want[] = {"\"value\":\"djA=\"", "\"value\":\"djE=\"", "\"value\":\"djI=\"",
                          "\"value\":\"djM=\"", "\"value\":\"bjI=\""};
    const char *p = got;
    for (int i = 0; i < 5; i++) {
        const char *q = strstr(p, want[i]);
        ck_assert_msg(q, "missing %s after offset %td in %s", want[i], p - got, got);
        p = q + 1;
    }
    int lines = 0;
    for (const char *q = got; (q = strstr(q, "{\"result\":")); q++)
        lines++;
    ck_assert_int_eq(lines, 5);
    free(got);
    close(obs);
    ck_assert(metric_becomes("metastore_lock_waiters", 0, 5000));
}
END_TEST

/* ---- an observer that stops reading ---- */

#define FIRST_B64 "Zmlyc3Q=" /* the campaign's value, "first" */

/* The number a proclaimed value starts with ("0042:..."), from the base64 at p; -1 for the
 * campaign's value. */
static int value_index(const char *p)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (strncmp(p, FIRST_B64, 8) == 0)
        return -1;
    char raw[7] = {0};
    for (int g = 0; g < 2; g++) {
        unsigned v = 0;
        for (int i = 0; i < 4; i++) {
            const char *c = strchr(a, p[g * 4 + i]);
            ck_assert_msg(c && *c, "not base64 at %.8s", p);
            v = v << 6 | (unsigned)(c - a);
        }
        raw[g * 3] = (char)(v >> 16);
        raw[g * 3 + 1] = (char)(v >> 8);
        raw[g * 3 + 2] = (char)v;
    }
    return atoi(raw);
}

#define OBSERVE_SENT                                                                               \
    "grpc_server_msg_sent_total{grpc_method=\"Observe\",grpc_service=\"v3electionpb.Election\","   \
    "grpc_type=\"server_stream\"}"

START_TEST(observe_slow_reader)
{
    /* An observer that stops reading while the leader proclaims 400 values of 128 KiB (about
     * 68 MB of stream): the server holds a bounded amount for it, keeping only the newest value
     * aside; once the client reads, it gets values in order and ends with the last one. */
    enum { N = 400, VAL = 128 << 10 };
    char name[32];
    tu_b64("slow", name);
    int obs = observe_on(tu_connect_rcvbuf(srv.port, 32 << 10), name);
    int64_t lease = grant(300);
    int st;
    char key[128], rev[32];
    campaign(name, lease, FIRST_B64, key, rev);
    char *val = malloc(VAL + 1), *proclaim = malloc(VAL * 4 / 3 + 1024);
    ck_assert(val && proclaim);
    long rss0 = tu_rss_anon_kb(srv.pid);
    for (int i = 0; i < N; i++) {
        memset(val, 'a' + i % 26, VAL);
        val[VAL] = 0;
        snprintf(val, 6, "%04d:", i);
        val[5] = 'x';
        int k = snprintf(proclaim, 1024,
                         "{\"leader\":{\"name\":\"%s\",\"key\":\"%s\",\"rev\":\"%s\",\"lease\":"
                         "\"%lld\"},\"value\":\"",
                         name, key, rev, (long long)lease);
        tu_b64(val, proclaim + k);
        strcat(proclaim + k, "\"}");
        free(tu_post(srv.port, "/v3/election/proclaim", proclaim, &st));
        ck_assert_int_eq(st, 200);
    }
    long rss1 = tu_rss_anon_kb(srv.pid);
    long sent = metric(OBSERVE_SENT);
    fprintf(stderr, "observe slow reader: RssAnon %ld -> %ld kB over %d proclamations, %ld sent\n",
            rss0, rss1, N, sent);
    /* Unbounded, the stream holds every value (76 MB more resident); bounded, a few of them
     * and the allocator's slack (7-10 MB with ASan). */
    ck_assert_int_lt(rss1 - rss0, 24 << 10);
    ck_assert_int_lt(sent, N / 2);
    /* Now read: values in order, the last one last. */
    size_t cap = 1 << 20, len = 0;
    char *in = malloc(cap);
    ck_assert_ptr_nonnull(in);
    int last = -2, values = 0;
    size_t scanned = 0;
    for (int64_t end = tu_now_ms() + 20000; last != N - 1 && tu_now_ms() < end;) {
        if (len + 65536 > cap) {
            /* keep only what is not yet scanned */
            memmove(in, in + scanned, len - scanned);
            len -= scanned;
            scanned = 0;
            if (len + 65536 > cap)
                ck_assert_ptr_nonnull(in = realloc(in, cap *= 2));
        }
        struct pollfd pfd = {.fd = obs, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t r = read(obs, in + len, cap - len - 1);
        ck_assert_int_gt(r, 0);
        len += (size_t)r;
        in[len] = 0;
        /* each chunk is one whole line; scan the values whose 8 base64 bytes arrived */
        const char *p;
        while ((p = strstr(in + scanned, "\"value\":\"")) && (size_t)(p - in) + 17 <= len) {
            int k = value_index(p + 9);
            ck_assert_msg(k > last, "value %d after %d", k, last);
            last = k;
            values++;
            scanned = (size_t)(p - in) + 17;
        }
    }
    free(in);
    ck_assert_int_eq(last, N - 1);
    fprintf(stderr, "observe slow reader: %d values read, the last %d\n", values, last);
    ck_assert_int_le(metric(OBSERVE_SENT), sent + 2);
    /* The server is fine, and frees the observer with its connection. */
    free(tu_post(srv.port, "/v3/kv/put", "{\"key\":\"YQ==\",\"value\":\"Yg==\"}", &st));
    ck_assert_int_eq(st, 200);
    close(obs);
    ck_assert(metric_becomes("metastore_lock_waiters", 0, 5000));
    free(val);
    free(proclaim);
}
END_TEST

/* ---- 10,000 waiters ---- */

#define MANY 10000

START_TEST(many_waiters)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < MANY + 256) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    ck_assert_msg(rl.rlim_cur >= MANY + 256, "needs %d descriptors", MANY + 256);
    char name[32], key[128], body[256];
    tu_b64("crowd", name);
    int64_t holder = grant(600);
    int st;
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"lease\":\"%lld\"}", name, (long long)holder);
    char *got = tu_post(srv.port, "/v3/lock/lock", body, &st);
    ck_assert(tu_json_str(got, "key", key, sizeof(key)));
    free(got);
    long before = tu_rss_kb(srv.pid);
    /* Each waiter on its own connection with a fresh session lease (lease 0). */
    int *fds = malloc(MANY * sizeof(*fds));
    ck_assert_ptr_nonnull(fds);
    for (int i = 0; i < MANY; i++) {
        char req[256];
        int n = snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
        int m = snprintf(req, sizeof(req),
                         "POST /v3/lock/lock HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                         "Content-Length: %d\r\n\r\n%s",
                         n, body);
        fds[i] = tu_connect(srv.port);
        tu_send_all(fds[i], req, (size_t)m);
    }
    ck_assert(metric_becomes("metastore_lock_waiters", MANY, 240000));
    long during = tu_rss_kb(srv.pid);
    long per_waiter = (during - before) * 1024 / MANY;
    fprintf(stderr,
            "many_waiters: RSS %ld kB before, %ld kB with %d waiters (%ld B each), "
            "%lld keys watched\n",
            before, during, MANY, per_waiter, (long long)metric("metastore_lock_watched_keys"));
    /* Bounded: connection, request arena, waiter, key and index entry (ASan included). */
    ck_assert_msg(per_waiter < 64 * 1024, "%ld bytes per waiter", per_waiter);
    ck_assert_int_le(metric("metastore_lock_watched_keys"), 2 * MANY);
    /* Each release wakes exactly the next waiter: O(1) per grant, not O(waiters). */
    int64_t w0 = metric("metastore_lock_wakeups_total");
    int64_t g0 = metric("metastore_lock_granted_total");
    unlock(key);
    for (int i = 0; i < 5; i++) {
        ck_assert(metric_becomes("metastore_lock_granted_total", g0 + 1 + i, 20000));
        ck_assert_int_eq(metric("metastore_lock_wakeups_total"), w0 + 1 + i);
        got = read_all(fds[i], 10000);
        ck_assert_msg(strstr(got, " 200 "), "waiter %d: %s", i, got);
        const char *b = strstr(got, "\r\n\r\n");
        ck_assert(b && tu_json_str(b, "key", key, sizeof(key)));
        free(got);
        close(fds[i]);
        fds[i] = -1;
        unlock(key);
    }
    for (int i = 0; i < MANY; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    ck_assert(metric_becomes("metastore_lock_waiters", 0, 240000));
}
END_TEST

static Suite *lock_suite(void)
{
    Suite *s = suite_create("lock");
    struct {
        const char *name;
        const TTest *t;
        int timeout;
    } cases[] = {{"contention", contention, 300},
                 {"holder_expires", holder_expires, 60},
                 {"waiter_expires", waiter_expires, 60},
                 {"disconnect", disconnect, 60},
                 {"observe", observe, 60},
                 {"observe_slow", observe_slow_reader, 120},
                 {"many", many_waiters, 600}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, cases[i].t == observe_slow_reader ? setup_lean : setup,
                                  teardown);
        tcase_set_timeout(tc, cases[i].timeout);
        _tcase_add_test(tc, cases[i].t, 0, 0, 0, 1);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    return tu_run_suite(lock_suite());
}

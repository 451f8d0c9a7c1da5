/* test_cluster.c - integration: clusters of real metastore processes on 127.0.0.1, each member
 * with its own client and peer port, started with etcd's cluster flags.
 *
 * Cases (one meson test each, on the backend METASTORE_TEST_BACKEND names, lmdb by default):
 * bootstrap  - three members agree on the members and the leader; writes through every member;
 *              a linearizable read on another member always sees the write acknowledged just
 *              before it; every member ends with the same revision and hash.
 * leader_kill - kill -9 of the leader: a new leader among the others, no acknowledged write
 *              lost, writes go on; the old leader restarts and catches up to the same data.
 * no_quorum  - two of three members stopped (SIGSTOP): the survivor answers etcd's errors (no
 *              leader at once with Grpc-Metadata-hasleader, "context deadline exceeded" after
 *              the request timeout), serializable reads from its own data, /health 503; once
 *              the others resume, the cluster serves again.
 */
#include "testutil.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_MEMBERS 5

struct member {
    struct tu_server s;
    int peer_port;
    char name[8];
    char id[24]; /* decimal member ID, from its status */
    char peer_url[64];
    bool stopped; /* SIGSTOP'ed */
};

struct cluster {
    struct member m[MAX_MEMBERS];
    int n;
    char initial[MAX_MEMBERS * 80];
};

static const char *backend(void)
{
    const char *b = getenv("METASTORE_TEST_BACKEND");
    return b && *b ? b : "lmdb";
}

/* The string value of "field":"..." in json into out ("" if absent). */
static void json_str(const char *json, const char *field, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", field);
    const char *p = json ? strstr(json, pat) : NULL;
    out[0] = 0;
    if (!p)
        return;
    p += strlen(pat);
    size_t n = 0;
    while (p[n] && p[n] != '"' && n + 1 < cap)
        n++;
    memcpy(out, p, n);
    out[n] = 0;
}

/* POST body to path on port: the raw answer body (tu_post normalises IDs away). */
static char *post(int port, const char *path, const char *body, int *status)
{
    struct tu_resp r;
    tu_http(port, "POST", path, body, &r);
    if (status)
        *status = r.status;
    char *out = r.body;
    r.body = NULL;
    tu_resp_free(&r);
    return out;
}

static void member_flags(struct cluster *c, int i, const char **argv, size_t cap)
{
    struct member *m = &c->m[i];
    size_t n = 0;
    const char *flags[] = {"--name",
                           m->name,
                           "--listen-peer-urls",
                           m->peer_url,
                           "--initial-advertise-peer-urls",
                           m->peer_url,
                           "--initial-cluster",
                           c->initial,
                           "--initial-cluster-token",
                           "test-cluster",
                           "--backend",
                           backend(),
                           "--log-level",
                           "info",
                           NULL};
    for (; flags[n] && n + 1 < cap; n++)
        argv[n] = flags[n];
    argv[n] = NULL;
}

static void launch(struct cluster *c, int i)
{
    const char *argv[32];
    member_flags(c, i, argv, 32);
    tu_server_launch(&c->m[i].s, argv);
}

static void cluster_start(struct cluster *c, int n)
{
    memset(c, 0, sizeof(*c));
    c->n = n;
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        struct member *m = &c->m[i];
        tu_server_init(&m->s);
        /* Every port distinct: a port the kernel handed out once may come back. */
        for (;;) {
            m->peer_port = tu_free_port();
            bool taken = m->peer_port == m->s.port;
            for (int j = 0; j < i; j++)
                taken = taken || m->peer_port == c->m[j].peer_port ||
                        m->peer_port == c->m[j].s.port || m->s.port == c->m[j].s.port ||
                        m->s.port == c->m[j].peer_port;
            if (!taken)
                break;
            m->s.port = tu_free_port();
        }
        snprintf(m->name, sizeof(m->name), "m%d", i + 1);
        snprintf(m->peer_url, sizeof(m->peer_url), "http://127.0.0.1:%d", m->peer_port);
        o += (size_t)snprintf(c->initial + o, sizeof(c->initial) - o, "%s%s=%s", i ? "," : "",
                              m->name, m->peer_url);
    }
    for (int i = 0; i < n; i++)
        launch(c, i);
    for (int i = 0; i < n; i++) {
        tu_server_wait_healthy(&c->m[i].s);
        char *st = post(c->m[i].s.port, "/v3/maintenance/status", "{}", NULL);
        json_str(st, "member_id", c->m[i].id, sizeof(c->m[i].id));
        free(st);
        ck_assert_msg(c->m[i].id[0], "member %d has no ID", i);
    }
}

static void cluster_stop(struct cluster *c)
{
    for (int i = 0; i < c->n; i++) {
        if (c->m[i].stopped)
            kill(c->m[i].s.pid, SIGCONT);
        c->m[i].stopped = false;
    }
    for (int i = 0; i < c->n; i++)
        if (c->m[i].s.dir)
            tu_server_stop(&c->m[i].s);
}

static bool alive(const struct cluster *c, int i)
{
    return c->m[i].s.pid > 0 && !c->m[i].stopped;
}

/* The member every live member names as leader (bounded wait), or -1 if they never agree. */
static int leader(struct cluster *c, int timeout_ms)
{
    int64_t until = tu_now_ms() + timeout_ms;
    do {
        char lead[24] = "";
        bool agree = true;
        for (int i = 0; i < c->n && agree; i++) {
            if (!alive(c, i))
                continue;
            char *st = post(c->m[i].s.port, "/v3/maintenance/status", "{}", NULL);
            char l[24];
            json_str(st, "leader", l, sizeof(l));
            free(st);
            if (!l[0] || (lead[0] && strcmp(l, lead) != 0))
                agree = false;
            strcpy(lead, l);
        }
        for (int i = 0; agree && i < c->n; i++)
            if (alive(c, i) && strcmp(c->m[i].id, lead) == 0)
                return i;
        tu_sleep_ms(50);
    } while (tu_now_ms() < until);
    return -1;
}

/* Put key=val through member i: the revision, or -status on an error answer. */
static long put(struct cluster *c, int i, const char *key, const char *val)
{
    char k64[256], v64[256], body[600];
    tu_b64(key, k64);
    tu_b64(val, v64);
    snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\"}", k64, v64);
    int status;
    char *got = post(c->m[i].s.port, "/v3/kv/put", body, &status);
    long rev = status == 200 ? tu_json_num(got, "revision", -1) : -status;
    free(got);
    return rev;
}

/* A put that must succeed: retried (bounded) while the cluster answers 5xx (a leader
 * change). */
static long put_ok(struct cluster *c, int i, const char *key, const char *val)
{
    for (int t = 0; t < 50; t++) {
        long rev = put(c, i, key, val);
        if (rev > 0)
            return rev;
        ck_assert_msg(rev <= -500, "put %s through member %d answered %ld", key, i, -rev);
        tu_sleep_ms(100);
    }
    ck_abort_msg("put %s through member %d kept failing", key, i);
    return -1;
}

/* The value of key read through member i (malloc'ed; "" if absent), linearizable unless
 * serializable; NULL on an error answer (*status says which). */
static char *get(struct cluster *c, int i, const char *key, bool serializable, int *status)
{
    char k64[256], body[400];
    tu_b64(key, k64);
    snprintf(body, sizeof(body), "{\"key\":\"%s\"%s}", k64,
             serializable ? ",\"serializable\":true" : "");
    char *got = post(c->m[i].s.port, "/v3/kv/range", body, status);
    if (*status != 200) {
        free(got);
        return NULL;
    }
    char v64[512];
    json_str(got, "value", v64, sizeof(v64));
    free(got);
    return strdup(v64);
}

static char *get_ok(struct cluster *c, int i, const char *key)
{
    for (int t = 0; t < 50; t++) {
        int status;
        char *v = get(c, i, key, false, &status);
        if (v)
            return v;
        ck_assert_msg(status >= 500, "range %s on member %d answered %d", key, i, status);
        tu_sleep_ms(100);
    }
    ck_abort_msg("range %s on member %d kept failing", key, i);
    return NULL;
}

/* Every live member: the same revision and keyspace hash, read after a linearizable read so
 * that each has applied everything acknowledged. */
static void same_data(struct cluster *c)
{
    char first[128] = "";
    long rev0 = -1;
    for (int i = 0; i < c->n; i++) {
        if (!alive(c, i))
            continue;
        free(get_ok(c, i, "sync"));
        char *h = post(c->m[i].s.port, "/v3/maintenance/hash", "{}", NULL);
        long rev = tu_json_num(h, "revision", -1);
        const char *hp = strstr(h, "\"hash\":");
        ck_assert_ptr_nonnull(hp);
        char hash[128];
        snprintf(hash, sizeof(hash), "%.40s", hp);
        free(h);
        if (rev0 < 0) {
            rev0 = rev;
            strcpy(first, hash);
        }
        ck_assert_msg(rev == rev0 && strcmp(hash, first) == 0,
                      "member %d: revision %ld %s, first member: %ld %s", i, rev, hash, rev0,
                      first);
    }
}

START_TEST(bootstrap)
{
    struct cluster c;
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    for (int i = 0; i < c.n; i++) {
        /* Each member publishes its name and client URLs through the log: soon every member
         * lists them all. */
        char *ml = NULL;
        bool all = false;
        for (int t = 0; t < 200 && !all; t++) {
            free(ml);
            if (t)
                tu_sleep_ms(50);
            ml = post(c.m[i].s.port, "/v3/cluster/member/list", "{}", NULL);
            all = true;
            for (int j = 0; j < c.n; j++) {
                char want[200];
                snprintf(want, sizeof(want),
                         "{\"ID\":\"%s\",\"name\":\"%s\",\"peerURLs\":[\"%s\"],"
                         "\"clientURLs\":[\"http://127.0.0.1:%d\"]}",
                         c.m[j].id, c.m[j].name, c.m[j].peer_url, c.m[j].s.port);
                all = all && strstr(ml, want);
            }
        }
        ck_assert_msg(all, "member %d lists %s", i, ml);
        free(ml);
        char *st = post(c.m[i].s.port, "/v3/maintenance/status", "{}", NULL);
        ck_assert_msg(tu_json_num(st, "raftTerm", 0) >= 2, "%s", st);
        free(st);
    }
    /* A write acknowledged by one member is seen by the next read on any other: never stale. */
    long last = 0;
    for (int r = 0; r < 150; r++) {
        char key[32], val[32];
        snprintf(key, sizeof(key), "k%d", r % 7);
        snprintf(val, sizeof(val), "v%d", r);
        int w = r % c.n, rd = (r + 1 + r / c.n) % c.n;
        long rev = put_ok(&c, w, key, val);
        ck_assert_int_gt(rev, last);
        last = rev;
        char *got = get_ok(&c, rd, key);
        char want[64];
        tu_b64(val, want);
        ck_assert_msg(strcmp(got, want) == 0, "round %d: member %d read %s, wrote %s through %d", r,
                      rd, got, want, w);
        free(got);
    }
    same_data(&c);
    cluster_stop(&c);
}
END_TEST

START_TEST(leader_kill)
{
    struct cluster c;
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    char key[32], val[32];
    for (int r = 0; r < 40; r++) {
        snprintf(key, sizeof(key), "a%d", r);
        put_ok(&c, r % c.n, key, key);
    }
    tu_server_kill(&c.m[l].s);
    int64_t t0 = tu_now_ms();
    int l2 = leader(&c, 30000);
    ck_assert_msg(l2 >= 0 && l2 != l, "no new leader after the old one was killed");
    fprintf(stderr, "leader_kill: new leader after %lld ms\n", (long long)(tu_now_ms() - t0));
    for (int r = 0; r < 40; r++) {
        snprintf(key, sizeof(key), "b%d", r);
        int via = (l + 1 + r % 2) % c.n;
        put_ok(&c, via, key, key);
    }
    /* Every acknowledged write is on every survivor. */
    for (int i = 0; i < c.n; i++) {
        if (!alive(&c, i))
            continue;
        for (int r = 0; r < 40; r++) {
            snprintf(key, sizeof(key), "%c%d", r % 2 ? 'a' : 'b', r);
            char *got = get_ok(&c, i, key);
            tu_b64(key, val);
            ck_assert_msg(strcmp(got, val) == 0, "member %d lost %s", i, key);
            free(got);
        }
    }
    /* The old leader comes back and catches up. */
    const char *argv[32];
    member_flags(&c, l, argv, 32);
    tu_server_restart(&c.m[l].s, argv);
    char *got = get_ok(&c, l, "b39");
    ck_assert_str_eq(got, "YjM5");
    free(got);
    same_data(&c);
    cluster_stop(&c);
}
END_TEST

START_TEST(no_quorum)
{
    struct cluster c;
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    put_ok(&c, 0, "before", "x");
    int x = (l + 1) % c.n; /* the survivor: a follower */
    for (int i = 0; i < c.n; i++)
        if (i != x) {
            ck_assert_int_eq(kill(c.m[i].s.pid, SIGSTOP), 0);
            c.m[i].stopped = true;
        }
    /* It notices it has no leader within a few election timeouts. */
    int64_t until = tu_now_ms() + 20000;
    int status = 0;
    char *st = NULL;
    for (;;) {
        free(st);
        st = post(c.m[x].s.port, "/v3/maintenance/status", "{}", NULL);
        if (!strstr(st, "\"leader\"") || tu_now_ms() > until)
            break;
        tu_sleep_ms(50);
    }
    ck_assert_msg(strstr(st, "\"errors\":[\"etcdserver: no leader\"]"), "%s", st);
    free(st);
    struct tu_resp r;
    tu_http(c.m[x].s.port, "GET", "/health", NULL, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.body, "{\"health\":\"false\"}\n");
    tu_resp_free(&r);
    /* Serializable reads answer from the member's own data. */
    char *v = get(&c, x, "before", true, &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(v, "eA==");
    free(v);
    /* A caller that requires a leader is refused at once. */
    char req[400];
    snprintf(req, sizeof(req),
             "POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nGrpc-Metadata-Hasleader: true\r\n"
             "Content-Length: 29\r\n\r\n{\"key\":\"YQ==\",\"value\":\"Yg==\"}");
    int fd = tu_connect(c.m[x].s.port);
    ck_assert_int_ge(fd, 0);
    tu_send_all(fd, req, strlen(req));
    char *ans = tu_read_all(fd, 5000, NULL);
    close(fd);
    ck_assert_msg(strstr(ans, " 503 ") && strstr(ans, "etcdserver: no leader"), "%s", ans);
    free(ans);
    /* Without it, a write waits for a leader for the request timeout (5 s + 2 x election
     * timeout), then fails: it never reached the log. */
    int64_t t0 = tu_now_ms();
    char *got = post(c.m[x].s.port, "/v3/kv/put", "{\"key\":\"YQ==\",\"value\":\"Yg==\"}", &status);
    int64_t took = tu_now_ms() - t0;
    ck_assert_msg(status == 500 && strstr(got, "context deadline exceeded"), "%d %s", status, got);
    ck_assert_msg(took >= 6500, "answered after %lld ms", (long long)took);
    free(got);
    /* The others come back: the cluster serves again, everywhere. */
    for (int i = 0; i < c.n; i++)
        if (c.m[i].stopped) {
            kill(c.m[i].s.pid, SIGCONT);
            c.m[i].stopped = false;
        }
    ck_assert_int_ge(leader(&c, 30000), 0);
    put_ok(&c, x, "after", "y");
    same_data(&c);
    cluster_stop(&c);
}
END_TEST

/* 5 members; each is stopped (SIGTERM) and started again in turn while a writer goes on
 * through the others. A leader hands its leadership over before it stops. Nothing
 * acknowledged is lost, and every member ends with the same data. */
START_TEST(rolling_restart)
{
    struct cluster c;
    cluster_start(&c, 5);
    ck_assert_int_ge(leader(&c, 20000), 0);
    int acked = 0;
    char key[32];
    for (int round = 0; round < c.n; round++) {
        int l = leader(&c, 20000);
        ck_assert_int_ge(l, 0);
        /* Stop the leader in the middle of the order, so that both paths are taken. */
        int victim = round == 2 ? l : (l + 1 + round) % c.n;
        for (int w = 0; w < 10; w++, acked++) {
            snprintf(key, sizeof(key), "r%d", acked);
            put_ok(&c, (victim + 1) % c.n, key, key);
        }
        tu_server_stop_keep(&c.m[victim].s, 1);
        for (int w = 0; w < 10; w++, acked++) {
            snprintf(key, sizeof(key), "r%d", acked);
            put_ok(&c, (victim + 1 + w % 4) % c.n, key, key);
        }
        if (victim == l) {
            char cmd[4400];
            snprintf(cmd, sizeof(cmd), "grep -q 'leadership handed over' %s", c.m[victim].s.log);
            ck_assert_msg(system(cmd) == 0, "the leader stopped without handing over");
        }
        const char *argv[32];
        member_flags(&c, victim, argv, 32);
        tu_server_restart(&c.m[victim].s, argv);
    }
    ck_assert_int_ge(leader(&c, 20000), 0);
    for (int i = 0; i < c.n; i++)
        for (int k = 0; k < acked; k += 7) {
            snprintf(key, sizeof(key), "r%d", k);
            char *got = get_ok(&c, i, key);
            char want[64];
            tu_b64(key, want);
            ck_assert_msg(strcmp(got, want) == 0, "member %d lost %s", i, key);
            free(got);
        }
    same_data(&c);
    cluster_stop(&c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cluster");
    /* One case per TCase, named as the case: CK_RUN_CASE picks one (meson runs each alone). */
    struct {
        const char *name;
        const TTest *fn;
    } cases[] = {{"bootstrap", bootstrap},
                 {"leader_kill", leader_kill},
                 {"no_quorum", no_quorum},
                 {"rolling_restart", rolling_restart}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 240);
        tcase_add_test(tc, cases[i].fn);
        suite_add_tcase(s, tc);
    }
    return tu_run_suite(s);
}

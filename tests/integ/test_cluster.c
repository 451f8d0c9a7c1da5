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
#include "metastore/buf.h"
#include "metastore/crc32c.h"
#include "metastore/peer.h"
#include "metastore/raft_codec.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_MEMBERS 8

struct member {
    struct tu_server s;
    int peer_port;   /* where it listens for peers */
    int advert_port; /* its advertised peer port: peer_port, or the link proxy's */
    char name[8];
    char id[24];         /* decimal member ID, from its status */
    char peer_url[64];   /* advertised */
    char listen_url[64]; /* listened on */
    bool stopped;        /* SIGSTOP'ed */
    bool joins;          /* started with --initial-cluster-state existing */
};

struct cluster {
    struct member m[MAX_MEMBERS];
    int n;
    char initial[MAX_MEMBERS * 80];
    struct proxy *proxy;   /* per-link proxies in front of the peer ports, or NULL */
    const char *extra[16]; /* more flags for every member (NULL-terminated) */
    const char *token;     /* --initial-cluster-token (NULL: "test-cluster") */
    bool tls;              /* https peer URLs (the flags for it are in extra) */
};

/* ---- per-link proxies: the test cuts the links between two members at will ----
 * Every member advertises a proxy port; the proxy reads the stream request's head
 * ("GET /raft/stream/<dialer ID in hex>"), so it knows both ends of the link, and either
 * refuses the connection or forwards it to the member's real peer port. Cutting a link also
 * closes its connections in flight. One thread polls everything; every wait is bounded. */

#define PROXY_MAX_CONNS 64

struct proxy_conn {
    int a, b;     /* dialer side, member side; -1 when closed */
    int from, to; /* member indexes; from -1 until the head is read */
    char head[4096];
    size_t head_len;
};

struct proxy {
    struct cluster *c;
    int listen_fd[MAX_MEMBERS];
    struct proxy_conn conns[PROXY_MAX_CONNS];
    pthread_t thread;
    pthread_mutex_t mu;
    bool cut[MAX_MEMBERS][MAX_MEMBERS]; /* [from][to]: traffic dialed by from to to */
    bool any_cut;
    bool stop;
};

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(fd, 64), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void conn_close(struct proxy_conn *pc)
{
    if (pc->a >= 0)
        close(pc->a);
    if (pc->b >= 0)
        close(pc->b);
    pc->a = pc->b = -1;
}

/* The head is complete: find the dialer, then refuse or connect to the member. */
static void conn_route(struct proxy *p, struct proxy_conn *pc)
{
    char hex[32] = "";
    sscanf(pc->head, "GET /raft/stream/%20[0-9a-f]", hex);
    uint64_t from_id = strtoull(hex, NULL, 16);
    pc->from = -1;
    for (int i = 0; i < p->c->n; i++)
        if (p->c->m[i].id[0] && strtoull(p->c->m[i].id, NULL, 10) == from_id)
            pc->from = i;
    /* Before the IDs are known (the start), nothing is cut. */
    if (pc->from < 0 ? p->any_cut : p->cut[pc->from][pc->to]) {
        conn_close(pc);
        return;
    }
    pc->b = tu_connect(p->c->m[pc->to].peer_port);
    if (pc->b < 0) {
        conn_close(pc);
        return;
    }
    tu_send_all(pc->b, pc->head, pc->head_len);
    fcntl(pc->b, F_SETFL, O_NONBLOCK);
}

/* Copy what is readable from fd to other; false when the connection is over. */
static bool pump(int fd, int other)
{
    char buf[65536];
    ssize_t r = read(fd, buf, sizeof(buf));
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
        return false;
    for (ssize_t o = 0; o < r;) {
        ssize_t w = write(other, buf + o, (size_t)(r - o));
        if (w < 0 && errno == EAGAIN) {
            struct pollfd q = {.fd = other, .events = POLLOUT};
            if (poll(&q, 1, 1000) <= 0)
                return false; /* a reader stuck for a second: drop the link */
            continue;
        }
        if (w <= 0)
            return false;
        o += w;
    }
    return true;
}

static void *proxy_run(void *arg)
{
    struct proxy *p = arg;
    for (;;) {
        struct pollfd fds[MAX_MEMBERS + 2 * PROXY_MAX_CONNS];
        int kind[MAX_MEMBERS + 2 * PROXY_MAX_CONNS]; /* listener i, or conn*2 (+1 for b) */
        int n = 0;
        pthread_mutex_lock(&p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        for (int i = 0; i < PROXY_MAX_CONNS; i++) {
            struct proxy_conn *pc = &p->conns[i];
            if (pc->a >= 0 && pc->b >= 0 && (pc->from >= 0 ? p->cut[pc->from][pc->to] : p->any_cut))
                conn_close(pc);
        }
        for (int i = 0; i < p->c->n; i++) {
            fds[n] = (struct pollfd){.fd = p->listen_fd[i], .events = POLLIN};
            kind[n++] = -1 - i;
        }
        for (int i = 0; i < PROXY_MAX_CONNS; i++) {
            if (p->conns[i].a < 0)
                continue;
            fds[n] = (struct pollfd){.fd = p->conns[i].a, .events = POLLIN};
            kind[n++] = 2 * i;
            if (p->conns[i].b >= 0) {
                fds[n] = (struct pollfd){.fd = p->conns[i].b, .events = POLLIN};
                kind[n++] = 2 * i + 1;
            }
        }
        pthread_mutex_unlock(&p->mu);
        if (poll(fds, (nfds_t)n, 20) <= 0)
            continue;
        pthread_mutex_lock(&p->mu);
        for (int k = 0; k < n; k++) {
            if (!fds[k].revents)
                continue;
            if (kind[k] < 0) {
                int to = -1 - kind[k];
                int fd = accept(fds[k].fd, NULL, NULL);
                if (fd < 0)
                    continue;
                struct proxy_conn *pc = NULL;
                for (int i = 0; i < PROXY_MAX_CONNS && !pc; i++)
                    if (p->conns[i].a < 0)
                        pc = &p->conns[i];
                if (!pc) {
                    close(fd);
                    continue;
                }
                *pc = (struct proxy_conn){.a = fd, .b = -1, .from = -1, .to = to};
                fcntl(fd, F_SETFL, O_NONBLOCK);
                continue;
            }
            struct proxy_conn *pc = &p->conns[kind[k] / 2];
            if (pc->a < 0)
                continue;
            if (pc->b < 0) { /* still reading the head */
                ssize_t r =
                    read(pc->a, pc->head + pc->head_len, sizeof(pc->head) - 1 - pc->head_len);
                if (r <= 0) {
                    if (r == 0 || errno != EAGAIN)
                        conn_close(pc);
                    continue;
                }
                pc->head_len += (size_t)r;
                pc->head[pc->head_len] = 0;
                if (strstr(pc->head, "\r\n\r\n"))
                    conn_route(p, pc);
                else if (pc->head_len + 1 >= sizeof(pc->head))
                    conn_close(pc);
                continue;
            }
            bool ok = kind[k] % 2 ? pump(pc->b, pc->a) : pump(pc->a, pc->b);
            if (!ok)
                conn_close(pc);
        }
        pthread_mutex_unlock(&p->mu);
    }
    for (int i = 0; i < PROXY_MAX_CONNS; i++)
        conn_close(&p->conns[i]);
    return NULL;
}

/* Cut (or heal) every link between member i and the others, both ways. */
static void isolate(struct cluster *c, int i, bool cut)
{
    struct proxy *p = c->proxy;
    pthread_mutex_lock(&p->mu);
    for (int j = 0; j < c->n; j++)
        if (j != i)
            p->cut[i][j] = p->cut[j][i] = cut;
    p->any_cut = false;
    for (int a = 0; a < c->n; a++)
        for (int b = 0; b < c->n; b++)
            p->any_cut = p->any_cut || p->cut[a][b];
    pthread_mutex_unlock(&p->mu);
}

static void proxy_start(struct cluster *c)
{
    struct proxy *p = calloc(1, sizeof(*p));
    ck_assert_ptr_nonnull(p);
    p->c = c;
    for (int i = 0; i < PROXY_MAX_CONNS; i++)
        p->conns[i].a = p->conns[i].b = -1;
    for (int i = 0; i < c->n; i++)
        p->listen_fd[i] = listen_on(c->m[i].advert_port);
    pthread_mutex_init(&p->mu, NULL);
    ck_assert_int_eq(pthread_create(&p->thread, NULL, proxy_run, p), 0);
    c->proxy = p;
}

static void proxy_stop(struct cluster *c)
{
    struct proxy *p = c->proxy;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    for (int i = 0; i < c->n; i++)
        close(p->listen_fd[i]);
    pthread_mutex_destroy(&p->mu);
    free(p);
    c->proxy = NULL;
}

static const char *backend(void)
{
    const char *b = getenv("METASTORE_TEST_BACKEND");
    return b && *b ? b : "lmdb";
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
                           m->listen_url,
                           "--initial-advertise-peer-urls",
                           m->peer_url,
                           "--initial-cluster",
                           c->initial,
                           "--initial-cluster-token",
                           c->token ? c->token : "test-cluster",
                           "--backend",
                           backend(),
                           "--log-level",
                           "info",
                           NULL};
    for (; flags[n] && n + 1 < cap; n++)
        argv[n] = flags[n];
    for (size_t j = 0; c->extra[j] && n + 1 < cap; j++)
        argv[n++] = c->extra[j];
    if (m->joins && n + 3 < cap) {
        argv[n++] = "--initial-cluster-state";
        argv[n++] = "existing";
    }
    argv[n] = NULL;
}

static void launch(struct cluster *c, int i)
{
    const char *argv[32];
    member_flags(c, i, argv, 32);
    tu_server_launch(&c->m[i].s, argv);
}

/* Wait until the first n members (started) are healthy, and learn their IDs. */
static void wait_members(struct cluster *c, int n)
{
    for (int i = 0; i < n; i++) {
        tu_server_wait_healthy(&c->m[i].s);
        char *st = post(c->m[i].s.port, "/v3/maintenance/status", "{}", NULL);
        tu_json_str(st, "member_id", c->m[i].id, sizeof(c->m[i].id));
        free(st);
        ck_assert_msg(c->m[i].id[0], "member %d has no ID", i);
    }
}

/* Member i's peer port (and client port again if need be) apart from every port of the members
 * before it: a port the kernel handed out once may come back. */
static void pick_peer_port(struct cluster *c, int i)
{
    struct member *m = &c->m[i];
    for (;;) {
        m->peer_port = tu_free_port();
        bool taken = m->peer_port == m->s.port;
        for (int j = 0; j < i; j++)
            taken = taken || m->peer_port == c->m[j].peer_port || m->peer_port == c->m[j].s.port ||
                    m->s.port == c->m[j].s.port || m->s.port == c->m[j].peer_port;
        if (!taken)
            return;
        m->s.port = tu_free_port();
    }
}

/* n members, the first n_up of them started; with proxied, each advertises a link proxy's port
 * (isolate() cuts links). */
static void cluster_start_opt(struct cluster *c, int n, int n_up, bool proxied)
{
    const char *extra[16];
    memcpy(extra, c->extra, sizeof(extra)); /* the caller may have set them */
    bool tls = c->tls;
    const char *token = c->token;
    memset(c, 0, sizeof(*c));
    memcpy(c->extra, extra, sizeof(extra));
    c->tls = tls;
    c->token = token;
    const char *scheme = tls ? "https" : "http";
    c->n = n;
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        struct member *m = &c->m[i];
        tu_server_init(&m->s);
        pick_peer_port(c, i);
        m->advert_port = m->peer_port;
        while (proxied && (m->advert_port == m->peer_port || m->advert_port == m->s.port))
            m->advert_port = tu_free_port(); /* other members' ports: see below */
        snprintf(m->name, sizeof(m->name), "m%d", i + 1);
        snprintf(m->peer_url, sizeof(m->peer_url), "%s://127.0.0.1:%d", scheme, m->advert_port);
        snprintf(m->listen_url, sizeof(m->listen_url), "%s://127.0.0.1:%d", scheme, m->peer_port);
        o += (size_t)snprintf(c->initial + o, sizeof(c->initial) - o, "%s%s=%s", i ? "," : "",
                              m->name, m->peer_url);
    }
    for (int i = 0; i < n && proxied; i++)
        for (int j = 0; j < n; j++)
            ck_assert_msg(j == i || (c->m[i].advert_port != c->m[j].peer_port &&
                                     c->m[i].advert_port != c->m[j].s.port &&
                                     c->m[i].advert_port != c->m[j].advert_port),
                          "the kernel handed out a port twice: run again");
    if (proxied)
        proxy_start(c);
    for (int i = 0; i < n_up; i++)
        launch(c, i);
    wait_members(c, n_up);
}

static void cluster_start(struct cluster *c, int n)
{
    cluster_start_opt(c, n, n, false);
}

static void cluster_stop(struct cluster *c)
{
    for (int i = 0; i < c->n; i++) {
        if (c->m[i].stopped)
            kill(c->m[i].s.pid, SIGCONT);
        c->m[i].stopped = false;
    }
    for (int i = 0; i < c->n; i++)
        if (c->m[i].s.pid > 0)
            tu_server_stop(&c->m[i].s);
        else if (c->m[i].s.dir) {
            tu_rmtree(c->m[i].s.dir);
            free(c->m[i].s.dir);
            c->m[i].s.dir = NULL;
        }
    proxy_stop(c);
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
            tu_json_str(st, "leader", l, sizeof(l));
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
    size_t vl = strlen(val) / 3 * 4 + 8;
    char k64[256], *v64 = malloc(vl), *body = malloc(vl + 300);
    ck_assert(v64 && body);
    tu_b64(key, k64);
    tu_b64(val, v64);
    snprintf(body, vl + 300, "{\"key\":\"%s\",\"value\":\"%s\"}", k64, v64);
    int status;
    char *got = post(c->m[i].s.port, "/v3/kv/put", body, &status);
    long rev = status == 200 ? tu_json_num(got, "revision", -1) : -status;
    free(got);
    free(body);
    free(v64);
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
    tu_json_str(got, "value", v64, sizeof(v64));
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
    struct cluster c = {0};
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
    /* Concurrent linearizable reads on a follower: one ReadIndex round at a time, the reads
     * that arrive meanwhile held for the next; every one is answered. */
    enum { N_READS = 2000 };
    char *bodies[N_READS];
    int statuses[N_READS];
    for (int i = 0; i < N_READS; i++)
        bodies[i] = "{\"key\":\"azA=\"}"; /* k0 */
    int f = (l + 1) % c.n;
    ck_assert_uint_eq(tu_pipeline(c.m[f].s.port, "/v3/kv/range", bodies, N_READS, statuses),
                      N_READS);
    for (int i = 0; i < N_READS; i++)
        ck_assert_int_eq(statuses[i], 200);
    same_data(&c);
    cluster_stop(&c);
}
END_TEST

/* Run member i's flags (token: --initial-cluster-token, or NULL for the cluster's) on the data
 * directory dir, with the environment envp (NULL: none), on fresh client and peer listening
 * ports (its advertised peer URL stays): the exit status (-1 after timeout_ms), its output in
 * *out (the caller frees). */
static int run_member(struct cluster *c, int i, const char *dir, const char *token,
                      char *const *envp, int timeout_ms, char **out)
{
    const char *argv[40];
    member_flags(c, i, argv, 32);
    size_t n = 0;
    while (argv[n])
        n++;
    char data[4200], client[64], peer[64];
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(client, sizeof(client), "http://127.0.0.1:%d", c->m[i].s.port);
    snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", c->m[i].peer_port);
    if (strcmp(dir, c->m[i].s.dir) != 0) { /* another's directory: ports nobody uses */
        snprintf(client, sizeof(client), "http://127.0.0.1:%d", tu_free_port());
        snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", tu_free_port());
    }
    const char *more[] = {"--data-dir",
                          data,
                          "--listen-client-urls",
                          client,
                          "--advertise-client-urls",
                          client,
                          "--listen-peer-urls",
                          peer,
                          "--initial-cluster-token",
                          token      ? token
                          : c->token ? c->token
                                     : "test-cluster",
                          NULL};
    for (size_t j = 0; more[j]; j++)
        argv[n++] = more[j]; /* the last --listen-peer-urls and token win */
    argv[n] = NULL;
    return tu_run(argv, envp, timeout_ms, out);
}

/* Member i's flags on dir must exit at once, refusing it with want in its output. */
static void refused(struct cluster *c, int i, const char *dir, const char *token, const char *want)
{
    char *out = NULL;
    int st = run_member(c, i, dir, token, NULL, 20000, &out);
    ck_assert_msg(st > 0 && strstr(out, want) && !strstr(out, "Sanitizer"), "status %d, output: %s",
                  st, out);
    free(out);
}

START_TEST(leader_kill)
{
    struct cluster c = {0};
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
    /* Its data directory given to another member, or to a cluster with another token: refused
     * with a clear message; the directory stays as it was. */
    refused(&c, (l + 1) % c.n, c.m[l].s.dir, NULL, "give each member its own --data-dir");
    refused(&c, l, c.m[l].s.dir, "another-token", "it holds another cluster's data");
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

/* Peer TLS (--peer-cert-file, --peer-key-file, --peer-trusted-ca-file, --peer-client-cert-auth,
 * --peer-cert-allowed-cn): three members on https peer URLs agree, replicate, survive the
 * leader's kill -9 and catch up; a client certificate with another CN, one without a
 * certificate, and plain HTTP are refused at the peer port. */
START_TEST(peer_tls)
{
    char *dir = tu_mkdtemp("mspeertls");
    tu_make_certs(dir);
    char crt[4200], key[4200], ca[4200], icrt[4200], ikey[4200];
    snprintf(crt, sizeof(crt), "%s/server.crt", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    snprintf(icrt, sizeof(icrt), "%s/intruder.crt", dir);
    snprintf(ikey, sizeof(ikey), "%s/intruder.key", dir);
    struct cluster c = {0};
    const char *extra[] = {"--peer-cert-file",
                           crt,
                           "--peer-key-file",
                           key,
                           "--peer-trusted-ca-file",
                           ca,
                           "--peer-client-cert-auth",
                           "--peer-cert-allowed-cn",
                           "server",
                           NULL};
    memcpy(c.extra, extra, sizeof(extra));
    c.tls = true;
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    char *ml = post(c.m[0].s.port, "/v3/cluster/member/list", "{}", NULL);
    ck_assert_msg(strstr(ml, "\"peerURLs\":[\"https://127.0.0.1:"), "%s", ml);
    free(ml);
    char k[32], v[32];
    for (int r = 0; r < 30; r++) {
        snprintf(k, sizeof(k), "t%d", r);
        put_ok(&c, r % c.n, k, k);
        char *got = get_ok(&c, (r + 1) % c.n, k);
        tu_b64(k, v);
        ck_assert_str_eq(got, v);
        free(got);
    }
    /* The peer port refuses a certificate with another CN, none at all, and plain HTTP. */
    char url[96];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/raft/stream/1", c.m[0].peer_port);
    const char *intruder[] = {"curl",   "-sS", "--max-time", "10", "--cacert", ca,
                              "--cert", icrt,  "--key",      ikey, url,        NULL};
    char *out;
    ck_assert_int_ne(tu_exec(intruder, 20000, &out), 0);
    free(out);
    const char *nocert[] = {"curl", "-sS", "--max-time", "10", "--cacert", ca, url, NULL};
    ck_assert_int_ne(tu_exec(nocert, 20000, &out), 0);
    free(out);
    const char *member[] = {"curl",      "-sS", "--max-time",   "10",     "--cacert", ca,      "-o",
                            "/dev/null", "-w",  "%{http_code}", "--cert", crt,        "--key", key,
                            url,         NULL};
    ck_assert_int_eq(tu_exec(member, 20000, &out), 0);
    ck_assert_msg(strcmp(out, "000") != 0, "%s", out); /* an HTTP answer, over TLS */
    free(out);
    struct tu_resp r;
    tu_http(c.m[0].peer_port, "GET", "/raft/stream/1", NULL, &r);
    ck_assert_int_eq(r.status, 400);
    tu_resp_free(&r);
    /* The leader dies; the others elect one over TLS; it comes back and catches up. */
    tu_server_kill(&c.m[l].s);
    int l2 = leader(&c, 30000);
    ck_assert_msg(l2 >= 0 && l2 != l, "no new leader after the old one was killed");
    put_ok(&c, (l + 1) % c.n, "after", "kill");
    const char *argv[32];
    member_flags(&c, l, argv, 32);
    tu_server_restart(&c.m[l].s, argv);
    char *got = get_ok(&c, l, "after");
    ck_assert_str_eq(got, "a2lsbA==");
    free(got);
    same_data(&c);
    cluster_stop(&c);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

static void read_stream(int fd, char **buf, size_t *len, int ms);
static bool read_some(int fd, char **buf, size_t *len, int ms);
static int watch_open(int port, const char *body, const char *headers, char **buf, size_t *len);

START_TEST(no_quorum)
{
    struct cluster c = {0};
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    put_ok(&c, 0, "before", "x");
    int x = (l + 1) % c.n;         /* the survivor: a follower */
    free(get_ok(&c, x, "before")); /* applied there (a serializable read may lag otherwise) */
    /* A watch that requires a leader, opened while there is one. */
    char *wbuf;
    size_t wlen;
    int wfd = watch_open(c.m[x].s.port, "{\"create_request\":{\"key\":\"Zm9v\"}}",
                         "Grpc-Metadata-Hasleader: true\r\n", &wbuf, &wlen);
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
    /* The watch that required a leader ends with etcd's error (3 election timeouts after the
     * leader was lost), as its last line. */
    for (int64_t wend = tu_now_ms() + 20000; tu_now_ms() < wend;) {
        struct pollfd q = {.fd = wfd, .events = POLLIN};
        if (poll(&q, 1, 200) <= 0)
            continue;
        wbuf = realloc(wbuf, wlen + 4097);
        ck_assert_ptr_nonnull(wbuf);
        ssize_t got_n = recv(wfd, wbuf + wlen, 4096, 0);
        if (got_n <= 0)
            break;
        wlen += (size_t)got_n;
        wbuf[wlen] = 0;
        if (strstr(wbuf, "\r\n0\r\n\r\n"))
            break; /* the chunked stream's end */
    }
    ck_assert_msg(strstr(wbuf, "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":"
                               "\"etcdserver: no leader\",\"http_status\":\"Service "
                               "Unavailable\"}}") &&
                      strstr(wbuf, "\r\n0\r\n\r\n"),
                  "%s", wbuf);
    free(wbuf);
    close(wfd);
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
    struct cluster c = {0};
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

/* What fd (a socket or a pipe) gave within ms milliseconds, appended to *buf (NUL-terminated);
 * false once it ended. */
static bool read_some(int fd, char **buf, size_t *len, int ms)
{
    int64_t until = tu_now_ms() + ms;
    for (;;) {
        int left = (int)(until - tu_now_ms());
        if (left <= 0)
            return true;
        struct pollfd q = {.fd = fd, .events = POLLIN};
        if (poll(&q, 1, left) <= 0)
            return true;
        *buf = realloc(*buf, *len + 65537);
        ck_assert_ptr_nonnull(*buf);
        (*buf)[*len] = 0;
        ssize_t r = read(fd, *buf + *len, 65536);
        if (r <= 0)
            return false;
        *len += (size_t)r;
        (*buf)[*len] = 0;
    }
}

/* What a watch stream sent within ms milliseconds, appended to *buf (NUL-terminated). */
static void read_stream(int fd, char **buf, size_t *len, int ms)
{
    ck_assert_msg(read_some(fd, buf, len, ms), "the watch stream ended");
}

/* Open a watch stream on port with body (a create_request) and extra request headers ("" or
 * lines ending in CRLF); waits (bounded) for the created answer, which *buf holds. */
static int watch_open(int port, const char *body, const char *headers, char **buf, size_t *len)
{
    char req[1024];
    snprintf(req, sizeof(req),
             "POST /v3/watch HTTP/1.1\r\nHost: x\r\n%sContent-Length: %zu\r\n\r\n%s", headers,
             strlen(body), body);
    int fd = tu_connect(port);
    ck_assert_int_ge(fd, 0);
    tu_send_all(fd, req, strlen(req));
    *buf = NULL;
    *len = 0;
    read_stream(fd, buf, len, 300);
    ck_assert_msg(*buf && strstr(*buf, "\"created\":true"), "%s", *buf ? *buf : "");
    return fd;
}

/* The leader is cut off from the others: it stops acknowledging writes and answering
 * linearizable reads, answers serializable ones from its own data, and a watch on it receives
 * nothing it could not have; the others elect a leader and go on. Once healed it converges,
 * and the watch receives every event once, in order. */
START_TEST(partition)
{
    struct cluster c = {0};
    cluster_start_opt(&c, 3, 3, true);
    int a = leader(&c, 20000);
    ck_assert_int_ge(a, 0);
    put_ok(&c, a, "p/init", "x");
    free(get_ok(&c, a, "p/init"));
    /* A watch on the member about to be cut off, from the next revision on. */
    char *wbuf;
    size_t wlen;
    int wfd =
        watch_open(c.m[a].s.port, "{\"create_request\":{\"key\":\"cC8=\",\"range_end\":\"cDA=\"}}",
                   "", &wbuf, &wlen);
    wlen = 0;

    isolate(&c, a, true);
    c.m[a].stopped = true; /* not counted by leader(): it is cut off */
    int b = leader(&c, 30000);
    ck_assert_msg(b >= 0 && b != a, "the majority did not elect a leader");
    c.m[a].stopped = false;
    char key[32], want[64];
    for (int r = 0; r < 10; r++) {
        snprintf(key, sizeof(key), "p/%d", r);
        put_ok(&c, (a + 1 + r % 2) % c.n, key, "v");
    }
    /* The cut-off member acknowledges nothing and answers no linearizable read. */
    long rev = put(&c, a, "p/lost", "x");
    ck_assert_msg(rev < 0, "a write through the cut-off member was acknowledged (%ld)", rev);
    int status;
    char *v = get(&c, a, "p/0", false, &status);
    ck_assert_msg(!v, "a linearizable read on the cut-off member answered");
    v = get(&c, a, "p/init", true, &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(v, "eA==");
    free(v);
    v = get(&c, a, "p/0", true, &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(v, ""); /* its own data: the majority's writes are not there */
    free(v);
    read_stream(wfd, &wbuf, &wlen, 200);
    tu_b64("p/0", want);
    ck_assert_msg(!wlen || !strstr(wbuf, want), "the cut-off member's watch saw p/0: %s", wbuf);

    isolate(&c, a, false);
    ck_assert_int_ge(leader(&c, 30000), 0);
    put_ok(&c, a, "p/after", "y");
    same_data(&c);
    /* The watch: p/0..p/9 and p/after, each once, in order (p/lost, if it ever committed, is
     * allowed: its outcome was unknown). */
    int64_t until = tu_now_ms() + 20000;
    tu_b64("p/after", want);
    while ((!wbuf || !strstr(wbuf, want)) && tu_now_ms() < until)
        read_stream(wfd, &wbuf, &wlen, 200);
    const char *at = wbuf;
    for (int r = 0; r < 10; r++) {
        snprintf(key, sizeof(key), "p/%d", r);
        tu_b64(key, want);
        const char *f = strstr(wbuf, want);
        ck_assert_msg(f && f >= at && !strstr(f + 1, want), "event %s: %s", key, wbuf);
        at = f;
    }
    free(wbuf);
    close(wfd);
    cluster_stop(&c);
}
END_TEST

static long rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* The answer to a raw request on the peer port of member i (up to 2 s), malloc'ed. */
static char *peer_raw(struct cluster *c, int i, const char *req, size_t len)
{
    int fd = tu_connect(c->m[i].peer_port);
    ck_assert_int_ge(fd, 0);
    tu_send_all(fd, req, len);
    char *out = tu_read_all(fd, 2000, NULL);
    close(fd);
    return out;
}

/* Garbage, another cluster's member and a peer that never reads: the member stays up, logs
 * the refusals, and its memory stays bounded. The third member of the cluster is never
 * started: the test speaks for it. */
START_TEST(bad_peers)
{
    struct cluster c = {0};
    cluster_start_opt(&c, 3, 2, false);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    /* Member m3's ID and the cluster's, from the member list and a header. */
    char *ml = post(c.m[0].s.port, "/v3/cluster/member/list", "{}", NULL);
    const char *p3 = strstr(ml, "\"name\":\"m3\"");
    ck_assert_ptr_nonnull(p3);
    const char *idp = p3;
    while (idp > ml && strncmp(idp, "\"ID\":\"", 6) != 0)
        idp--;
    uint64_t id3 = strtoull(idp + 6, NULL, 10);
    char cid[24];
    tu_json_str(ml, "cluster_id", cid, sizeof(cid));
    free(ml);
    uint64_t cluster = strtoull(cid, NULL, 10), lid = strtoull(c.m[l].id, NULL, 10);

    /* Garbage: the connection is answered 400 or closed; the member serves on. */
    static const char junk[] = "\x16\x03\x01\x02\x00garbage\r\n\r\n\xff\xfe";
    free(peer_raw(&c, l, junk, sizeof(junk) - 1));
    char req[600];
    /* Another cluster: 412, logged. */
    snprintf(req, sizeof(req),
             "GET /raft/stream/%016" PRIx64 " HTTP/1.1\r\nHost: x\r\nX-Etcd-Cluster-ID: %016" PRIx64
             "\r\nX-Server-From: %016" PRIx64 "\r\nX-Raft-To: %016" PRIx64
             "\r\nX-Peer-Version: 1\r\n\r\n",
             id3, cluster ^ 1, id3, lid);
    char *ans = peer_raw(&c, l, req, strlen(req));
    ck_assert_msg(strstr(ans, " 412 "), "%s", ans);
    free(ans);
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "grep -q 'refused a stream from %016" PRIx64 " of cluster' %s", id3,
             c.m[l].s.log);
    ck_assert_msg(system(cmd) == 0, "the refusal is not logged");

    /* A peer that opens its stream and never reads: the leader's sends to it are bounded. */
    snprintf(req, sizeof(req),
             "GET /raft/stream/%016" PRIx64 " HTTP/1.1\r\nHost: x\r\nX-Etcd-Cluster-ID: %016" PRIx64
             "\r\nX-Server-From: %016" PRIx64 "\r\nX-Raft-To: %016" PRIx64
             "\r\nX-Peer-Version: 1\r\n\r\n",
             id3, cluster, id3, lid);
    int fd = tu_connect(c.m[l].peer_port);
    ck_assert_int_ge(fd, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    tu_send_all(fd, req, strlen(req));
    int f = 1 - l; /* the other member: the same log and data, no stuck peer */
    long before = rss_kb(c.m[l].s.pid), f_before = rss_kb(c.m[f].s.pid);
    char *big = malloc(200001);
    ck_assert_ptr_nonnull(big);
    memset(big, 'v', 200000);
    big[200000] = 0;
    char key[32];
    for (int r = 0; r < 300; r++) { /* 60 MB through the leader */
        snprintf(key, sizeof(key), "big%d", r % 20);
        ck_assert_int_gt(put_ok(&c, l, key, big), 0);
    }
    free(big);
    /* Both hold the entries in memory and the data in the backend; the leader holds
     * little more for the peer that does not read (a probe per heartbeat, a bounded queue). */
    long after = rss_kb(c.m[l].s.pid), f_after = rss_kb(c.m[f].s.pid);
    fprintf(stderr, "bad_peers: RSS of the leader %ld -> %ld kB, of the follower %ld -> %ld kB\n",
            before, after, f_before, f_after);
    ck_assert_msg((after - before) - (f_after - f_before) < 32 * 1024,
                  "the leader grew by %ld kB, the follower by %ld kB", after - before,
                  f_after - f_before);
    close(fd);
    same_data(&c);
    cluster_stop(&c);
}
END_TEST

/* True if key exists, read linearizably through member i. */
static bool exists(struct cluster *c, int i, const char *key)
{
    char *v = get_ok(c, i, key);
    bool yes = v[0] != 0;
    free(v);
    return yes;
}

/* Leases on followers and across a leader change: keepalive and time-to-live answered on a
 * follower with the leader's view; after the leader dies, the new one gives the lease its full
 * TTL again (plus an election timeout), so it does not expire early, and then expires it. */
START_TEST(leases)
{
    struct cluster c = {0};
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    int f = (l + 1) % c.n, g = (l + 2) % c.n;
    int status;
    char *got = post(c.m[f].s.port, "/v3/lease/grant", "{\"TTL\":6}", &status);
    ck_assert_msg(status == 200, "%s", got);
    char id[32];
    tu_json_str(got, "ID", id, sizeof(id));
    free(got);
    char body[256];
    snprintf(body, sizeof(body), "{\"key\":\"bGs=\",\"value\":\"eA==\",\"lease\":\"%s\"}", id);
    got = post(c.m[g].s.port, "/v3/kv/put", body, &status);
    ck_assert_msg(status == 200, "%s", got);
    free(got);
    /* time-to-live and keepalive on a follower: the leader's answers */
    snprintf(body, sizeof(body), "{\"ID\":\"%s\",\"keys\":true}", id);
    got = post(c.m[g].s.port, "/v3/lease/timetolive", body, &status);
    ck_assert_msg(status == 200 && strstr(got, "\"grantedTTL\":\"6\"") &&
                      strstr(got, "\"keys\":[\"bGs=\"]") && tu_json_num(got, "TTL", 0) >= 4,
                  "%s", got);
    free(got);
    snprintf(body, sizeof(body), "{\"ID\":\"%s\"}\n{\"ID\":\"%s\"}", id, id);
    got = post(c.m[f].s.port, "/v3/lease/keepalive", body, &status);
    ck_assert_msg(status == 200 && strstr(got, "\"TTL\":\"6\"") &&
                      strstr(strstr(got, "\"TTL\":\"6\"") + 1, "\"TTL\":\"6\""),
                  "%s", got);
    free(got);
    got = post(c.m[f].s.port, "/v3/lease/timetolive", "{\"ID\":\"12345\"}", &status);
    ck_assert_msg(status == 200 && strstr(got, "\"TTL\":\"-1\""), "%s", got);
    free(got);
    /* The leader dies 4 s after the keepalive: its deadline (6 s) passes during the election. */
    tu_sleep_ms(4000);
    tu_server_kill(&c.m[l].s);
    int l2 = leader(&c, 30000);
    ck_assert_int_ge(l2, 0);
    int64_t promoted = tu_now_ms();
    tu_sleep_ms(3000); /* past the old deadline */
    ck_assert_msg(exists(&c, f, "lk"), "the lease expired early, across the leader change");
    /* ... and expires about TTL + one election timeout after the new leader took over. */
    while (exists(&c, f, "lk") && tu_now_ms() - promoted < 20000)
        tu_sleep_ms(200);
    int64_t after = tu_now_ms() - promoted;
    fprintf(stderr, "leases: expired %lld ms after the new leader was seen\n", (long long)after);
    ck_assert_msg(!exists(&c, f, "lk"), "the lease never expired");
    ck_assert_msg(after >= 6000, "expired %lld ms after the change", (long long)after);
    cluster_stop(&c);
}
END_TEST

/* etcdctl (Debian's etcd-client) against member i (-1: every member): its output (malloc'd),
 * exit status in *rc. */
static char *ctl(struct cluster *c, int i, int *rc, const char *const *args)
{
    char ep[64 * MAX_MEMBERS];
    int k = snprintf(ep, sizeof(ep), "--endpoints=");
    for (int j = 0; j < c->n; j++)
        if (i < 0 ? alive(c, j) : j == i)
            k += snprintf(ep + k, sizeof(ep) - (size_t)k, "%shttp://127.0.0.1:%d",
                          k > 12 ? "," : "", c->m[j].s.port);
    const char *argv[16] = {ep, "--dial-timeout=5s", "--command-timeout=15s"};
    int n = 3;
    for (int a = 0; args[a] && n < 15; a++)
        argv[n++] = args[a];
    argv[n] = NULL;
    char *env[] = {"ETCDCTL_API=3", NULL};
    char *out;
    *rc = tu_run_bin("/usr/bin/etcdctl", argv, env, 30000, &out);
    return out;
}

/* Over gRPC, keepalive and time-to-live on a follower are the leader's answers (asked over the
 * peer transport, as the gateway's are), also after the leader changed. */
START_TEST(grpc_leases)
{
    ck_assert_msg(access("/usr/bin/etcdctl", X_OK) == 0, "etcdctl (etcd-client) is missing");
    struct cluster c = {0};
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    int f = (l + 1) % c.n, g = (l + 2) % c.n;
    int rc;
    char *out = ctl(&c, f, &rc, (const char *[]){"lease", "grant", "60", NULL});
    char id[24];
    ck_assert_msg(rc == 0 && sscanf(out, "lease %16[0-9a-f] granted", id) == 1, "%s", out);
    free(out);
    out = ctl(&c, g, &rc, (const char *[]){"put", "glk", "v", "--lease", id, NULL});
    ck_assert_msg(rc == 0, "%s", out);
    free(out);
    for (int round = 0; round < 2; round++) {
        out = ctl(&c, f, &rc, (const char *[]){"lease", "keep-alive", "--once", id, NULL});
        char want[96];
        snprintf(want, sizeof(want), "lease %s keepalived with TTL(60)", id);
        ck_assert_msg(rc == 0 && strstr(out, want), "%s", out);
        free(out);
        out = ctl(&c, g, &rc, (const char *[]){"lease", "timetolive", id, "--keys", NULL});
        snprintf(want, sizeof(want), "lease %s granted with TTL(60s), remaining(", id);
        ck_assert_msg(rc == 0 && strstr(out, want) && strstr(out, "attached keys([glk])"), "%s",
                      out);
        free(out);
        out = ctl(&c, f, &rc, (const char *[]){"lease", "timetolive", "1234abcd", NULL});
        ck_assert_msg(rc == 0 && strstr(out, "lease 000000001234abcd already expired"), "%s", out);
        free(out);
        out = ctl(&c, g, &rc, (const char *[]){"lease", "keep-alive", "--once", "1234abcd", NULL});
        ck_assert_msg(rc != 0 && strstr(out, "etcdserver: requested lease not found"), "%s", out);
        free(out);
        if (round == 0) {
            /* the leader goes: the followers ask the next one */
            tu_server_kill(&c.m[l].s);
            int l2 = leader(&c, 30000);
            ck_assert_int_ge(l2, 0);
            f = l2 == f ? g : f;
            g = l2;
        }
    }
    cluster_stop(&c);
}
END_TEST

/* A watch whose caller requires a leader (etcdctl sets hasleader) on a member that lost its
 * quorum ends with etcd's "no leader" after three election timeouts, so clientv3 gives up on
 * that member instead of waiting on it forever. */
START_TEST(grpc_no_leader)
{
    ck_assert_msg(access("/usr/bin/etcdctl", X_OK) == 0, "etcdctl (etcd-client) is missing");
    struct cluster c = {0};
    cluster_start(&c, 3);
    ck_assert_int_ge(leader(&c, 20000), 0);
    char ep[64];
    snprintf(ep, sizeof(ep), "--endpoints=http://127.0.0.1:%d", c.m[0].s.port);
    int o[2];
    ck_assert_int_eq(pipe(o), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(o[1], 1);
        dup2(o[1], 2);
        close(o[0]);
        char *env[] = {"ETCDCTL_API=3", NULL};
        execle("/usr/bin/etcdctl", "etcdctl", ep, "watch", "nl", (char *)NULL, env);
        _exit(127);
    }
    close(o[1]);
    put_ok(&c, 0, "nl", "1"); /* the watch is up once its event is printed */
    char *out = NULL;
    size_t len = 0;
    int64_t end = tu_now_ms() + 20000;
    while ((!out || !strstr(out, "nl\n1")) && tu_now_ms() < end) {
        read_some(o[0], &out, &len, 200);
        if (!out || !strstr(out, "nl\n1"))
            put(&c, 0, "nl", "1");
    }
    ck_assert_msg(out && strstr(out, "nl\n1"), "no watch: %s", out ? out : "");
    for (int i = 1; i < 3; i++) {
        ck_assert_int_eq(kill(c.m[i].s.pid, SIGSTOP), 0);
        c.m[i].stopped = true;
    }
    int64_t cut = tu_now_ms();
    end = cut + 30000;
    int status = 0;
    pid_t w = 0;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && tu_now_ms() < end)
        read_some(o[0], &out, &len, 100);
    read_some(o[0], &out, &len, 100);
    if (w != pid) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    close(o[0]);
    ck_assert_msg(w == pid && strstr(out, "watch was canceled (etcdserver: no leader)"),
                  "the watch was not ended: %s", out);
    /* not before the member could know: three election timeouts (1 s each here) */
    ck_assert_int_ge(tu_now_ms() - cut, 3000);
    free(out);
    cluster_stop(&c);
}
END_TEST

/* etcdctl move-leader: the leader hands over to the member named, answered once it leads;
 * an ID that is no member is etcd's bad transferee. */
START_TEST(move_leader)
{
    ck_assert_msg(access("/usr/bin/etcdctl", X_OK) == 0, "etcdctl (etcd-client) is missing");
    struct cluster c = {0};
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    for (int round = 0; round < 2; round++) {
        int to = (l + 1 + round) % c.n;
        char hex[24], want[96];
        snprintf(hex, sizeof(hex), "%llx", strtoull(c.m[to].id, NULL, 10));
        int rc;
        char *out = ctl(&c, -1, &rc, (const char *[]){"move-leader", hex, NULL});
        snprintf(want, sizeof(want), "Leadership transferred from %llx to %s",
                 strtoull(c.m[l].id, NULL, 10), hex);
        ck_assert_msg(rc == 0 && strstr(out, want), "%s (want %s)", out, want);
        free(out);
        ck_assert_int_eq(leader(&c, 20000), to);
        l = to;
    }
    int rc;
    char *out = ctl(&c, -1, &rc, (const char *[]){"move-leader", "1234abcd", NULL});
    ck_assert_msg(rc != 0 && strstr(out, "etcdserver: bad leader transferee"), "%s", out);
    free(out);
    ck_assert_int_eq(leader(&c, 20000), l);
    same_data(&c);
    cluster_stop(&c);
}
END_TEST

/* A follower stopped while 20,000 writes happen, with --snapshot-count 1000: the leader keeps
 * only the last 6,000 entries, so the follower comes back through a snapshot of the leader's
 * state machine, and ends with the same revision and hash. */
/* Keys s/<from> .. s/<from + n - 1> written through member i, pipelined in batches of 1,000. */
static void puts_pipelined(struct cluster *c, int i, int from, int n)
{
    enum { BATCH = 1000 };
    char **bodies = calloc(BATCH, sizeof(*bodies));
    int *st = calloc(BATCH, sizeof(*st));
    ck_assert(bodies && st);
    for (int b = 0; b < n / BATCH; b++) {
        for (int j = 0; j < BATCH; j++) {
            char key[32], k64[64];
            snprintf(key, sizeof(key), "s/%05d", from + b * BATCH + j);
            tu_b64(key, k64);
            free(bodies[j]);
            bodies[j] = malloc(128);
            snprintf(bodies[j], 128, "{\"key\":\"%s\",\"value\":\"dg==\"}", k64);
        }
        ck_assert_uint_eq(tu_pipeline(c->m[i].s.port, "/v3/kv/put", bodies, BATCH, st), BATCH);
        for (int j = 0; j < BATCH; j++)
            ck_assert_int_eq(st[j], 200);
    }
    for (int j = 0; j < BATCH; j++)
        free(bodies[j]);
    free(bodies);
    free(st);
}

START_TEST(snapshot_catchup)
{
    struct cluster c = {.extra = {"--snapshot-count", "1000", NULL}};
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    int f = (l + 1) % c.n;
    put_ok(&c, l, "s/first", "x");
    tu_server_stop_keep(&c.m[f].s, 1);
    puts_pipelined(&c, l, 0, 20000);
    const char *argv[32];
    member_flags(&c, f, argv, 32);
    tu_server_restart(&c.m[f].s, argv);
    char *got = get_ok(&c, f, "s/19999");
    ck_assert_str_eq(got, "dg==");
    free(got);
    same_data(&c);
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "grep -q 'installed the snapshot' %s", c.m[f].s.log);
    ck_assert_msg(system(cmd) == 0, "the follower did not catch up through a snapshot");
    /* Loaded a slice per loop turn (2,000 records), not in one go. */
    snprintf(cmd, sizeof(cmd),
             "grep -Eq 'loaded the snapshot at index [0-9]+ in ([4-9]|[1-9][0-9]+) slices' %s",
             c.m[f].s.log);
    ck_assert_msg(system(cmd) == 0, "the snapshot was not loaded in slices");
    /* It goes on from there: a write through it, read everywhere; and it restarts from the
     * installed state (its own identity, the snapshot's data). */
    put_ok(&c, f, "s/last", "y");
    same_data(&c);
    char id[24];
    strcpy(id, c.m[f].id);
    tu_server_stop_keep(&c.m[f].s, 1);
    tu_server_restart(&c.m[f].s, argv);
    char *status = post(c.m[f].s.port, "/v3/maintenance/status", "{}", NULL);
    tu_json_str(status, "member_id", c.m[f].id, sizeof(c.m[f].id));
    free(status);
    ck_assert_str_eq(c.m[f].id, id);
    same_data(&c);
    /* LMDB: it stops (as a crash would) while a snapshot it loaded takes the old store's
     * place: just before the swap, then just after it, before the WAL records the snapshot.
     * Each start puts right what the crash left; the leader sends the snapshot again. */
    if (strcmp(backend(), "lmdb") == 0) {
        tu_server_stop_keep(&c.m[f].s, 1);
        puts_pipelined(&c, l, 20000, 7000);
        static char *const before[] = {"METASTORE_CRASH_AT=defrag_before_swap", NULL};
        static char *const after[] = {"METASTORE_CRASH_AT=defrag_after_swap", NULL};
        char *out = NULL;
        int code = run_member(&c, f, c.m[f].s.dir, NULL, before, 60000, &out);
        ck_assert_msg(code == 86, "status %d, output: %s", code, out);
        free(out);
        code = run_member(&c, f, c.m[f].s.dir, NULL, after, 60000, &out);
        ck_assert_msg(code == 86, "status %d, output: %s", code, out);
        ck_assert_msg(strstr(out, "left by an interrupted snapshot install"), "%s", out);
        free(out);
        tu_server_restart(&c.m[f].s, argv);
        got = get_ok(&c, f, "s/26999");
        ck_assert_str_eq(got, "dg==");
        free(got);
        same_data(&c);
    }
    cluster_stop(&c);
}
END_TEST

/* ---- two snapshots in one read ---- */

struct backup {
    uint8_t *data;
    size_t len;
    uint64_t index;
    uint64_t term;
};

/* A backup of a one-member cluster after puts of k00..k<n-1>. */
static void take_backup(struct cluster *one, int n, int from, struct backup *b)
{
    char key[32];
    for (int r = from; r < n; r++) {
        snprintf(key, sizeof(key), "k%02d", r);
        put_ok(one, 0, key, key);
    }
    char path[4300];
    snprintf(path, sizeof(path), "%s/backup-%d.snap", one->m[0].s.dir, n);
    tu_fetch_snapshot(one->m[0].s.port, path);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    b->data = malloc(4u << 20);
    ck_assert_ptr_nonnull(b->data);
    b->len = fread(b->data, 1, 4u << 20, f);
    fclose(f);
    ck_assert_uint_gt(b->len, 32);
    ck_assert_uint_lt(b->len, 4u << 20);
    ck_assert_int_eq(memcmp(b->data, "MSSNAP01", 8), 0);
    b->index = be64_get(b->data + 8);
    b->term = be64_get(b->data + 16);
}

static void frame(struct buf *out, enum peer_frame_type type, const void *p, size_t len)
{
    uint8_t h[PEER_FRAME_HDR];
    peer_frame_header(h, type, (uint32_t)len);
    buf_append(out, h, sizeof(h));
    buf_append(out, p, len);
}

/* A MsgSnap from `from` (term 2) and its data, as the transport frames them. */
static void snap_frames(struct buf *out, const struct backup *b, uint64_t from, uint64_t to)
{
    struct raft_msg m = {.type = RAFT_MSG_SNAP, .from = from, .to = to, .term = 2};
    m.snap.index = b->index;
    m.snap.term = b->term;
    m.snap.conf.n_voters = 2;
    m.snap.conf.voters[0] = from < to ? from : to;
    m.snap.conf.voters[1] = from < to ? to : from;
    struct buf msg;
    buf_init(&msg);
    ck_assert_int_eq(raft_msg_encode(&m, &msg), MS_OK);
    frame(out, PEER_FRAME_SNAP_BEGIN, msg.p, msg.len);
    buf_fini(&msg);
    frame(out, PEER_FRAME_SNAP_DATA, b->data, b->len);
    uint8_t end[PEER_SNAP_END_BYTES];
    be64_put(end, b->len);
    be32_put(end + 8, crc32c(0, b->data, b->len));
    frame(out, PEER_FRAME_SNAP_END, end, sizeof(end));
}

/* Two snapshots arrive in one read, before a Ready takes the first: the core takes in the
 * first (above its commit) and refuses the second (below it, once the first is in). The member
 * installs the first and serves its data; it used to lose the first's file to the second and
 * stop. The second member of the cluster is never started: the test speaks for it. */
START_TEST(snapshot_race)
{
    struct cluster one = {0};
    cluster_start(&one, 1);
    struct backup lo, hi;
    take_backup(&one, 3, 0, &lo);
    take_backup(&one, 12, 3, &hi);
    cluster_stop(&one);
    ck_assert_uint_gt(hi.index, lo.index);

    struct cluster c = {0};
    cluster_start_opt(&c, 2, 0, false);
    int fake = listen_on(c.m[1].peer_port); /* m2's peer port, before m1 dials it */
    ck_assert_int_ge(fake, 0);
    launch(&c, 0);
    char *st = NULL;
    for (int t = 0; t < 400 && !st; t++) {
        int status = 0, fd = tu_connect(c.m[0].s.port);
        if (fd >= 0) {
            close(fd);
            st = post(c.m[0].s.port, "/v3/maintenance/status", "{}", &status);
        }
        if (st && status != 200) {
            free(st);
            st = NULL;
        }
        if (!st)
            tu_sleep_ms(50);
    }
    ck_assert_ptr_nonnull(st);
    char id1[24], cid[24];
    tu_json_str(st, "member_id", id1, sizeof(id1));
    tu_json_str(st, "cluster_id", cid, sizeof(cid));
    free(st);
    char *ml = post(c.m[0].s.port, "/v3/cluster/member/list", "{}", NULL);
    uint64_t me = strtoull(id1, NULL, 10), cluster = strtoull(cid, NULL, 10), other = 0;
    for (const char *q = ml; (q = strstr(q, "\"ID\":\"")) != NULL; q += 6) {
        uint64_t id = strtoull(q + 6, NULL, 10);
        if (id != me)
            other = id;
    }
    free(ml);
    ck_assert_uint_ne(other, 0);

    /* m1 dials m2's stream: answer it as m2 would, then send both snapshots in one write. */
    struct pollfd pf = {.fd = fake, .events = POLLIN};
    ck_assert_int_eq(poll(&pf, 1, 10000), 1);
    int conn = accept(fake, NULL, NULL);
    ck_assert_int_ge(conn, 0);
    char req[4096];
    ck_assert_int_gt(read(conn, req, sizeof(req)), 0);
    char head[512];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                      "X-Etcd-Cluster-ID: %016" PRIx64 "\r\nX-Server-From: %016" PRIx64
                      "\r\nTransfer-Encoding: chunked\r\n\r\n",
                      cluster, other);
    struct buf body, all;
    buf_init(&body);
    buf_init(&all);
    snap_frames(&body, &hi, other, me);
    snap_frames(&body, &lo, other, me);
    char cl[32];
    int n = snprintf(cl, sizeof(cl), "%zx\r\n", body.len);
    buf_append(&all, head, (size_t)hl);
    buf_append(&all, cl, (size_t)n);
    buf_append(&all, body.p, body.len);
    buf_append(&all, "\r\n", 2);
    tu_send_all(conn, (const char *)all.p, all.len);
    buf_fini(&body);
    buf_fini(&all);

    /* The first is installed: its last key reads on m1, which is still running. */
    char *v = NULL;
    for (int t = 0; t < 100 && !v; t++) {
        ck_assert_msg(waitpid(c.m[0].s.pid, NULL, WNOHANG) == 0, "m1 stopped, see %s",
                      c.m[0].s.log);
        int status;
        v = get(&c, 0, "k11", true, &status);
        if (!v)
            tu_sleep_ms(100);
    }
    ck_assert_ptr_nonnull(v);
    char want[64];
    tu_b64("k11", want);
    ck_assert_str_eq(v, want);
    free(v);
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "grep -q 'was not taken in' %s", c.m[0].s.log);
    ck_assert_msg(system(cmd) == 0, "the refusal is not logged");
    close(conn);
    close(fake);
    free(lo.data);
    free(hi.data);
    cluster_stop(&c);
}
END_TEST

/* A backup taken from one member restores a whole new cluster, as etcdctl snapshot restore
 * does: each member's data directory is built from the same file with the new cluster's flags,
 * then the members start and serve the data, with its revisions, as one cluster. */
/* How many members a member list answer names. */
static int members_listed(const char *list)
{
    int n = 0;
    for (const char *p = list; (p = strstr(p, "\"ID\":")); p++)
        n++;
    return n;
}

static int member_slot(struct cluster *c);
static void member_add_ok(struct cluster *c, int via, int i, bool learner);
static void status_field(struct cluster *c, int i, const char *field, char *out, size_t cap);
static char *member_op(struct cluster *c, int via, const char *op, const char *body, int *status);

START_TEST(restore)
{
    struct cluster c = {0};
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    char key[32];
    for (int r = 0; r < 60; r++) {
        snprintf(key, sizeof(key), "r%02d", r);
        put_ok(&c, r % c.n, key, key);
    }
    int f = (l + 1) % c.n;
    /* The backed-up cluster has a fourth member, a learner never started. */
    tu_sleep_ms(5500);
    int extra = member_slot(&c);
    member_add_ok(&c, l, extra, true);
    char old_ids[3][24], old_cluster[24];
    for (int i = 0; i < 3; i++)
        strcpy(old_ids[i], c.m[i].id);
    status_field(&c, l, "cluster_id", old_cluster, sizeof(old_cluster));
    char *before = post(c.m[f].s.port, "/v3/maintenance/hash", "{}", NULL);
    char hash[32];
    tu_json_str(before, "hash", hash, sizeof(hash));
    char snap[4300];
    snprintf(snap, sizeof(snap), "%s/backup.snap", c.m[f].s.dir);
    tu_fetch_snapshot(c.m[f].s.port, snap);
    /* The backup outlives the old cluster's directories. */
    char keep[4300], cmd[9000];
    snprintf(keep, sizeof(keep), "%s.restore.snap", c.m[f].s.dir);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", snap, keep);
    ck_assert_int_eq(system(cmd), 0);
    cluster_stop(&c);

    struct cluster n = {.extra = {"--restore-snapshot", keep, NULL}, .token = "restored"};
    cluster_start_opt(&n, 3, 0, false);
    for (int i = 0; i < n.n; i++) {
        char *out = NULL;
        int code = run_member(&n, i, n.m[i].s.dir, NULL, NULL, 20000, &out);
        ck_assert_msg(code == 0, "restore of member %d: status %d, output: %s", i, code, out);
        free(out);
    }
    unlink(keep);
    n.extra[0] = NULL;
    for (int i = 0; i < n.n; i++)
        launch(&n, i);
    wait_members(&n, n.n);
    ck_assert_int_ge(leader(&n, 20000), 0);
    /* Every member has the backup's data and revision; the old keys read the same. */
    for (int i = 0; i < n.n; i++) {
        char *h = post(n.m[i].s.port, "/v3/maintenance/hash", "{}", NULL);
        char got_hash[32];
        tu_json_str(h, "hash", got_hash, sizeof(got_hash));
        ck_assert_msg(strcmp(got_hash, hash) == 0, "member %d: %s, the backup's %s", i, h, before);
        free(h);
        char *v = get_ok(&n, i, "r59");
        ck_assert_str_eq(v, "cjU5");
        free(v);
    }
    free(before);
    /* A new cluster: the members of the restore's flags alone, new IDs. */
    char cluster[24];
    status_field(&n, 0, "cluster_id", cluster, sizeof(cluster));
    ck_assert_str_ne(cluster, old_cluster);
    char *list = member_op(&n, 1, "list", "{}", NULL);
    int listed = members_listed(list);
    ck_assert_msg(listed == 3 && !strstr(list, "isLearner"), "%s", list);
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(strstr(list, n.m[i].id) && strcmp(n.m[i].id, old_ids[i]) != 0, "%s", list);
        ck_assert_msg(!strstr(list, old_ids[i]), "old member %s in %s", old_ids[i], list);
    }
    free(list);
    /* It is a new cluster that takes writes through any member. */
    put_ok(&n, 2, "after", "x");
    same_data(&n);
    cluster_stop(&n);
}
END_TEST

/* POST body to member i's path with the token in Authorization (NULL: none); the body, status
 * in *status. */
static char *post_auth(struct cluster *c, int i, const char *path, const char *body,
                       const char *token, int *status)
{
    char hdr[600] = "";
    if (token)
        snprintf(hdr, sizeof(hdr), "Authorization: %s\r\n", token);
    struct tu_resp r;
    tu_http_hdr(c->m[i].s.port, "POST", path, hdr, body, &r);
    *status = r.status;
    char *b = strdup(r.body ? r.body : "");
    tu_resp_free(&r);
    return b;
}

static void ok_auth(struct cluster *c, int i, const char *path, const char *body, const char *token)
{
    int st;
    char *b = post_auth(c, i, path, body, token, &st);
    ck_assert_msg(st == 200, "%s %s: %d %s", path, body, st, b);
    free(b);
}

static char *login(struct cluster *c, int i, const char *user, const char *pw)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"password\":\"%s\"}", user, pw);
    int st;
    char *b = post_auth(c, i, "/v3/auth/authenticate", body, NULL, &st);
    char tok[256];
    tu_json_str(b, "token", tok, sizeof(tok));
    ck_assert_msg(st == 200 && tok[0], "authenticate %s: %d %s", user, st, b);
    free(b);
    return strdup(tok);
}

/* Permissions are checked again when an entry applies, against the auth store as of that entry
 * (etcd's authApplierV3): a follower whose store lags lets a write pass its own check, but the
 * leader's log orders it after the revoke, and it fails on every member. */
START_TEST(auth_apply)
{
    struct cluster c = {0};
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    int f = (l + 1) % c.n;
    ok_auth(&c, l, "/v3/auth/user/add", "{\"name\":\"root\",\"password\":\"rootpw\"}", NULL);
    ok_auth(&c, l, "/v3/auth/user/grant", "{\"user\":\"root\",\"role\":\"root\"}", NULL);
    ok_auth(&c, l, "/v3/auth/user/add", "{\"name\":\"u\",\"password\":\"upw\"}", NULL);
    ok_auth(&c, l, "/v3/auth/role/add", "{\"name\":\"w\"}", NULL);
    /* key "k": a2s= */
    ok_auth(&c, l, "/v3/auth/role/grant",
            "{\"name\":\"w\",\"perm\":{\"permType\":\"READWRITE\",\"key\":\"a2s=\"}}", NULL);
    ok_auth(&c, l, "/v3/auth/user/grant", "{\"user\":\"u\",\"role\":\"w\"}", NULL);
    ok_auth(&c, l, "/v3/auth/enable", "{}", NULL);
    char *root = login(&c, l, "root", "rootpw");
    char *u = login(&c, f, "u", "upw");
    ok_auth(&c, f, "/v3/kv/put", "{\"key\":\"a2s=\",\"value\":\"MQ==\"}", u);
    /* A connection to the follower, accepted, then the follower stopped. */
    int fd = tu_connect(c.m[f].s.port);
    ck_assert_int_ge(fd, 0);
    tu_sleep_ms(300);
    ck_assert_int_eq(kill(c.m[f].s.pid, SIGSTOP), 0);
    c.m[f].stopped = true;
    /* The revoke commits through the other two; the leader's append of it waits in the
     * stopped follower's socket. */
    ok_auth(&c, l, "/v3/auth/role/revoke", "{\"role\":\"w\",\"key\":\"a2s=\"}", root);
    tu_sleep_ms(500);
    char req[1024];
    const char *body = "{\"key\":\"a2s=\",\"value\":\"Mg==\"}";
    snprintf(req, sizeof(req),
             "POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nConnection: close\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             u, strlen(body), body);
    tu_send_all(fd, req, strlen(req));
    /* On waking, the follower reads the leader's append and the put in one pass; its store
     * applies the revoke only after the append is durable, so the put passes its check there
     * and goes to the leader, whose log has the revoke first. */
    ck_assert_int_eq(kill(c.m[f].s.pid, SIGCONT), 0);
    c.m[f].stopped = false;
    char *ans = tu_read_all(fd, 20000, NULL);
    close(fd);
    ck_assert_msg(strstr(ans, "revision of auth store is old") && !strstr(ans, " 200 OK"),
                  "the put through the lagging follower: %s", ans);
    free(ans);
    /* Nobody applied it. */
    for (int i = 0; i < c.n; i++) {
        int st;
        char *b = post_auth(&c, i, "/v3/kv/range", "{\"key\":\"a2s=\"}", root, &st);
        ck_assert_msg(st == 200 && strstr(b, "\"value\":\"MQ==\""), "member %d: %s", i, b);
        free(b);
    }
    free(u);
    free(root);
    cluster_stop(&c);
}
END_TEST

/* A watch on a follower across a leader change: every event once, in order, no gap. */
START_TEST(watch_failover)
{
    struct cluster c = {0};
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    int f = (l + 1) % c.n, g = (l + 2) % c.n;
    char *wbuf;
    size_t wlen;
    int wfd =
        watch_open(c.m[f].s.port, "{\"create_request\":{\"key\":\"dy8=\",\"range_end\":\"dzA=\"}}",
                   "", &wbuf, &wlen);
    char key[32];
    for (int r = 0; r < 20; r++) {
        snprintf(key, sizeof(key), "w/%02d", r);
        put_ok(&c, r % 2 ? l : g, key, "v");
    }
    tu_server_kill(&c.m[l].s);
    ck_assert_int_ge(leader(&c, 30000), 0);
    for (int r = 20; r < 40; r++) {
        snprintf(key, sizeof(key), "w/%02d", r);
        put_ok(&c, r % 2 ? f : g, key, "v");
    }
    int64_t until = tu_now_ms() + 20000;
    char want[64];
    tu_b64("w/39", want);
    while ((!wbuf || !strstr(wbuf, want)) && tu_now_ms() < until)
        read_stream(wfd, &wbuf, &wlen, 200);
    const char *at = wbuf;
    long last_rev = 0;
    for (int r = 0; r < 40; r++) {
        snprintf(key, sizeof(key), "w/%02d", r);
        tu_b64(key, want);
        const char *e = strstr(wbuf, want);
        ck_assert_msg(e && e > at && !strstr(e + 1, want), "event %s: %s", key, wbuf);
        const char *mr = strstr(e, "\"mod_revision\":\"");
        ck_assert_ptr_nonnull(mr);
        long rev = strtol(mr + 16, NULL, 10);
        ck_assert_msg(last_rev == 0 || rev == last_rev + 1, "%s at %ld after %ld", key, rev,
                      last_rev);
        last_rev = rev;
        at = e;
    }
    free(wbuf);
    close(wfd);
    same_data(&c);
    cluster_stop(&c);
}
END_TEST

/* ---- membership: add, promote, remove, replace; leadership transfer ---- */

/* A new member slot (its ports, name and URLs), not started: its index. */
static int member_slot(struct cluster *c)
{
    ck_assert_int_lt(c->n, MAX_MEMBERS);
    int i = c->n++;
    struct member *m = &c->m[i];
    memset(m, 0, sizeof(*m));
    tu_server_init(&m->s);
    pick_peer_port(c, i);
    m->advert_port = m->peer_port;
    snprintf(m->name, sizeof(m->name), "m%u", (unsigned)(i + 1) % 1000u);
    snprintf(m->peer_url, sizeof(m->peer_url), "http://127.0.0.1:%d", m->peer_port);
    snprintf(m->listen_url, sizeof(m->listen_url), "http://127.0.0.1:%d", m->peer_port);
    return i;
}

/* --initial-cluster as member add prints it: every member in the cluster now (gone marks the
 * removed ones). */
static void initial_now(struct cluster *c, const bool *gone)
{
    size_t o = 0;
    for (int i = 0; i < c->n; i++)
        if (!gone[i])
            o += (size_t)snprintf(c->initial + o, sizeof(c->initial) - o, "%s%s=%s", o ? "," : "",
                                  c->m[i].name, c->m[i].peer_url);
}

/* POST a membership change through member via: the body (malloc'd), the status in *status. */
static char *member_op(struct cluster *c, int via, const char *op, const char *body, int *status)
{
    char path[64];
    snprintf(path, sizeof(path), "/v3/cluster/member/%s", op);
    return post(c->m[via].s.port, path, body, status);
}

/* Add member i through via (retried while the cluster is not yet healthy: etcd's 5 s
 * HealthInterval after the members connected); its ID from the answer. */
static void member_add_ok(struct cluster *c, int via, int i, bool learner)
{
    char body[160];
    snprintf(body, sizeof(body), "{\"peerURLs\":[\"%s\"]%s}", c->m[i].peer_url,
             learner ? ",\"isLearner\":true" : "");
    for (int t = 0; t < 100; t++) {
        int status;
        char *got = member_op(c, via, "add", body, &status);
        if (status == 200) {
            const char *mem = strstr(got, "\"member\":");
            ck_assert_ptr_nonnull(mem);
            tu_json_str(mem, "ID", c->m[i].id, sizeof(c->m[i].id));
            ck_assert_msg(!strstr(mem, "\"name\"") || strstr(mem, "\"name\"") > strstr(mem, "}"),
                          "a new member has no name: %s", got);
            ck_assert_msg(learner == (strstr(mem, "\"isLearner\":true") != NULL &&
                                      strstr(mem, "\"isLearner\":true") < strstr(mem, "}")),
                          "%s", got);
            free(got);
            return;
        }
        ck_assert_msg(status == 503 && strstr(got, "unhealthy cluster"), "add: %d %s", status, got);
        free(got);
        tu_sleep_ms(100);
    }
    ck_abort_msg("member add kept answering unhealthy");
}

/* The error answer of a membership call: status and message. */
static void member_op_fails(struct cluster *c, int via, const char *op, const char *body,
                            int want_status, const char *want)
{
    int status;
    char *got = member_op(c, via, op, body, &status);
    ck_assert_msg(status == want_status && strstr(got, want), "%s %s: %d %s (want %d %s)", op, body,
                  status, got, want_status, want);
    free(got);
}

/* Start member i to join the cluster (--initial-cluster-state existing) and wait until it
 * answers /health. */
static void join(struct cluster *c, int i, const bool *gone)
{
    initial_now(c, gone);
    c->m[i].joins = true;
    launch(c, i);
    tu_server_wait_healthy(&c->m[i].s);
}

/* A removed member stops by itself: wait (bounded) for its clean exit. */
static void wait_exit_ok(struct cluster *c, int i, int timeout_ms)
{
    int status = 0;
    int64_t until = tu_now_ms() + timeout_ms;
    pid_t r = 0;
    while ((r = waitpid(c->m[i].s.pid, &status, WNOHANG)) == 0 && tu_now_ms() < until)
        tu_sleep_ms(50);
    ck_assert_msg(r == c->m[i].s.pid, "member %d did not stop after its removal (%s)", i,
                  c->m[i].s.log);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "member %d: exit status %d", i,
                  status);
    c->m[i].s.pid = 0;
}

/* The status field of member i ("" if absent) into out. */
static void status_field(struct cluster *c, int i, const char *field, char *out, size_t cap)
{
    char *st = post(c->m[i].s.port, "/v3/maintenance/status", "{}", NULL);
    tu_json_str(st, field, out, cap);
    free(st);
}

/* How many keys k/ member i holds, read locally (serializable). */
static long count_k(struct cluster *c, int i)
{
    char *got = post(c->m[i].s.port, "/v3/kv/range",
                     "{\"key\":\"ay8=\",\"range_end\":\"azA=\",\"count_only\":true,"
                     "\"serializable\":true}",
                     NULL);
    long n = tu_json_num(got, "count", 0);
    free(got);
    return n;
}

/* Writes through a member from a thread, while the test changes the membership: every
 * acknowledged key is recorded, and the longest time one write took. */
struct writer {
    struct cluster *c;
    int via;
    const char *prefix;
    volatile bool stop;
    int acked;      /* keys <prefix>0 .. <prefix>acked-1 were acknowledged, in order */
    int failed;     /* answers other than 200 (indeterminate or refused) */
    int64_t max_ms; /* the longest write */
    pthread_t t;
};

static void *writer_run(void *arg)
{
    struct writer *w = arg;
    for (int k = 0; !w->stop && k < 1000000; k++) {
        char key[32], k64[64], body[160];
        snprintf(key, sizeof(key), "%s%d", w->prefix, w->acked);
        tu_b64(key, k64);
        snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"dg==\"}", k64);
        int64_t t0 = tu_now_ms();
        int status;
        char *got = post(w->c->m[w->via].s.port, "/v3/kv/put", body, &status);
        free(got);
        int64_t ms = tu_now_ms() - t0;
        if (ms > w->max_ms)
            w->max_ms = ms;
        if (status == 200)
            w->acked++;
        else
            w->failed++;
    }
    return NULL;
}

static void writer_start(struct writer *w, struct cluster *c, int via, const char *prefix)
{
    memset(w, 0, sizeof(*w));
    w->c = c;
    w->via = via;
    w->prefix = prefix;
    ck_assert_int_eq(pthread_create(&w->t, NULL, writer_run, w), 0);
}

static void writer_stop(struct writer *w)
{
    w->stop = true;
    pthread_join(w->t, NULL);
}

/* Every key the writer had acknowledged is on member i. */
static void writer_check(struct cluster *c, int i, const struct writer *w)
{
    for (int k = 0; k < w->acked; k += 1 + k / 64) {
        char key[32];
        snprintf(key, sizeof(key), "%s%d", w->prefix, k);
        int status;
        char *v = get(c, i, key, true, &status);
        ck_assert_msg(v && strcmp(v, "dg==") == 0, "member %d lost acknowledged %s", i, key);
        free(v);
    }
    if (w->acked) {
        char key[32];
        snprintf(key, sizeof(key), "%s%d", w->prefix, w->acked - 1);
        int status;
        char *v = get(c, i, key, true, &status);
        ck_assert_msg(v && strcmp(v, "dg==") == 0, "member %d lost acknowledged %s", i, key);
        free(v);
    }
}

/* 3 voters → a learner is added, its errors, it joins and catches up (through a snapshot)
 * while writes go on → promoted → 4 voters → a follower is removed and stops by itself → 3
 * voters. No election all along; every acknowledged write on every member. */
START_TEST(members)
{
    struct cluster c = {.extra = {"--snapshot-count", "1000", NULL}};
    cluster_start(&c, 3);
    bool gone[MAX_MEMBERS] = {0};
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    int f = (l + 1) % 3;
    char term0[24];
    status_field(&c, l, "raftTerm", term0, sizeof(term0));
    puts_pipelined(&c, l, 0, 8000);
    for (int i = 0; i < 200; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k/%d", i);
        put_ok(&c, i % 3, key, "v");
    }
    /* The errors that need no new member (etcd's, as the reference captured them), once the
     * members have been connected for etcd's HealthInterval (5 s). */
    tu_sleep_ms(5500);
    member_op_fails(&c, f, "add", "{\"peerURLs\":[\"not a url\"]}", 400,
                    "given member URLs are invalid");
    member_op_fails(&c, f, "add", "{\"peerURLs\":[\"http://127.0.0.1:1/path\"]}", 400,
                    "given member URLs are invalid");
    member_op_fails(&c, l, "add", "{}", 400, "given member URLs are invalid");
    char body[256];
    snprintf(body, sizeof(body), "{\"peerURLs\":[\"%s\"]}", c.m[f].peer_url);
    member_op_fails(&c, f, "add", body, 412, "Peer URLs already exists");
    member_op_fails(&c, f, "remove", "{\"ID\":\"42\"}", 404, "member not found");
    member_op_fails(&c, f, "remove", "{}", 404, "member not found");
    member_op_fails(&c, f, "update", "{\"ID\":\"42\",\"peerURLs\":[\"http://127.0.0.1:9\"]}", 404,
                    "member not found");
    snprintf(body, sizeof(body), "{\"ID\":\"%s\"}", c.m[f].id);
    member_op_fails(&c, l, "promote", body, 412, "can only promote a learner member");
    member_op_fails(&c, f, "promote", body, 412, "can only promote a learner member");
    member_op_fails(&c, f, "promote", "{\"ID\":\"42\"}", 404, "member not found");

    /* A learner: listed without a name until it starts; not in sync before it has. */
    int n4 = member_slot(&c);
    member_add_ok(&c, f, n4, true);
    char *list = member_op(&c, l, "list", "{}", NULL);
    ck_assert_msg(strstr(list, c.m[n4].peer_url) && strstr(list, "\"isLearner\":true"), "%s", list);
    free(list);
    snprintf(body, sizeof(body), "{\"ID\":\"%s\"}", c.m[n4].id);
    member_op_fails(&c, f, "promote", body, 412, "which is in sync with leader");
    member_op_fails(&c, l, "promote", body, 412, "which is in sync with leader");
    member_op_fails(&c, l, "add", "{\"peerURLs\":[\"http://127.0.0.1:1\"],\"isLearner\":true}", 412,
                    "too many learner members in cluster");

    /* It joins and catches up while writes go on. */
    struct writer w;
    writer_start(&w, &c, f, "w/");
    int64_t t0 = tu_now_ms();
    join(&c, n4, gone);
    char want[24], got[24] = "";
    status_field(&c, l, "raftIndex", want, sizeof(want));
    for (int t = 0; t < 600 && strtoull(got, NULL, 10) < strtoull(want, NULL, 10); t++) {
        status_field(&c, n4, "raftAppliedIndex", got, sizeof(got));
        if (strtoull(got, NULL, 10) < strtoull(want, NULL, 10))
            tu_sleep_ms(50);
    }
    int64_t caught_ms = tu_now_ms() - t0;
    char db[24];
    status_field(&c, n4, "dbSize", db, sizeof(db));
    fprintf(stderr, "learner caught up to index %s (%ld keys, db %s bytes) in %lld ms\n", want,
            8000 + count_k(&c, n4), db, (long long)caught_ms);
    ck_assert_msg(strtoull(got, NULL, 10) >= strtoull(want, NULL, 10), "the learner is at %s of %s",
                  got, want);
    ck_assert_int_eq(count_k(&c, n4), 200);
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "grep -q 'installed the snapshot' %s", c.m[n4].s.log);
    ck_assert_msg(system(cmd) == 0, "the learner did not catch up through a snapshot");
    char st[512];
    char *stj = post(c.m[n4].s.port, "/v3/maintenance/status", "{}", NULL);
    snprintf(st, sizeof(st), "%s", stj);
    free(stj);
    ck_assert_msg(strstr(st, "\"isLearner\":true"), "%s", st);
    /* A learner serves status and serializable ranges only. */
    int status;
    char *v = get(&c, n4, "k/1", true, &status);
    ck_assert_msg(v && strcmp(v, "dg==") == 0, "serializable range on the learner: %d", status);
    free(v);
    ck_assert_ptr_null(get(&c, n4, "k/1", false, &status));
    ck_assert_int_eq(status, 503);
    char *got_put = post(c.m[n4].s.port, "/v3/kv/put", "{\"key\":\"YQ==\"}", &status);
    ck_assert_msg(status == 503 && strstr(got_put, "rpc not supported for learner"), "%s", got_put);
    free(got_put);
    member_op_fails(&c, n4, "list", "{}", 503, "rpc not supported for learner");
    member_op_fails(&c, n4, "promote", body, 503, "rpc not supported for learner");

    /* Promoted through a follower (which asks the leader): 4 voters. */
    char *pr = member_op(&c, f, "promote", body, &status);
    ck_assert_msg(status == 200 && !strstr(pr, "\"member\":"), "promote: %d %s", status, pr);
    free(pr);
    member_op_fails(&c, f, "promote", body, 412, "can only promote a learner member");
    stj = post(c.m[n4].s.port, "/v3/maintenance/status", "{}", NULL);
    ck_assert_msg(!strstr(stj, "isLearner"), "%s", stj);
    free(stj);
    free(get_ok(&c, n4, "k/1")); /* a voter serves linearizable reads */

    /* A follower removed: it stops by itself; its ID is gone for good. */
    int rm = (l + 2) % 3;
    snprintf(body, sizeof(body), "{\"ID\":\"%s\"}", c.m[rm].id);
    char *rmv = NULL;
    for (int t = 0; t < 100; t++) { /* until n4 has been connected for 5 s */
        free(rmv);
        rmv = member_op(&c, n4, "remove", body, &status);
        if (status != 503 || !strstr(rmv, "unhealthy cluster"))
            break;
        tu_sleep_ms(100);
    }
    ck_assert_msg(status == 200 && !strstr(rmv, c.m[rm].peer_url), "remove: %d %s", status, rmv);
    free(rmv);
    gone[rm] = true;
    wait_exit_ok(&c, rm, 10000);
    member_op_fails(&c, l, "remove", body, 404, "member not found");
    writer_stop(&w);
    fprintf(stderr, "writes during the changes: %d acknowledged, %d not, longest %lld ms\n",
            w.acked, w.failed, (long long)w.max_ms);
    ck_assert_int_gt(w.acked, 0);
    char term[24];
    status_field(&c, l, "raftTerm", term, sizeof(term));
    ck_assert_msg(strcmp(term, term0) == 0, "an election happened: term %s, then %s", term0, term);
    ck_assert_int_eq(leader(&c, 20000), l);
    for (int i = 0; i < c.n; i++) {
        if (!alive(&c, i))
            continue;
        ck_assert_int_eq(count_k(&c, i), 200);
        writer_check(&c, i, &w);
    }
    same_data(&c);
    list = member_op(&c, l, "list", "{}", NULL);
    int listed = members_listed(list);
    ck_assert_msg(listed == 3 && !strstr(list, "isLearner"), "%s", list);
    free(list);
    cluster_stop(&c);
}
END_TEST

/* A member lost for good (kill -9, its data wiped) is removed (a member that is down may be)
 * and replaced by a new one with a new data directory, which joins through a snapshot. */
START_TEST(member_replace)
{
    struct cluster c = {.extra = {"--snapshot-count", "1000", NULL}};
    cluster_start(&c, 3);
    bool gone[MAX_MEMBERS] = {0};
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    int f = (l + 1) % 3;
    puts_pipelined(&c, l, 0, 7000);
    tu_server_kill(&c.m[f].s);
    tu_rmtree(c.m[f].s.dir);
    gone[f] = true;
    char body[128];
    snprintf(body, sizeof(body), "{\"ID\":\"%s\"}", c.m[f].id);
    int status;
    char *got = member_op(&c, l, "remove", body, &status);
    ck_assert_msg(status == 200, "remove the dead member: %d %s", status, got);
    free(got);
    int n = member_slot(&c);
    member_add_ok(&c, (l + 2) % 3, n, false);
    join(&c, n, gone);
    char *v = get_ok(&c, n, "s/06999");
    ck_assert_str_eq(v, "dg==");
    free(v);
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "grep -q 'installed the snapshot' %s", c.m[n].s.log);
    ck_assert_msg(system(cmd) == 0, "the new member did not join through a snapshot");
    put_ok(&c, n, "after", "x");
    wait_members(&c, 0);
    status_field(&c, n, "member_id", c.m[n].id, sizeof(c.m[n].id));
    same_data(&c);
    /* It restarts as itself, from its own data. */
    char id[24];
    strcpy(id, c.m[n].id);
    tu_server_stop_keep(&c.m[n].s, 1);
    const char *argv[32];
    member_flags(&c, n, argv, 32);
    tu_server_restart(&c.m[n].s, argv);
    status_field(&c, n, "member_id", c.m[n].id, sizeof(c.m[n].id));
    ck_assert_str_eq(c.m[n].id, id);
    same_data(&c);
    cluster_stop(&c);
}
END_TEST

/* A member that joined (through the log, no snapshot) restarts first while every other member
 * is down: it does not need them to start (etcd, with a WAL, does not either) and waits for
 * them. The memory backend knows the members only once it replayed the log: it used to ask
 * the others for them again, and refuse to start when none answered (found by the fault
 * campaign: a replaced member, then a kill of all). */
START_TEST(join_restart_alone)
{
    struct cluster c = {0};
    cluster_start(&c, 3);
    bool gone[MAX_MEMBERS] = {0};
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    put_ok(&c, l, "before", "x");
    int n = member_slot(&c);
    member_add_ok(&c, l, n, false);
    join(&c, n, gone);
    put_ok(&c, n, "joined", "x");
    wait_members(&c, 0);
    for (int i = 0; i < c.n; i++)
        tu_server_kill(&c.m[i].s);
    const char *argv[32];
    member_flags(&c, n, argv, 32);
    tu_server_launch(&c.m[n].s, argv);
    for (int t = 0; t < 30; t++) { /* peers unreachable: 3 s, longer than its 2 s asking */
        int st;
        ck_assert_msg(waitpid(c.m[n].s.pid, &st, WNOHANG) == 0,
                      "the joined member did not restart without the others, see %s", c.m[n].s.log);
        tu_sleep_ms(100);
    }
    for (int i = 0; i < c.n; i++) {
        if (i == n)
            continue;
        member_flags(&c, i, argv, 32);
        tu_server_launch(&c.m[i].s, argv);
    }
    for (int i = 0; i < c.n; i++)
        tu_server_wait_healthy(&c.m[i].s);
    put_ok(&c, n, "after", "x");
    same_data(&c);
    cluster_stop(&c);
}
END_TEST

struct promote_call {
    struct cluster *c;
    int via;
    char body[96];
    int status;
    char *got;
};

static void *promote_thread(void *arg)
{
    struct promote_call *p = arg;
    p->got = member_op(p->c, p->via, "promote", p->body, &p->status);
    return NULL;
}

/* Two promotes of one learner at once, one through the leader and one through a follower: the
 * core takes one conf change at a time and turns a second one proposed before the first is
 * applied into an empty entry. Each must still be answered (200 for one, 412 "can only promote
 * a learner member" for the other), never left to time out (503): the leader asks again once
 * the first is applied. */
START_TEST(promote_twice)
{
    struct cluster c = {0};
    cluster_start(&c, 3);
    bool gone[MAX_MEMBERS] = {0};
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    int f = (l + 1) % 3;
    put_ok(&c, l, "before", "x");
    int n = member_slot(&c);
    member_add_ok(&c, l, n, true);
    join(&c, n, gone);
    for (int round = 0; round < 50; round++) {
        struct promote_call calls[2] = {{.c = &c, .via = l}, {.c = &c, .via = f}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
            snprintf(calls[i].body, sizeof(calls[i].body), "{\"ID\":\"%s\"}", c.m[n].id);
            ck_assert_int_eq(pthread_create(&th[i], NULL, promote_thread, &calls[i]), 0);
        }
        int ok = 0, refused = 0, not_ready = 0;
        for (int i = 0; i < 2; i++) {
            pthread_join(th[i], NULL);
            struct promote_call *p = &calls[i];
            if (p->status == 200)
                ok++;
            else if (p->status == 412 && strstr(p->got, "in sync with leader"))
                not_ready++; /* "can only promote a learner member which is in sync ..." */
            else if (p->status == 412 && strstr(p->got, "can only promote a learner member"))
                refused++;
            else
                ck_abort_msg("promote through %s: %d %s", i ? "a follower" : "the leader",
                             p->status, p->got);
            free(p->got);
        }
        if (not_ready && !ok) { /* the learner is still catching up: once more */
            tu_sleep_ms(300);
            continue;
        }
        ck_assert_msg(ok == 1 && refused + not_ready == 1, "%d promoted, %d refused, %d not ready",
                      ok, refused, not_ready);
        break;
    }
    put_ok(&c, n, "after", "x"); /* a voter now */
    same_data(&c);
    cluster_stop(&c);
}
END_TEST

/* Removing the leader, asked of a follower and then of the leader itself: leadership moves
 * first (one election, by transfer), the old leader stops by itself, writes go on. */
START_TEST(remove_leader)
{
    struct cluster c = {0};
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    tu_sleep_ms(5500); /* etcd's HealthInterval */
    for (int round = 0; round < 2; round++) {
        int via = round == 0 ? (l + 1) % c.n : l;
        while (!alive(&c, via))
            via = (via + 1) % c.n;
        int other = -1;
        for (int i = 0; i < c.n; i++)
            if (alive(&c, i) && i != l && i != via)
                other = i;
        struct writer w;
        writer_start(&w, &c, round == 0 ? via : (other >= 0 ? other : via), "r/");
        tu_sleep_ms(300);
        char term0[24], term[24], body[128];
        status_field(&c, l, "raftTerm", term0, sizeof(term0));
        snprintf(body, sizeof(body), "{\"ID\":\"%s\"}", c.m[l].id);
        int status;
        int64_t t0 = tu_now_ms();
        char *got = member_op(&c, via, "remove", body, &status);
        int64_t took = tu_now_ms() - t0;
        ck_assert_msg(status == 200 && !strstr(got, c.m[l].peer_url), "remove the leader: %d %s",
                      status, got);
        free(got);
        wait_exit_ok(&c, l, 10000);
        tu_sleep_ms(300);
        writer_stop(&w);
        int nl = leader(&c, 20000);
        ck_assert_int_ge(nl, 0);
        status_field(&c, nl, "raftTerm", term, sizeof(term));
        fprintf(stderr,
                "removing the leader (asked of the %s) took %lld ms, term %s -> %s; writes: %d "
                "acknowledged, %d not, longest %lld ms\n",
                via == l ? "leader" : "follower", (long long)took, term0, term, w.acked, w.failed,
                (long long)w.max_ms);
        ck_assert_msg(strtoull(term, NULL, 10) == strtoull(term0, NULL, 10) + 1,
                      "more than the transfer's election: term %s -> %s", term0, term);
        for (int i = 0; i < c.n; i++)
            if (alive(&c, i))
                writer_check(&c, i, &w);
        put_ok(&c, nl, "after", "x");
        l = nl;
    }
    same_data(&c);
    cluster_stop(&c);
}
END_TEST

/* Leadership moved to a chosen follower through the gateway while writes go on: no
 * acknowledged write lost, a short pause; etcd's errors. */
START_TEST(transfer_load)
{
    struct cluster c = {0};
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    int f = (l + 1) % 3, to = (l + 2) % 3;
    char body[128];
    int status;
    snprintf(body, sizeof(body), "{\"targetID\":\"%s\"}", c.m[to].id);
    char *got = post(c.m[f].s.port, "/v3/maintenance/transfer-leadership", body, &status);
    ck_assert_msg(status == 412 && strstr(got, "etcdserver: not leader"), "%d %s", status, got);
    free(got);
    got = post(c.m[l].s.port, "/v3/maintenance/transfer-leadership", "{\"targetID\":\"42\"}",
               &status);
    ck_assert_msg(status == 412 && strstr(got, "bad leader transferee"), "%d %s", status, got);
    free(got);
    snprintf(body, sizeof(body), "{\"targetID\":\"%s\"}", c.m[l].id);
    got = post(c.m[l].s.port, "/v3/maintenance/transfer-leadership", body, &status);
    ck_assert_msg(status == 200 && strcmp(got, "{}") == 0, "%d %s", status, got);
    free(got);
    /* A learner cannot lead. */
    tu_sleep_ms(5500);
    int ln = member_slot(&c);
    member_add_ok(&c, l, ln, true);
    snprintf(body, sizeof(body), "{\"targetID\":\"%s\"}", c.m[ln].id);
    got = post(c.m[l].s.port, "/v3/maintenance/transfer-leadership", body, &status);
    ck_assert_msg(status == 412 && strstr(got, "bad leader transferee"), "%d %s", status, got);
    free(got);
    struct writer w[2];
    writer_start(&w[0], &c, l, "a/");
    writer_start(&w[1], &c, f, "b/");
    tu_sleep_ms(500);
    snprintf(body, sizeof(body), "{\"targetID\":\"%s\"}", c.m[to].id);
    int64_t t0 = tu_now_ms();
    got = post(c.m[l].s.port, "/v3/maintenance/transfer-leadership", body, &status);
    int64_t took = tu_now_ms() - t0;
    ck_assert_msg(status == 200 && strcmp(got, "{}") == 0, "%d %s", status, got);
    free(got);
    tu_sleep_ms(500);
    writer_stop(&w[0]);
    writer_stop(&w[1]);
    fprintf(stderr,
            "transfer-leadership under load answered in %lld ms; writes through the old leader: "
            "%d acknowledged, %d not, longest %lld ms; through a follower: %d, %d, %lld ms\n",
            (long long)took, w[0].acked, w[0].failed, (long long)w[0].max_ms, w[1].acked,
            w[1].failed, (long long)w[1].max_ms);
    ck_assert_int_eq(leader(&c, 20000), to);
    /* No write failed: those the old leader refused while handing over, and those forwarded to
     * it then, went to the new leader (etcd's were dropped: "request timed out" 7 s later). */
    ck_assert_int_eq(w[0].failed + w[1].failed, 0);
    for (int i = 0; i < 3; i++) {
        writer_check(&c, i, &w[0]);
        writer_check(&c, i, &w[1]);
    }
    same_data(&c);
    cluster_stop(&c);
}
END_TEST

/* Membership changes while a member is down or cut off: the strict reconfiguration check
 * keeps a quorum (etcd's answers: unhealthy cluster, not enough started members). */
START_TEST(member_quorum)
{
    struct cluster c = {0};
    cluster_start_opt(&c, 3, 3, true);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    int a = (l + 1) % 3, b = (l + 2) % 3;
    tu_sleep_ms(5500);
    /* b cut off from the others: a change that needs it is refused. */
    isolate(&c, b, true);
    tu_sleep_ms(1500);
    char body[160];
    snprintf(body, sizeof(body), "{\"ID\":\"%s\"}", c.m[a].id);
    member_op_fails(&c, l, "remove", body, 503, "unhealthy cluster");
    member_op_fails(&c, l, "add", "{\"peerURLs\":[\"http://127.0.0.1:1\"]}", 503,
                    "unhealthy cluster");
    isolate(&c, b, false);
    /* b killed: the same, and the removal of the leader as well; b itself may go. */
    tu_server_kill(&c.m[b].s);
    tu_sleep_ms(1500);
    member_op_fails(&c, l, "remove", body, 503, "unhealthy cluster");
    snprintf(body, sizeof(body), "{\"ID\":\"%s\"}", c.m[l].id);
    member_op_fails(&c, a, "remove", body, 503, "unhealthy cluster");
    member_op_fails(&c, l, "add", "{\"peerURLs\":[\"http://127.0.0.1:1\"]}", 503,
                    "unhealthy cluster");
    member_op_fails(&c, l, "add", "{\"peerURLs\":[\"http://127.0.0.1:1\"],\"isLearner\":true}", 503,
                    "unhealthy cluster");
    snprintf(body, sizeof(body), "{\"ID\":\"%s\"}", c.m[b].id);
    int status;
    char *got = member_op(&c, a, "remove", body, &status);
    ck_assert_msg(status == 200, "remove the dead member: %d %s", status, got);
    free(got);
    /* A voter added and never started: no more voters, and no started one removed (etcd 3.4
     * answers 500 with code 2 there). Writes go on. */
    tu_sleep_ms(5500);
    int n = member_slot(&c);
    member_add_ok(&c, a, n, false);
    member_op_fails(&c, a, "add", "{\"peerURLs\":[\"http://127.0.0.1:1\"]}", 500,
                    "re-configuration failed due to not enough started members");
    snprintf(body, sizeof(body), "{\"ID\":\"%s\"}", c.m[a].id);
    member_op_fails(&c, l, "remove", body, 500,
                    "re-configuration failed due to not enough started members\",\"code\":2");
    put_ok(&c, a, "still", "writes");
    snprintf(body, sizeof(body), "{\"ID\":\"%s\"}", c.m[n].id);
    got = member_op(&c, l, "remove", body, &status);
    ck_assert_msg(status == 200, "remove the member never started: %d %s", status, got);
    free(got);
    c.m[b].s.pid = 0;
    cluster_stop(&c);
}
END_TEST

/* A member moves to a new peer address: its URLs are updated through the cluster, every
 * other member's transport dials the new one without a restart, the member comes back on it.
 * The members and the configuration then survive a restart of every member. */
START_TEST(member_update)
{
    struct cluster c = {0};
    cluster_start(&c, 3);
    int l = leader(&c, 20000);
    ck_assert_int_ge(l, 0);
    int x = (l + 1) % 3;
    tu_sleep_ms(5500);
    put_ok(&c, l, "before", "1");
    int port;
    do
        port = tu_free_port();
    while (port == c.m[0].peer_port || port == c.m[1].peer_port || port == c.m[2].peer_port);
    char url[64], body[200];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    snprintf(body, sizeof(body), "{\"ID\":\"%s\",\"peerURLs\":[\"%s\"]}", c.m[x].id,
             c.m[(x + 1) % 3].peer_url);
    member_op_fails(&c, l, "update", body, 412, "Peer URLs already exists");
    snprintf(body, sizeof(body), "{\"ID\":\"%s\",\"peerURLs\":[\"%s\"]}", c.m[x].id, url);
    int status;
    char *got = member_op(&c, (x + 1) % 3, "update", body, &status);
    ck_assert_msg(status == 200 && strstr(got, url) && !strstr(got, "\"member\":"), "update: %d %s",
                  status, got);
    free(got);
    tu_server_stop_keep(&c.m[x].s, 1);
    snprintf(c.m[x].peer_url, sizeof(c.m[x].peer_url), "%s", url);
    snprintf(c.m[x].listen_url, sizeof(c.m[x].listen_url), "%s", url);
    c.m[x].peer_port = c.m[x].advert_port = port;
    bool gone[MAX_MEMBERS] = {0};
    initial_now(&c, gone); /* the operator's flags say the new address too */
    put_ok(&c, l, "while", "2");
    const char *argv[32];
    member_flags(&c, x, argv, 32);
    tu_server_restart(&c.m[x].s, argv);
    char *v = get_ok(&c, x, "while");
    ck_assert_str_eq(v, "Mg==");
    free(v);
    for (int i = 0; i < 3; i++) {
        char *list = member_op(&c, i, "list", "{}", NULL);
        ck_assert_msg(strstr(list, url), "member %d: %s", i, list);
        free(list);
    }
    /* Every member restarted in turn: the members and the configuration are durable. */
    for (int i = 0; i < 3; i++) {
        tu_server_stop_keep(&c.m[i].s, 1);
        member_flags(&c, i, argv, 32);
        tu_server_restart(&c.m[i].s, argv);
        ck_assert_int_ge(leader(&c, 20000), 0);
    }
    for (int i = 0; i < 3; i++) {
        char *list = member_op(&c, i, "list", "{}", NULL);
        int listed = members_listed(list);
        ck_assert_msg(strstr(list, url) && listed == 3, "member %d: %s", i, list);
        free(list);
    }
    put_ok(&c, x, "after", "3");
    same_data(&c);
    cluster_stop(&c);
}
END_TEST

/* One member grows to three through etcdctl (gRPC): a learner added to a lone member catches up
 * (the member's log is a snapshot by then), refuses what a learner refuses over gRPC, is promoted;
 * then a voter joins. */
START_TEST(grow_one)
{
    ck_assert_msg(access("/usr/bin/etcdctl", X_OK) == 0, "etcdctl (etcd-client) is missing");
    struct cluster c = {0};
    cluster_start(&c, 1);
    bool gone[MAX_MEMBERS] = {0};
    for (int i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k/%d", i);
        put_ok(&c, 0, key, "v");
    }
    int n2 = member_slot(&c);
    int rc;
    char *out = ctl(&c, 0, &rc,
                    (const char *[]){"member", "add", c.m[n2].name, "--learner", "--peer-urls",
                                     c.m[n2].peer_url, NULL});
    char want[2][128];
    for (int i = 0; i < 2; i++) {
        int m = i ? n2 : 0;
        snprintf(want[i], sizeof(want[i]), "%s=%s", c.m[m].name, c.m[m].peer_url);
    }
    ck_assert_msg(rc == 0 && strstr(out, "ETCD_INITIAL_CLUSTER=") && strstr(out, want[0]) &&
                      strstr(out, want[1]) &&
                      strstr(out, "ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
                  "%s", out);
    unsigned long long hex = 0;
    ck_assert_msg(sscanf(out, "Member %llx added", &hex) == 1, "%s", out);
    free(out);
    snprintf(c.m[n2].id, sizeof(c.m[n2].id), "%llu", hex);
    join(&c, n2, gone);
    char *v = NULL;
    for (int t = 0; t < 100 && !v; t++) {
        int status;
        v = get(&c, n2, "k/99", true, &status);
        if (v && strcmp(v, "dg==") != 0) {
            free(v);
            v = NULL;
        }
        if (!v)
            tu_sleep_ms(50);
    }
    ck_assert_msg(v, "the learner did not catch up");
    free(v);
    out = ctl(&c, n2, &rc, (const char *[]){"get", "k/1", NULL});
    ck_assert_msg(rc != 0 && strstr(out, "rpc not supported for learner"), "%s", out);
    free(out);
    out = ctl(&c, n2, &rc,
              (const char *[]){"get", "k/1", "--consistency=s", "--print-value-only", NULL});
    ck_assert_msg(rc == 0 && strstr(out, "v"), "%s", out);
    free(out);
    out = ctl(&c, n2, &rc, (const char *[]){"put", "a", "b", NULL});
    ck_assert_msg(rc != 0 && strstr(out, "rpc not supported for learner"), "%s", out);
    free(out);
    char hx[24];
    snprintf(hx, sizeof(hx), "%llx", hex);
    out = NULL;
    for (int t = 0; t < 50; t++) {
        free(out);
        out = ctl(&c, 0, &rc, (const char *[]){"member", "promote", hx, NULL});
        if (rc == 0 || !strstr(out, "in sync with leader"))
            break;
        tu_sleep_ms(100);
    }
    ck_assert_msg(rc == 0 && strstr(out, "promoted"), "%s", out);
    free(out);
    put_ok(&c, n2, "k/100", "v");
    int n3 = member_slot(&c);
    member_add_ok(&c, n2, n3, false);
    join(&c, n3, gone);
    wait_members(&c, c.n);
    ck_assert_int_ge(leader(&c, 20000), 0);
    same_data(&c);
    for (int i = 0; i < c.n; i++)
        ck_assert_int_eq(count_k(&c, i), 101);
    out = NULL;
    for (int t = 0; t < 50; t++) { /* until m3 has published its name */
        free(out);
        out = ctl(&c, -1, &rc, (const char *[]){"member", "list", NULL});
        if (rc == 0 && !strstr(out, "unstarted"))
            break;
        tu_sleep_ms(100);
    }
    ck_assert_msg(rc == 0 && !strstr(out, "true") && strstr(out, c.m[n3].name), "%s", out);
    free(out);
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
    } cases[] = {{"leases", leases},
                 {"members", members},
                 {"member_replace", member_replace},
                 {"join_restart_alone", join_restart_alone},
                 {"promote_twice", promote_twice},
                 {"remove_leader", remove_leader},
                 {"transfer_load", transfer_load},
                 {"member_quorum", member_quorum},
                 {"member_update", member_update},
                 {"grow_one", grow_one},
                 {"grpc_leases", grpc_leases},
                 {"move_leader", move_leader},
                 {"grpc_no_leader", grpc_no_leader},
                 {"watch_failover", watch_failover},
                 {"snapshot_catchup", snapshot_catchup},
                 {"bootstrap", bootstrap},
                 {"leader_kill", leader_kill},
                 {"no_quorum", no_quorum},
                 {"rolling_restart", rolling_restart},
                 {"partition", partition},
                 {"bad_peers", bad_peers},
                 {"restore", restore},
                 {"snapshot_race", snapshot_race},
                 {"peer_tls", peer_tls},
                 {"auth_apply", auth_apply}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 240);
        tcase_add_test(tc, cases[i].fn);
        suite_add_tcase(s, tc);
    }
    return tu_run_suite(s);
}

/* test_fault.c - the fault campaign: three real members on 127.0.0.1 behind per-member proxies
 * (faultnet.h), concurrent clients on random members, and a nemesis that injects faults while
 * they run. Every operation is recorded with its times and outcome (an answer other than 200 to
 * a write is indeterminate: it may still commit), and the history is checked afterwards.
 *
 * Workloads: single-key registers (put, linearizable get, compare-and-swap by txn); a bank whose
 * txns move amounts between accounts (every read must see the same total); leases (grant, put
 * with the lease, keepalive, revoke, reads of the key).
 *
 * Faults: kill -9 of the leader, of a follower, of a majority, of all members; SIGSTOP pauses
 * (longer than the election timeout) of the leader and of a follower; partitions (the leader
 * isolated, a follower isolated, a bridge), one-way loss; membership changes under traffic (a
 * follower replaced by a new voter, or by a learner then promoted); with a server built with
 * -Dfault_points=true, crash points inside the server and a slow disk.
 *
 * Checks: the register history is linearizable and its revisions are an order consistent with
 * real time (lincheck.h); every acknowledged write is readable at its revision with its value;
 * every bank read sums to the total; no leased key is read after its lease was revoked, or
 * again once a read found it gone; every member ends with the same revision and hash.
 *
 * Environment: METASTORE_FAULT_SEED (else the time; printed first: it replays the choices of
 * keys, operations, members and faults; timing still differs), METASTORE_FAULT_RUN_MS (the run,
 * default 20 s; every chosen kind happens once, then kinds at random while time is left),
 * METASTORE_FAULT_KINDS (a comma-separated list of kind names, default all), and
 * METASTORE_FAULT_TARGET=etcd (run against Debian's etcd, /usr/bin/etcd, instead). The last
 * line, "fault summary: ...", is what scripts/dev.sh soak adds up.
 */
#include "faultnet.h"
#include "faultwatch.h"
#include "lincheck.h"
#include "metastore/b64.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MEMBERS       3
#define REG_CLIENTS   4 /* register clients; then one bank and one lease client */
#define WATCHERS      2 /* after the other clients */
#define CLIENTS       (REG_CLIENTS + 2 + WATCHERS)
#define WATCHES_MAX   4096
#define KEYS_MAX      64 /* keys: 4 per 20 s of run (the checker's search grows with ops per key) */
#define RUN_MS        20000
#define MAX_OPS       200000
#define ACCOUNTS      5
#define BALANCE       100
#define LEASE_OBS     100000
#define LEASES_LIVE   8
#define BODY_MAX      1024
#define FIRST_WATCHED 20 /* the first revision watches and the truth look at: above compactions */

enum kind {
    K_KILL_LEADER,
    K_KILL_FOLLOWER,
    K_KILL_MAJORITY,
    K_KILL_ALL,
    K_PAUSE_LEADER,
    K_PAUSE_FOLLOWER,
    K_PART_LEADER,
    K_PART_FOLLOWER,
    K_PART_BRIDGE,
    K_ONE_WAY,
    K_REPLACE,
    K_LEARNER,
    K_CRASH_POINT,
    K_SLOW_DISK,
    K_SKEWED_LEADER_CUT,
    K_COUNT
};

static const char *const kind_name[K_COUNT] = {
    "kill_leader",    "kill_follower", "kill_majority", "kill_all",    "pause_leader",
    "pause_follower", "part_leader",   "part_follower", "part_bridge", "one_way_loss",
    "replace",        "learner",       "crash_point",   "slow_disk",   "skewed_leader_cut"};

/* The server's crash points (-Dfault_points=true) and how often each is reached before it
 * fires (1 + a random number below this). */
static const struct {
    const char *name;
    int spread;
} crash_points[] = {{"wal_before_sync", 40}, {"wal_after_sync", 40}, {"apply_mid_batch", 20},
                    {"snapshot_install", 1}, {"compact", 1},         {"defrag", 1}};
#define CRASH_POINTS (sizeof(crash_points) / sizeof(crash_points[0]))

struct member {
    struct tu_server s; /* s.port: its client port */
    int peer_port;      /* where it listens for peers: only its proxy dials it */
    int proxy_port;     /* its advertised peer URL's port */
    char name[8];
    char peer_url[64];
    char listen_url[64];
    char initial[MEMBERS * 96 + 96]; /* --initial-cluster as it was given when the slot's member
                                        was created (a restart gives the same flags) */
    bool existing;                   /* created with --initial-cluster-state existing */
    bool paused;
};

/* One read of a leased key, or a revoke. */
struct lease_obs {
    uint32_t key; /* l/<key> */
    int kind;     /* 0 read, 1 revoke acknowledged */
    bool present; /* read: the key was there */
    uint64_t invoke_ns, complete_ns;
};

struct campaign {
    struct member m[MEMBERS];
    struct fn_net *net;
    bool etcd;
    bool fault_points;
    pthread_mutex_t mu; /* the histories, the members' state as clients see it */
    struct lc_op *ops;
    size_t n_ops;
    struct lease_obs *lobs;
    size_t n_lobs;
    uint64_t *leases; /* every lease granted, revoked at the end */
    size_t n_leases;
    atomic_bool stop;
    atomic_int down; /* slots being replaced: clients leave them alone */
    uint64_t seed;
    uint32_t keys;
    int next_name;
    bool kind_on[K_COUNT];
    int faults[K_COUNT];
    int crash_reached, crash_missed;
    size_t bank_reads, bank_bad, bank_moves, lease_bad;
    struct wc_watch *watches;
    size_t n_watches;
    bool broken;      /* a member did not come back, or the cluster is stuck: the run ends */
    bool unavailable; /* stuck: member changes refused long after the faults healed */
    int compacted;    /* the last compaction's revision (1: none yet) */
};

/* xorshift64*: the campaign's choices from one seed. */
static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- members ---- */

/* Member i's flags (a NULL-terminated list in argv, room for 20). */
static void member_argv(struct campaign *c, int i, const char **argv)
{
    struct member *m = &c->m[i];
    const char *be = getenv("METASTORE_TEST_BACKEND");
    int n = 0;
    argv[n++] = "--name";
    argv[n++] = m->name;
    argv[n++] = "--listen-peer-urls";
    argv[n++] = m->listen_url;
    argv[n++] = "--initial-advertise-peer-urls";
    argv[n++] = m->peer_url;
    argv[n++] = "--initial-cluster";
    argv[n++] = m->initial;
    argv[n++] = "--initial-cluster-token";
    argv[n++] = "fault";
    argv[n++] = "--initial-cluster-state";
    argv[n++] = m->existing ? "existing" : "new";
    argv[n++] = "--experimental-watch-progress-notify-interval";
    argv[n++] = "1s";
    if (!c->etcd) {
        argv[n++] = "--backend";
        argv[n++] = be && *be ? be : "lmdb";
    }
    argv[n] = NULL;
}

static bool port_taken(struct campaign *c, int port, int upto)
{
    for (int j = 0; j < upto; j++)
        if (port == c->m[j].s.port || port == c->m[j].peer_port || port == c->m[j].proxy_port)
            return true;
    return false;
}

/* A port below the kernel's ephemeral range (32768 on), free now: a member killed and restarted
 * gets its port back, which an outgoing connection (thousands a second here) could otherwise
 * have taken as its local port meanwhile. */
static int fresh_port(struct campaign *c, int upto, int other)
{
    static _Atomic uint64_t pick;
    uint64_t r = atomic_fetch_add(&pick, 1) + (uint64_t)getpid() * 7919u + (uint64_t)now_ns();
    for (int i = 0; i < 1000; i++) {
        int p = 20000 + (int)(next_rand(&r) % 12000);
        if (p == other || port_taken(c, p, upto))
            continue;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)p),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        bool free_now = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (fd >= 0)
            close(fd);
        if (free_now)
            return p;
    }
    ck_abort_msg("no free port");
    return -1;
}

/* The member ID of slot i (from its own member list), 0 if it does not answer. */
static uint64_t member_id(struct campaign *c, int i)
{
    struct tu_resp r;
    char id[32];
    tu_http(c->m[i].s.port, "POST", "/v3/maintenance/status", "{}", &r);
    bool ok = r.status == 200 && tu_json_str(r.body, "member_id", id, sizeof(id));
    tu_resp_free(&r);
    return ok ? strtoull(id, NULL, 10) : 0;
}

/* Start slot i's member, with one more environment variable when env ("NAME=value"). */
static void launch(struct campaign *c, int i, const char *env)
{
    const char *argv[20];
    member_argv(c, i, argv);
    tu_server_launch_env(&c->m[i].s, argv, env);
}

static void start(struct campaign *c)
{
    int listen[MEMBERS], target[MEMBERS];
    size_t o = 0;
    char initial[sizeof(c->m[0].initial)];
    for (int i = 0; i < MEMBERS; i++) {
        struct member *m = &c->m[i];
        tu_server_init(&m->s);
        m->s.port = fresh_port(c, i, -1);
        m->peer_port = fresh_port(c, i, m->s.port);
        m->proxy_port = fresh_port(c, i, m->s.port);
        while (m->proxy_port == m->peer_port)
            m->proxy_port = fresh_port(c, i, m->s.port);
        snprintf(m->name, sizeof(m->name), "f%d", i + 1);
        snprintf(m->peer_url, sizeof(m->peer_url), "http://127.0.0.1:%d", m->proxy_port);
        snprintf(m->listen_url, sizeof(m->listen_url), "http://127.0.0.1:%d", m->peer_port);
        o += (size_t)snprintf(initial + o, sizeof(initial) - o, "%s%s=%s", i ? "," : "", m->name,
                              m->peer_url);
        listen[i] = m->proxy_port;
        target[i] = m->peer_port;
    }
    c->next_name = MEMBERS + 1;
    c->net = fn_start(MEMBERS, listen, target);
    ck_assert_msg(c->net != NULL, "the proxies did not start");
    for (int i = 0; i < MEMBERS; i++) {
        strcpy(c->m[i].initial, initial);
        launch(c, i, NULL);
    }
    for (int i = 0; i < MEMBERS; i++)
        tu_server_wait_healthy(&c->m[i].s);
    for (int i = 0; i < MEMBERS; i++)
        fn_set_id(c->net, i, member_id(c, i));
}

/* The member that names itself leader (bounded wait), or -1. */
static int leader(struct campaign *c, int timeout_ms)
{
    int64_t until = tu_now_ms() + timeout_ms;
    do {
        for (int i = 0; i < MEMBERS; i++) {
            if (c->m[i].s.pid <= 0 || c->m[i].paused)
                continue;
            struct tu_resp r;
            char lead[32], self[32];
            tu_http(c->m[i].s.port, "POST", "/v3/maintenance/status", "{}", &r);
            tu_json_str(r.body, "leader", lead, sizeof(lead));
            tu_json_str(r.body, "member_id", self, sizeof(self));
            tu_resp_free(&r);
            if (lead[0] && strcmp(lead, self) == 0)
                return i;
        }
        tu_sleep_ms(50);
    } while (tu_now_ms() < until);
    return -1;
}

/* ---- clients: registers ---- */

static void record(struct campaign *c, const struct lc_op *op)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_ops < MAX_OPS)
        c->ops[c->n_ops++] = *op;
    pthread_mutex_unlock(&c->mu);
}

static void key_b64(const char *prefix, uint32_t k, char *out)
{
    char key[32];
    snprintf(key, sizeof(key), "%s%u", prefix, k);
    tu_b64(key, out);
}

static void value_b64(uint64_t v, char *out)
{
    char text[32];
    snprintf(text, sizeof(text), "%" PRIu64, v);
    tu_b64(text, out);
}

/* The number in a base64 "value" starting at p (after its opening quote); UINT64_MAX if it is
 * not one of ours. */
static uint64_t value_at(const char *p)
{
    const char *e = strchr(p, '"');
    uint8_t text[64];
    size_t n, off;
    if (!e || (size_t)(e - p) > 80 || b64_decode(p, (size_t)(e - p), text, &n, &off) != 0 ||
        n >= sizeof(text))
        return UINT64_MAX; /* never written: the checker reports it */
    text[n] = 0;
    return strtoull((const char *)text, NULL, 10);
}

/* The value of the first "value" in json (LC_ABSENT without one). */
static uint64_t value_of(const char *json)
{
    const char *p = strstr(json, "\"value\":\"");
    return p ? value_at(p + 9) : LC_ABSENT;
}

/* A random member for a client, -1 when it is being replaced (try again). */
static int pick(struct campaign *c, uint64_t *rnd)
{
    int via = (int)(next_rand(rnd) % MEMBERS);
    return atomic_load(&c->down) & (1 << via) ? -1 : via;
}

/* POST body to member via; false (and no answer to free) if the connection was refused: the
 * request never left, which is neither a result nor indeterminate. */
static bool call(struct campaign *c, int via, const char *path, const char *body,
                 struct tu_resp *resp)
{
    tu_http(c->m[via].s.port, "POST", path, body, resp);
    if (resp->refused) {
        tu_resp_free(resp);
        tu_sleep_ms(20);
        return false;
    }
    size_t bl = resp->body ? strlen(resp->body) : 0;
    while (bl && (resp->body[bl - 1] == '\n' || resp->body[bl - 1] == '\r'))
        bl--; /* a stream's message (keepalive) ends with a newline */
    if (resp->status == 200 &&
        (bl < 2 || resp->body[0] != '{' || resp->body[bl - 1] != '}' ||
         (strncmp(resp->body, "{\"header\":", 10) != 0 && strncmp(resp->body, "{\"ID\"", 5) != 0 &&
          strncmp(resp->body, "{\"result\"", 9) != 0))) {
        /* Not a whole answer: the record would say nothing true. Counted as unanswered. */
        fprintf(stderr, "%s: a 200 without a whole body: [%s]\n", path, resp->body);
        resp->status = -2;
    }
    return true;
}

static void register_op(struct campaign *c, uint32_t id, uint64_t *rnd, uint64_t *seq,
                        uint64_t *last)
{
    struct lc_op op = {.client = id, .key = (uint32_t)(next_rand(rnd) % c->keys)};
    int via = pick(c, rnd);
    uint64_t r = next_rand(rnd) % 10;
    if (via < 0)
        return;
    char k64[32], v64[48], e64[48], body[BODY_MAX];
    key_b64("f/", op.key, k64);
    op.value = ((uint64_t)(id + 1) << 32) | ++*seq;
    value_b64(op.value, v64);
    const char *path = "/v3/kv/put";
    if (r < 4) {
        op.kind = LC_PUT;
        snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\"}", k64, v64);
    } else if (r < 8) {
        op.kind = LC_GET;
        path = "/v3/kv/range";
        snprintf(body, sizeof(body), "{\"key\":\"%s\"}", k64);
    } else {
        op.kind = LC_CAS;
        op.expect = last[op.key];
        path = "/v3/kv/txn";
        if (op.expect == LC_ABSENT) {
            snprintf(body, sizeof(body),
                     "{\"compare\":[{\"target\":\"VERSION\",\"key\":\"%s\",\"version\":0}],"
                     "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}]}",
                     k64, k64, v64);
        } else {
            value_b64(op.expect, e64);
            snprintf(body, sizeof(body),
                     "{\"compare\":[{\"target\":\"VALUE\",\"key\":\"%s\",\"value\":\"%s\"}],"
                     "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}]}",
                     k64, e64, k64, v64);
        }
    }
    struct tu_resp resp;
    op.invoke_ns = now_ns();
    if (!call(c, via, path, body, &resp))
        return;
    op.complete_ns = now_ns();
    if (resp.status == 200) {
        op.outcome = LC_OK;
        if (op.kind == LC_GET) {
            op.read = value_of(resp.body);
            op.rev = op.read == LC_ABSENT ? 0 : tu_json_num(resp.body, "mod_revision", 0);
            last[op.key] = op.read;
        } else if (op.kind == LC_CAS) {
            op.swapped = strstr(resp.body, "\"succeeded\":true") != NULL;
            op.rev = op.swapped ? tu_json_num(resp.body, "revision", 0) : 0;
            if (op.swapped)
                last[op.key] = op.value;
        } else {
            op.rev = tu_json_num(resp.body, "revision", 0);
            last[op.key] = op.value;
        }
    } else {
        /* A read that failed says nothing; a write may still commit (never "failed"). */
        op.outcome = LC_INFO;
    }
    tu_resp_free(&resp);
    if (op.kind != LC_GET || op.outcome == LC_OK)
        record(c, &op);
}

/* ---- clients: the bank ---- */

/* The accounts in a range answer: values and mod_revisions; their count. */
static int accounts(const char *json, uint64_t *value, long *mod)
{
    int n = 0;
    const char *p = json;
    while (n < ACCOUNTS + 1 && (p = strstr(p, "\"mod_revision\":\""))) {
        mod[n < ACCOUNTS ? n : ACCOUNTS - 1] = strtol(p + 16, NULL, 10);
        const char *v = strstr(p, "\"value\":\"");
        if (!v)
            break;
        value[n < ACCOUNTS ? n : ACCOUNTS - 1] = value_at(v + 9);
        p = v + 9;
        n++;
    }
    return n;
}

/* Read every account (linearizable or serializable, on a random member); a read that answered
 * must hold every account and the whole balance. True with the accounts read. */
static bool bank_read(struct campaign *c, uint64_t *rnd, uint64_t *value, long *mod)
{
    int via = pick(c, rnd);
    if (via < 0)
        return false;
    bool serial = next_rand(rnd) % 2;
    char body[256], k64[16], e64[16];
    tu_b64("b/", k64);
    tu_b64("b0", e64);
    snprintf(body, sizeof(body), "{\"key\":\"%s\",\"range_end\":\"%s\"%s}", k64, e64,
             serial ? ",\"serializable\":true" : "");
    struct tu_resp r;
    if (!call(c, via, "/v3/kv/range", body, &r))
        return false;
    bool ok = r.status == 200;
    if (ok) {
        int n = accounts(r.body, value, mod);
        uint64_t sum = 0;
        for (int i = 0; i < n && i < ACCOUNTS; i++)
            sum += value[i];
        pthread_mutex_lock(&c->mu);
        c->bank_reads++;
        /* A serializable read may come from a member that has not caught up yet (a new one,
         * from before the accounts were opened): none at all, or all with the whole total. */
        if ((n != ACCOUNTS || sum != ACCOUNTS * BALANCE) && !(serial && n == 0)) {
            if (c->bank_bad++ < 5)
                fprintf(stderr, "bank: a %s read on %s: %d accounts, total %" PRIu64 ": %s\n",
                        serial ? "serializable" : "linearizable", c->m[via].name, n, sum, r.body);
        }
        pthread_mutex_unlock(&c->mu);
        ok = n == ACCOUNTS && !serial;
    }
    tu_resp_free(&r);
    return ok;
}

static void bank_move(struct campaign *c, uint64_t *rnd)
{
    uint64_t value[ACCOUNTS];
    long mod[ACCOUNTS];
    if (!bank_read(c, rnd, value, mod))
        return;
    int from = (int)(next_rand(rnd) % ACCOUNTS), to = (int)(next_rand(rnd) % ACCOUNTS);
    if (from == to || value[from] == 0 || value[from] > ACCOUNTS * BALANCE)
        return;
    uint64_t amount = 1 + next_rand(rnd) % value[from];
    char kf[16], kt[16], vf[48], vt[48], body[BODY_MAX];
    key_b64("b/", (uint32_t)from, kf);
    key_b64("b/", (uint32_t)to, kt);
    value_b64(value[from] - amount, vf);
    value_b64(value[to] + amount, vt);
    snprintf(body, sizeof(body),
             "{\"compare\":[{\"target\":\"MOD\",\"key\":\"%s\",\"mod_revision\":\"%ld\"},"
             "{\"target\":\"MOD\",\"key\":\"%s\",\"mod_revision\":\"%ld\"}],"
             "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}},"
             "{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}]}",
             kf, mod[from], kt, mod[to], kf, vf, kt, vt);
    int via = pick(c, rnd);
    struct tu_resp r;
    if (via < 0 || !call(c, via, "/v3/kv/txn", body, &r))
        return;
    if (r.status == 200 && strstr(r.body, "\"succeeded\":true")) {
        pthread_mutex_lock(&c->mu);
        c->bank_moves++;
        pthread_mutex_unlock(&c->mu);
    }
    tu_resp_free(&r);
}

static void bank_open(struct campaign *c)
{
    char body[BODY_MAX], k64[16], v64[48];
    size_t o = (size_t)snprintf(body, sizeof(body), "{\"success\":[");
    for (uint32_t i = 0; i < ACCOUNTS; i++) {
        key_b64("b/", i, k64);
        value_b64(BALANCE, v64);
        o += (size_t)snprintf(body + o, sizeof(body) - o,
                              "%s{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}", i ? "," : "",
                              k64, v64);
    }
    snprintf(body + o, sizeof(body) - o, "]}");
    int st = 0;
    free(tu_post(c->m[0].s.port, "/v3/kv/txn", body, &st));
    ck_assert_int_eq(st, 200);
}

/* ---- clients: leases ---- */

struct live_lease {
    uint64_t id;
    uint32_t key;
    bool put; /* the put with it was acknowledged */
};

static void lease_note(struct campaign *c, const struct lease_obs *o)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_lobs < LEASE_OBS)
        c->lobs[c->n_lobs++] = *o;
    pthread_mutex_unlock(&c->mu);
}

static void lease_op(struct campaign *c, uint64_t *rnd, struct live_lease *live, int *n_live,
                     uint32_t *next_key)
{
    int via = pick(c, rnd);
    if (via < 0)
        return;
    uint64_t r = next_rand(rnd) % 10;
    char body[BODY_MAX], k64[32], v64[48];
    struct tu_resp resp;
    if (*n_live < LEASES_LIVE && (r < 3 || *n_live == 0)) {
        /* grant, then put a fresh key with it */
        snprintf(body, sizeof(body), "{\"TTL\":%d}", 2 + (int)(next_rand(rnd) % 3));
        if (!call(c, via, "/v3/lease/grant", body, &resp))
            return;
        char id[32];
        bool ok = resp.status == 200 && tu_json_str(resp.body, "ID", id, sizeof(id));
        tu_resp_free(&resp);
        if (!ok)
            return;
        struct live_lease *l = &live[(*n_live)++];
        l->id = strtoull(id, NULL, 10);
        l->key = (*next_key)++;
        l->put = false;
        pthread_mutex_lock(&c->mu);
        uint64_t *grown = realloc(c->leases, (c->n_leases + 1) * sizeof(*grown));
        if (grown) {
            c->leases = grown;
            c->leases[c->n_leases++] = l->id;
        }
        pthread_mutex_unlock(&c->mu);
        key_b64("l/", l->key, k64);
        value_b64(l->id, v64);
        snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\",\"lease\":\"%" PRIu64 "\"}",
                 k64, v64, l->id);
        if (call(c, via, "/v3/kv/put", body, &resp)) {
            l->put = resp.status == 200;
            tu_resp_free(&resp);
        }
        return;
    }
    int i = (int)(next_rand(rnd) % (uint64_t)*n_live);
    struct live_lease *l = &live[i];
    if (r < 5) {
        snprintf(body, sizeof(body), "{\"ID\":\"%" PRIu64 "\"}", l->id);
        if (call(c, via, "/v3/lease/keepalive", body, &resp))
            tu_resp_free(&resp);
    } else if (r < 6) {
        struct lease_obs o = {.key = l->key, .kind = 1, .invoke_ns = now_ns()};
        snprintf(body, sizeof(body), "{\"ID\":\"%" PRIu64 "\"}", l->id);
        if (!call(c, via, "/v3/lease/revoke", body, &resp))
            return;
        o.complete_ns = now_ns();
        if (resp.status == 200)
            lease_note(c, &o);
        tu_resp_free(&resp);
        live[i] = live[--*n_live]; /* revoked, or not found (expired): gone either way */
    } else {
        struct lease_obs o = {.key = l->key, .invoke_ns = now_ns()};
        key_b64("l/", l->key, k64);
        snprintf(body, sizeof(body), "{\"key\":\"%s\"}", k64);
        if (!call(c, via, "/v3/kv/range", body, &resp))
            return;
        o.complete_ns = now_ns();
        o.present = strstr(resp.body, "\"kvs\":[") != NULL;
        bool answered = resp.status == 200;
        tu_resp_free(&resp);
        if (answered && l->put)
            lease_note(c, &o);
        if (answered && !o.present && l->put)
            live[i] = live[--*n_live]; /* expired */
    }
}

/* ---- clients: watches ---- */

/* Watch a random range on a random member, from now or from a recent revision, for a while. */
static void watch_op(struct campaign *c, uint32_t id, uint64_t *rnd, int64_t *seen)
{
    int via = pick(c, rnd);
    if (via < 0)
        return;
    char key[32], end[32];
    const char *range_end = end;
    switch (next_rand(rnd) % 4) {
    case 0:
        strcpy(key, "f/");
        strcpy(end, "f0");
        break;
    case 1:
        strcpy(key, "b/");
        strcpy(end, "b0");
        break;
    case 2:
        strcpy(key, "l/");
        strcpy(end, "l0");
        break;
    default:
        snprintf(key, sizeof(key), "f/%u", (uint32_t)(next_rand(rnd) % c->keys));
        range_end = NULL;
        break;
    }
    int64_t start = 0;
    if (next_rand(rnd) % 2) { /* from a recent revision (never the bank's first, 2) */
        int64_t back = (int64_t)(next_rand(rnd) % 300);
        start = *seen - back + 2 > FIRST_WATCHED ? *seen - back + 2 : FIRST_WATCHED;
    }
    struct wc_watch w;
    uint64_t open_ns = now_ns();
    if (fw_record(c->m[via].s.port, key, range_end, start, 1000 + (int)(next_rand(rnd) % 3000), &w,
                  seen) != 0) {
        tu_sleep_ms(50);
        return;
    }
    if (w.start_revision < FIRST_WATCHED) { /* from now, at the very start: not checked */
        wc_watch_free(&w);
        return;
    }
    w.id = id;
    w.member = (uint32_t)via;
    w.open_ns = open_ns;
    w.close_ns = now_ns();
    pthread_mutex_lock(&c->mu);
    if (c->n_watches < WATCHES_MAX) {
        c->watches[c->n_watches++] = w;
        w.key = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (w.key)
        wc_watch_free(&w);
}

struct client_arg {
    struct campaign *c;
    uint32_t id;
};

static void *client(void *arg)
{
    struct client_arg *a = arg;
    struct campaign *c = a->c;
    uint64_t rnd = c->seed ^ (0x9e3779b97f4a7c15ULL * (a->id + 1));
    uint64_t seq = 0, last[KEYS_MAX] = {0};
    struct live_lease live[LEASES_LIVE];
    int n_live = 0;
    uint32_t next_key = 0;
    int64_t seen = 3;
    while (!atomic_load(&c->stop)) {
        if (a->id >= REG_CLIENTS + 2)
            watch_op(c, a->id, &rnd, &seen);
        else if (a->id < REG_CLIENTS)
            register_op(c, a->id, &rnd, &seq, last);
        else if (a->id == REG_CLIENTS)
            bank_move(c, &rnd);
        else
            lease_op(c, &rnd, live, &n_live, &next_key);
    }
    return NULL;
}

/* ---- the nemesis ---- */

/* The run's length: METASTORE_FAULT_RUN_MS (the soak's longer runs), else RUN_MS. */
static int64_t run_ms(void)
{
    const char *v = getenv("METASTORE_FAULT_RUN_MS");
    long long ms = v && *v ? strtoll(v, NULL, 10) : 0;
    return ms >= 5000 && ms <= 3600000 ? ms : RUN_MS;
}

/* Wait (bounded) for slot i's process to end on its own; kill it if it does not. True if it
 * ended on its own. */
static bool wait_exit(struct campaign *c, int i, int timeout_ms)
{
    int64_t until = tu_now_ms() + timeout_ms;
    while (c->m[i].s.pid > 0 && tu_now_ms() < until) {
        int st;
        if (waitpid(c->m[i].s.pid, &st, WNOHANG) == c->m[i].s.pid) {
            c->m[i].s.pid = 0;
            return true;
        }
        tu_sleep_ms(20);
    }
    tu_server_kill(&c->m[i].s);
    return false;
}

/* Wait (bounded) until slot i answers /health: true. A member that exits instead (false) did
 * not survive what happened to it: the campaign counts it (v_unrecoverable) and ends, unless
 * may_exit (an armed crash point may fire while it starts). */
static bool wait_up_or_exit(struct campaign *c, int i, bool may_exit)
{
    struct member *m = &c->m[i];
    if (c->broken)
        return false;
    int st = 0, up = tu_server_wait_up(&m->s, 3000, &st);
    if (up > 0 || (up < 0 && may_exit))
        return up > 0;
    ck_assert_msg(up < 0, "%s did not become healthy, see %s", m->name, m->s.log);
    c->broken = true;
    fprintf(stderr, "unrecoverable: %s exited during its restart (status %d), see %s\n", m->name,
            st, m->s.log);
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "tail -n 3 %s >&2", m->s.log);
    if (system(cmd) < 0)
        perror("system");
    return false;
}

static void wait_up(struct campaign *c, int i)
{
    wait_up_or_exit(c, i, false);
}

static void restart(struct campaign *c, int i)
{
    launch(c, i, NULL);
    wait_up(c, i);
}

/* A random member other than l (and other than not, when not >= 0). */
static int other(uint64_t *rnd, int l, int not )
{
    for (;;) {
        int o = (int)(next_rand(rnd) % MEMBERS);
        if (o != l && o != not )
            return o;
    }
}

static void isolate(struct campaign *c, int who, enum fn_mode mode)
{
    for (int j = 0; j < MEMBERS; j++) {
        if (j == who)
            continue;
        fn_set(c->net, who, j, mode);
        fn_set(c->net, j, who, mode);
    }
}

/* A member operation through slot via; the answer's status, the body in *out (freed by the
 * caller) when out. Retried (bounded) while the cluster refuses it as not ready. */
static int member_call(struct campaign *c, const char *path, const char *body, char **out)
{
    int st = 0;
    char *last = NULL;
    int64_t until = tu_now_ms() + 60000;
    for (int t = 0; tu_now_ms() < until; t++) {
        int l = leader(c, 5000);
        if (l < 0)
            continue;
        char *got = tu_post(c->m[l].s.port, path, body, &st);
        if (st == 200) {
            free(last);
            if (out)
                *out = got;
            else
                free(got);
            return st;
        }
        if (t % 25 == 0)
            fprintf(stderr, "nemesis: %s: %d %s (again)\n", path, st, got);
        free(last);
        last = got;
        tu_sleep_ms(200);
    }
    /* Every fault is healed and every member runs: a cluster that still cannot change its
     * members (strict checks need 5 s of connections) is stuck. The run ends there. */
    fprintf(stderr, "unavailable: %s refused for 60 s, the faults healed: %d %s\n", path, st,
            last ? last : "-");
    free(last);
    c->broken = c->unavailable = true;
    return st;
}

/* Replace the member in slot k (a follower) by a new member with an empty data dir: remove it,
 * then add the new one (as a learner, promoted once it is in sync, when learner), start it. */
static void replace(struct campaign *c, int k, bool learner)
{
    struct member *m = &c->m[k];
    char body[512];
    uint64_t id = member_id(c, k);
    ck_assert_msg(id != 0, "slot %d does not answer before its removal", k);
    atomic_fetch_or(&c->down, 1 << k);
    snprintf(body, sizeof(body), "{\"ID\":\"%" PRIu64 "\"}", id);
    if (member_call(c, "/v3/cluster/member/remove", body, NULL) != 200)
        return;
    /* A removed member stops itself; etcd's too. */
    if (!wait_exit(c, k, 10000))
        fprintf(stderr, "nemesis: %s did not stop after its removal\n", m->name);
    fn_set_id(c->net, k, 0);
    char data[4200];
    snprintf(data, sizeof(data), "%s/data", m->s.dir);
    tu_rmtree(data);
    snprintf(m->name, sizeof(m->name), "f%d", c->next_name++);
    snprintf(body, sizeof(body), "{\"peerURLs\":[\"%s\"]%s}", m->peer_url,
             learner ? ",\"isLearner\":true" : "");
    char *got = NULL;
    if (member_call(c, "/v3/cluster/member/add", body, &got) != 200)
        return;
    char new_id[32];
    const char *mem = strstr(got, "\"member\":");
    ck_assert_msg(mem && tu_json_str(mem, "ID", new_id, sizeof(new_id)), "add: %s", got);
    free(got);
    size_t o = 0;
    for (int j = 0; j < MEMBERS; j++)
        o += (size_t)snprintf(m->initial + o, sizeof(m->initial) - o, "%s%s=%s", j ? "," : "",
                              c->m[j].name, c->m[j].peer_url);
    m->existing = true;
    fn_set_id(c->net, k, strtoull(new_id, NULL, 10));
    launch(c, k, NULL);
    if (!learner)
        wait_up(c, k);
    if (learner) {
        snprintf(body, sizeof(body), "{\"ID\":\"%s\"}", new_id);
        if (member_call(c, "/v3/cluster/member/promote", body, NULL) != 200)
            return;
        wait_up(c, k);
    }
    atomic_fetch_and(&c->down, ~(1 << k));
}

/* Restart slot k with a crash point armed, make the point likely to be reached, and wait
 * (bounded) for the member to kill itself; then start it as usual. */
static void crash_point(struct campaign *c, int k, uint64_t *rnd)
{
    int p = (int)(next_rand(rnd) % CRASH_POINTS);
    char arm[64];
    snprintf(arm, sizeof(arm), "METASTORE_CRASH_POINT=%s:%d", crash_points[p].name,
             1 + (int)(next_rand(rnd) % (uint64_t)crash_points[p].spread));
    fprintf(stderr, "nemesis: %s armed with %s\n", c->m[k].name, arm);
    tu_server_kill(&c->m[k].s);
    launch(c, k, arm);
    if (!wait_up_or_exit(c, k, true)) { /* reached while it started */
        c->crash_reached++;
        restart(c, k);
        return;
    }
    int st = 0;
    char *got = NULL;
    if (strcmp(crash_points[p].name, "compact") == 0) {
        /* A revision after the last compaction, far below what the watches and the truth ask
         * for (they start at FIRST_WATCHED): real work (the bank's accounts opened at 2 were
         * overwritten since), and no history anybody reads. */
        char body[64];
        snprintf(body, sizeof(body), "{\"revision\":\"%d\"}", ++c->compacted);
        got = tu_post(c->m[k].s.port, "/v3/kv/compaction", body, &st);
    } else if (strcmp(crash_points[p].name, "defrag") == 0) {
        got = tu_post(c->m[k].s.port, "/v3/maintenance/defragment", "{}", &st);
    }
    if (wait_exit(c, k, 8000)) {
        c->crash_reached++;
    } else {
        c->crash_missed++;
        fprintf(stderr, "nemesis: %s did not reach %s (the request: %d %s)\n", c->m[k].name, arm,
                st, got ? got : "-");
    }
    free(got);
    restart(c, k);
}

static void fault(struct campaign *c, int kind, uint64_t *rnd)
{
    int l = leader(c, 30000);
    if (l < 0) { /* every fault healed, every member up: a cluster with no leader is stuck */
        fprintf(stderr, "unavailable: no leader 30 s after the last fault healed\n");
        c->broken = c->unavailable = true;
        return;
    }
    int f = other(rnd, l, -1), g = other(rnd, l, f);
    int hold = 1500 + (int)(next_rand(rnd) % 2000); /* > the election timeout */
    c->faults[kind]++;
    fprintf(stderr, "fault: %s (leader %s, follower %s)\n", kind_name[kind], c->m[l].name,
            c->m[f].name);
    switch (kind) {
    case K_KILL_LEADER:
    case K_KILL_FOLLOWER: {
        int who = kind == K_KILL_LEADER ? l : f;
        tu_server_kill(&c->m[who].s);
        tu_sleep_ms(hold / 2);
        restart(c, who);
        break;
    }
    case K_KILL_MAJORITY:
    case K_KILL_ALL:
        tu_server_kill(&c->m[l].s);
        tu_server_kill(&c->m[f].s);
        if (kind == K_KILL_ALL)
            tu_server_kill(&c->m[g].s);
        tu_sleep_ms(hold / 2);
        for (int i = 0; i < MEMBERS; i++)
            if (c->m[i].s.pid <= 0)
                launch(c, i, NULL);
        for (int i = 0; i < MEMBERS; i++)
            wait_up(c, i);
        break;
    case K_PAUSE_LEADER:
    case K_PAUSE_FOLLOWER: {
        struct member *m = &c->m[kind == K_PAUSE_LEADER ? l : f];
        kill(m->s.pid, SIGSTOP);
        m->paused = true;
        tu_sleep_ms(hold);
        kill(m->s.pid, SIGCONT);
        m->paused = false;
        break;
    }
    case K_PART_LEADER:
    case K_PART_FOLLOWER:
        isolate(c, kind == K_PART_LEADER ? l : f, FN_STALL);
        tu_sleep_ms(hold);
        if (kind == K_PART_LEADER) { /* the majority's leader, seen from inside it */
            int now = -1;
            for (int i = 0; i < MEMBERS && now < 0; i++) {
                char lead[32] = "";
                char *st =
                    i == l ? NULL : tu_post(c->m[i].s.port, "/v3/maintenance/status", "{}", NULL);
                if (st && tu_json_str(st, "leader", lead, sizeof(lead)))
                    now = strtoull(lead, NULL, 10) == member_id(c, l) ? l : i;
                free(st);
            }
            fprintf(stderr, "nemesis: the majority's leader while %s is cut off: %s\n",
                    c->m[l].name,
                    now < 0    ? "none"
                    : now == l ? "still it"
                               : "another");
        }
        fn_heal(c->net);
        break;
    case K_PART_BRIDGE: {
        /* The bridge sees both sides; the two others do not see each other. */
        int bridge = (int)(next_rand(rnd) % MEMBERS);
        int a = (bridge + 1) % MEMBERS, b = (bridge + 2) % MEMBERS;
        fn_set(c->net, a, b, FN_STALL);
        fn_set(c->net, b, a, FN_STALL);
        tu_sleep_ms(hold);
        fn_heal(c->net);
        break;
    }
    case K_ONE_WAY: {
        /* What one member sends to another (or to every other) is lost. */
        int from = next_rand(rnd) % 2 ? l : f, to = other(rnd, from, -1);
        bool all = next_rand(rnd) % 2;
        for (int j = 0; j < MEMBERS; j++)
            if (j != from && (all || j == to))
                fn_set(c->net, from, j, FN_DROP);
        tu_sleep_ms(hold);
        fn_heal(c->net);
        break;
    }
    case K_REPLACE:
    case K_LEARNER:
        replace(c, f, kind == K_LEARNER);
        break;
    case K_CRASH_POINT:
        crash_point(c, next_rand(rnd) % 2 ? l : f, rnd);
        break;
    case K_SLOW_DISK: {
        int who = next_rand(rnd) % 2 ? l : f;
        char ms[48];
        snprintf(ms, sizeof(ms), "METASTORE_SLOW_FSYNC_MS=%d", 20 + (int)(next_rand(rnd) % 200));
        fprintf(stderr, "nemesis: %s's disk is slow: %s\n", c->m[who].name, ms);
        tu_server_kill(&c->m[who].s);
        launch(c, who, ms);
        wait_up(c, who);
        tu_sleep_ms(2 * hold);
        tu_server_kill(&c->m[who].s);
        restart(c, who);
        break;
    }
    case K_SKEWED_LEADER_CUT:
        /* The leader's clock runs slow (a tick in ten: SIGUSR2 in fault builds) and it is cut
         * off: it believes it leads for ten election timeouts, while the majority elects
         * another within one or two and goes on writing. A read it answers meanwhile without a
         * quorum round is stale. */
        kill(c->m[l].s.pid, SIGUSR2);
        isolate(c, l, FN_STALL);
        tu_sleep_ms(hold + 1500);
        fn_heal(c->net);
        tu_sleep_ms(200);
        kill(c->m[l].s.pid, SIGUSR2);
        break;
    default:
        break;
    }
}

static void nemesis(struct campaign *c, uint64_t *rnd)
{
    int64_t end = tu_now_ms() + run_ms();
    int order[K_COUNT], n = 0;
    for (int k = 0; k < K_COUNT; k++)
        if (c->kind_on[k])
            order[n++] = k;
    for (int i = n - 1; i > 0; i--) { /* every chosen kind once, in an order the seed picks */
        int j = (int)(next_rand(rnd) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    tu_sleep_ms(1500);
    for (int round = 0; round < 100000 && (round < n || tu_now_ms() < end - 4000) && !c->broken;
         round++) {
        fault(c, round < n ? order[round] : order[next_rand(rnd) % (uint64_t)n], rnd);
        tu_sleep_ms(1000);
    }
}

/* ---- the checks ---- */

/* Every acknowledged put is readable at its revision with its value (through the leader). */
static size_t lost_writes(struct campaign *c, int l)
{
    size_t lost = 0;
    for (size_t i = 0; i < c->n_ops; i++) {
        const struct lc_op *op = &c->ops[i];
        if (op->outcome != LC_OK || op->rev <= 0 ||
            !(op->kind == LC_PUT || (op->kind == LC_CAS && op->swapped)))
            continue;
        char k64[32], body[160];
        key_b64("f/", op->key, k64);
        snprintf(body, sizeof(body), "{\"key\":\"%s\",\"revision\":\"%lld\"}", k64,
                 (long long)op->rev);
        char *got = tu_post(c->m[l].s.port, "/v3/kv/range", body, NULL);
        if (value_of(got) != op->value || tu_json_num(got, "mod_revision", 0) != op->rev) {
            if (lost++ < 5)
                fprintf(stderr, "lost: key %u value %" PRIx64 " at revision %lld: %s\n", op->key,
                        op->value, (long long)op->rev, got);
        }
        free(got);
    }
    return lost;
}

/* No leased key read after its lease's revoke was acknowledged, nor after a read that began
 * later than another read found it gone had ended. */
static size_t lease_violations(struct campaign *c)
{
    size_t bad = 0;
    for (size_t i = 0; i < c->n_lobs; i++) {
        const struct lease_obs *gone = &c->lobs[i];
        if (gone->kind == 0 && gone->present)
            continue;
        for (size_t j = 0; j < c->n_lobs; j++) {
            const struct lease_obs *r = &c->lobs[j];
            if (r->key != gone->key || r->kind != 0 || !r->present ||
                r->invoke_ns <= gone->complete_ns)
                continue;
            if (bad++ < 5)
                fprintf(stderr, "lease: key l/%u read %.3f s after %s (the lease was gone)\n",
                        r->key, (double)(r->invoke_ns - gone->complete_ns) / 1e9,
                        gone->kind ? "its revoke was acknowledged" : "a read found it gone");
        }
    }
    return bad;
}

/* Revoke every lease granted (through the leader), so that no expiry moves the revision on
 * while the members are compared. */
static void revoke_all(struct campaign *c, int l)
{
    for (size_t i = 0; i < c->n_leases; i++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"ID\":\"%" PRIu64 "\"}", c->leases[i]);
        free(tu_post(c->m[l].s.port, "/v3/lease/revoke", body, NULL));
    }
}

/* Every member: the same revision and hash, after a linearizable read each (a few tries: the
 * last entries may still be on their way). The number of members that differ. */
static int divergent(struct campaign *c)
{
    int bad = 0;
    for (int t = 0; t < 10; t++) {
        char first[128] = "";
        bad = 0;
        for (int i = 0; i < MEMBERS; i++) {
            free(tu_post(c->m[i].s.port, "/v3/kv/range", "{\"key\":\"AA==\"}", NULL));
            char *h = tu_post(c->m[i].s.port, "/v3/maintenance/hash", "{}", NULL);
            char hash[128];
            const char *p = strstr(h, "\"hash\":");
            snprintf(hash, sizeof(hash), "%ld/%.30s", tu_json_num(h, "revision", -1), p ? p : "?");
            free(h);
            if (!first[0])
                strcpy(first, hash);
            if (strcmp(hash, first) != 0) {
                bad++;
                if (t == 9)
                    fprintf(stderr, "divergence: %s has %s, %s has %s\n", c->m[i].name, hash,
                            c->m[0].name, first);
            }
        }
        if (!bad)
            break;
        tu_sleep_ms(500);
    }
    return bad;
}

/* The watches against the truth: every event from revision FIRST_WATCHED to the leader's
 * revision now. The number of watches that broke a guarantee. */
static size_t watch_violations(struct campaign *c, int l, size_t *events)
{
    int st = 0;
    char *h = tu_post(c->m[l].s.port, "/v3/kv/range", "{\"key\":\"AA==\"}", &st);
    int64_t to = tu_json_num(h, "revision", 0), compacted;
    free(h);
    struct wc_truth truth;
    int rc = fw_truth(c->m[l].s.port, FIRST_WATCHED, to, 60000, &truth, &compacted);
    ck_assert_msg(rc == 0,
                  "the truth: no events %d..%" PRId64 " (%zu read, compacted at %" PRId64 ")",
                  FIRST_WATCHED, to, truth.n, compacted);
    struct wc_result r;
    ck_assert_int_eq(wc_check(&truth, c->watches, c->n_watches, &r), 0);
    *events = r.n_delivered;
    if (r.verdict != WC_PASS)
        wc_result_print(&r, stderr);
    size_t bad = r.n_violations;
    wc_result_fini(&r);
    wc_truth_free(&truth);
    return bad;
}

/* Every bank account on every member, serializable: the total holds everywhere. */
static void bank_final(struct campaign *c)
{
    uint64_t rnd = 1, value[ACCOUNTS];
    long mod[ACCOUNTS];
    for (int i = 0; i < 3 * MEMBERS; i++)
        bank_read(c, &rnd, value, mod);
}

/* The register history, one operation a line, into METASTORE_FAULT_HISTORY when it is set:
 * client key kind outcome value expect read swapped invoke_ns complete_ns rev. */
static void dump_history(const struct campaign *c)
{
    const char *path = getenv("METASTORE_FAULT_HISTORY");
    FILE *f = path && *path ? fopen(path, "w") : NULL;
    if (!f)
        return;
    static const char *const kinds[] = {"put", "get", "cas"};
    static const char *const outcomes[] = {"ok", "fail", "info"};
    for (size_t i = 0; i < c->n_ops; i++) {
        const struct lc_op *o = &c->ops[i];
        fprintf(f,
                "%zu %u %u %s %s %" PRIu64 " %" PRIu64 " %" PRIu64 " %d %" PRIu64 " %" PRIu64
                " %lld\n",
                i, o->client, o->key, kinds[o->kind], outcomes[o->outcome], o->value, o->expect,
                o->read, o->swapped, o->invoke_ns, o->complete_ns, (long long)o->rev);
    }
    fclose(f);
}

static void kinds_chosen(struct campaign *c)
{
    const char *env = getenv("METASTORE_FAULT_KINDS");
    for (int k = 0; k < K_COUNT; k++)
        c->kind_on[k] = !env || !*env;
    if (env && *env) {
        char list[512];
        snprintf(list, sizeof(list), "%s", env);
        char *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int k = 0;
            while (k < K_COUNT && strcmp(kind_name[k], t) != 0)
                k++;
            ck_assert_msg(k < K_COUNT, "METASTORE_FAULT_KINDS: no fault kind %s", t);
            c->kind_on[k] = true;
        }
    }
    if (c->etcd || !c->fault_points) {
        /* Crash points, the slow disk and the slow clock need a server built with
         * -Dfault_points=true. */
        if (c->kind_on[K_CRASH_POINT] || c->kind_on[K_SLOW_DISK] || c->kind_on[K_SKEWED_LEADER_CUT])
            fprintf(stderr, "fault campaign: no crash points, slow disk or slow clock in this "
                            "server\n");
        c->kind_on[K_CRASH_POINT] = c->kind_on[K_SLOW_DISK] = false;
        c->kind_on[K_SKEWED_LEADER_CUT] = false;
    }
    bool any = false;
    for (int k = 0; k < K_COUNT; k++)
        any = any || c->kind_on[k];
    ck_assert_msg(any, "no fault kind chosen");
}

START_TEST(campaign)
{
    struct campaign *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    c->ops = calloc(MAX_OPS, sizeof(*c->ops));
    c->lobs = calloc(LEASE_OBS, sizeof(*c->lobs));
    c->watches = calloc(WATCHES_MAX, sizeof(*c->watches));
    ck_assert(c->ops && c->lobs && c->watches);
    pthread_mutex_init(&c->mu, NULL);
    const char *target = getenv("METASTORE_FAULT_TARGET");
    c->etcd = target && strcmp(target, "etcd") == 0;
    if (c->etcd)
        setenv("METASTORE_BIN", "/usr/bin/etcd", 1); /* no thread runs yet */
    const char *fp = getenv("METASTORE_FAULT_POINTS");
    c->fault_points = fp && strcmp(fp, "1") == 0;
    const char *env = getenv("METASTORE_FAULT_SEED");
    c->seed = env && *env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
    fprintf(stderr, "fault campaign: seed %" PRIu64 " (METASTORE_FAULT_SEED replays it), %s\n",
            c->seed, c->etcd ? "etcd" : "metastore");
    kinds_chosen(c);
    uint64_t rnd = c->seed | 1;
    c->compacted = 1;
    c->keys = (uint32_t)(run_ms() / 5000);
    c->keys = c->keys < 4 ? 4 : c->keys > KEYS_MAX ? KEYS_MAX : c->keys;
    start(c);
    bank_open(c);
    pthread_t th[CLIENTS];
    struct client_arg args[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        args[i] = (struct client_arg){c, (uint32_t)i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, client, &args[i]), 0);
    }
    nemesis(c, &rnd);
    atomic_store(&c->stop, true);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(th[i], NULL);
    fn_heal(c->net);
    if (c->broken) {
        fprintf(stderr,
                "fault summary: v_unrecoverable=%d v_unavailable=%d (the other checks were not "
                "run)\n",
                !c->unavailable, c->unavailable);
        ck_abort_msg("seed %" PRIu64 ": a member did not survive a restart, or the cluster is "
                     "stuck (above)",
                     c->seed);
    }
    int l = leader(c, 20000);
    ck_assert_int_ge(l, 0);
    size_t ok = 0, info = 0;
    for (size_t i = 0; i < c->n_ops; i++)
        c->ops[i].outcome == LC_OK ? ok++ : info++;
    struct lc_result lin, rev;
    ck_assert_int_eq(lc_check(c->ops, c->n_ops, NULL, &lin), 0);
    ck_assert_int_eq(lc_check_revisions(c->ops, c->n_ops, &rev), 0);
    size_t lost = lost_writes(c, l);
    bank_final(c);
    c->lease_bad = lease_violations(c);
    revoke_all(c, l);
    int div = divergent(c);
    size_t watch_events = 0, watch_bad = watch_violations(c, l, &watch_events);
    if (lin.verdict != LC_PASS)
        lc_result_print(&lin, c->ops, c->n_ops, stderr);
    dump_history(c);
    if (rev.verdict != LC_PASS)
        lc_result_print(&rev, c->ops, c->n_ops, stderr);
    uint64_t conns, dropped;
    fn_stats(c->net, &conns, &dropped);
    char faults[1024];
    size_t o = 0;
    for (int k = 0; k < K_COUNT; k++)
        o += (size_t)snprintf(faults + o, sizeof(faults) - o, " %s=%d", kind_name[k], c->faults[k]);
    fprintf(stderr,
            "fault campaign: %zu register operations (%zu acknowledged, %zu indeterminate), %zu "
            "bank reads, %zu bank moves, %zu lease observations, %" PRIu64
            " peer connections proxied, %" PRIu64 " bytes dropped, crash points reached %d, "
            "missed %d, %zu watches (%zu events)\n",
            c->n_ops, ok, info, c->bank_reads, c->bank_moves, c->n_lobs, conns, dropped,
            c->crash_reached, c->crash_missed, c->n_watches, watch_events);
    fprintf(stderr,
            "fault summary: ops=%zu ack=%zu info=%zu%s v_linearizable=%d v_revisions=%d "
            "v_lost_writes=%zu v_bank=%zu v_lease=%zu v_watch=%zu v_divergence=%d "
            "undecided=%d\n",
            c->n_ops, ok, info, faults, lin.verdict == LC_VIOLATION, rev.verdict == LC_VIOLATION,
            lost, c->bank_bad, c->lease_bad, watch_bad, div, lin.verdict == LC_UNKNOWN);
    ck_assert_msg(lin.verdict == LC_PASS && rev.verdict == LC_PASS && lost == 0 &&
                      c->bank_bad == 0 && c->lease_bad == 0 && watch_bad == 0 && div == 0,
                  "seed %" PRIu64 ": the history breaks a guarantee (above)", c->seed);
    ck_assert_int_gt(ok, 100);
    ck_assert_int_gt(c->bank_moves, 0);
    lc_result_fini(&lin);
    lc_result_fini(&rev);
    for (int i = 0; i < MEMBERS; i++) {
        if (!c->etcd) {
            tu_server_stop(&c->m[i].s); /* checks a clean exit (ASan, LSan) */
            continue;
        }
        tu_server_kill(&c->m[i].s); /* etcd ends on SIGTERM by the signal: nothing to check */
        tu_rmtree(c->m[i].s.dir);
        free(c->m[i].s.dir);
    }
    fn_stop(c->net);
    pthread_mutex_destroy(&c->mu);
    for (size_t i = 0; i < c->n_watches; i++)
        wc_watch_free(&c->watches[i]);
    free(c->watches);
    free(c->leases);
    free(c->lobs);
    free(c->ops);
    free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fault");
    TCase *tc = tcase_create("campaign");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, campaign);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}

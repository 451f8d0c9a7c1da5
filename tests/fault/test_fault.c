/* test_fault.c - a short fault campaign: three real members on 127.0.0.1, concurrent clients
 * doing single-key register operations (put, linearizable get, compare-and-swap by txn) through
 * random members while a nemesis kills (-9), restarts, pauses (SIGSTOP longer than the election
 * timeout) and resumes members, the leader among them. Every operation is recorded with its
 * times and outcome (an answer other than 200 to a write is indeterminate: it may still
 * commit), and the history is checked afterwards:
 *   - linearizable per key, and the revisions an order consistent with real time (lincheck.h);
 *   - no acknowledged write lost: each is readable at its revision with its value;
 *   - every member ends with the same revision and hash.
 * The seed (METASTORE_FAULT_SEED, else the time) is printed first: it replays the same choices
 * of keys, operations, members and faults (timing still differs from run to run). Every fault
 * kind happens once; a longer run (METASTORE_FAULT_RUN_MS, scripts/dev.sh soak) goes on with
 * faults of random kinds.
 */
#include "lincheck.h"
#include "metastore/b64.h"
#include "testutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MEMBERS  3
#define CLIENTS  6
#define KEYS_MAX 64 /* keys: 4 per 20 s of run (the checker's search grows with ops per key) */
#define RUN_MS   20000
#define MAX_OPS  200000

struct member {
    struct tu_server s;
    int peer_port;
    char name[8];
    char peer_url[64];
    bool paused;
};

struct campaign {
    struct member m[MEMBERS];
    char initial[MEMBERS * 80];
    pthread_mutex_t mu; /* the history, the members' state as clients see it */
    struct lc_op *ops;
    size_t n_ops;
    atomic_bool stop;
    uint64_t seed;
    uint32_t keys;
    int faults[4]; /* kill leader, kill follower, pause leader, pause follower */
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

/* Member i's flags (a NULL-terminated list in argv, room for 16). */
static void member_argv(struct campaign *c, int i, const char **argv)
{
    struct member *m = &c->m[i];
    const char *be = getenv("METASTORE_TEST_BACKEND");
    const char *flags[] = {"--name",
                           m->name,
                           "--listen-peer-urls",
                           m->peer_url,
                           "--initial-advertise-peer-urls",
                           m->peer_url,
                           "--initial-cluster",
                           c->initial,
                           "--initial-cluster-token",
                           "fault",
                           "--backend",
                           be && *be ? be : "lmdb",
                           NULL};
    memcpy(argv, flags, sizeof(flags));
}

static void start(struct campaign *c)
{
    size_t o = 0;
    for (int i = 0; i < MEMBERS; i++) {
        struct member *m = &c->m[i];
        tu_server_init(&m->s);
        bool taken;
        do {
            m->peer_port = tu_free_port();
            taken = m->peer_port == m->s.port;
            for (int j = 0; j < i; j++)
                taken = taken || m->peer_port == c->m[j].peer_port ||
                        m->peer_port == c->m[j].s.port || m->s.port == c->m[j].peer_port;
        } while (taken);
        snprintf(m->name, sizeof(m->name), "f%d", i + 1);
        snprintf(m->peer_url, sizeof(m->peer_url), "http://127.0.0.1:%d", m->peer_port);
        o += (size_t)snprintf(c->initial + o, sizeof(c->initial) - o, "%s%s=%s", i ? "," : "",
                              m->name, m->peer_url);
    }
    for (int i = 0; i < MEMBERS; i++) {
        const char *argv[16];
        member_argv(c, i, argv);
        tu_server_launch(&c->m[i].s, argv);
    }
    for (int i = 0; i < MEMBERS; i++)
        tu_server_wait_healthy(&c->m[i].s);
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

/* ---- clients ---- */

static void record(struct campaign *c, const struct lc_op *op)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_ops < MAX_OPS)
        c->ops[c->n_ops++] = *op;
    pthread_mutex_unlock(&c->mu);
}

static void key_b64(uint32_t k, char *out)
{
    char key[16];
    snprintf(key, sizeof(key), "f/%u", k);
    tu_b64(key, out);
}

static void value_b64(uint64_t v, char *out)
{
    char text[32];
    snprintf(text, sizeof(text), "%" PRIu64, v);
    tu_b64(text, out);
}

/* The value of the first "value" in json (LC_ABSENT without one). */
static uint64_t value_of(const char *json)
{
    const char *p = strstr(json, "\"value\":\"");
    if (!p)
        return LC_ABSENT;
    p += 9;
    const char *e = strchr(p, '"');
    uint8_t text[64];
    size_t n, off;
    if (!e || (size_t)(e - p) > 80 || b64_decode(p, (size_t)(e - p), text, &n, &off) != 0 ||
        n >= sizeof(text))
        return UINT64_MAX; /* never written: the checker reports it */
    text[n] = 0;
    return strtoull((const char *)text, NULL, 10);
}

static void *client(void *arg)
{
    struct campaign *c = ((void **)arg)[0];
    uint32_t id = (uint32_t)(uintptr_t)((void **)arg)[1];
    uint64_t rnd = c->seed ^ (0x9e3779b97f4a7c15ULL * (id + 1));
    uint64_t seq = 0, last[KEYS_MAX] = {0};
    while (!atomic_load(&c->stop)) {
        struct lc_op op = {.client = id, .key = (uint32_t)(next_rand(&rnd) % c->keys)};
        int via = (int)(next_rand(&rnd) % MEMBERS);
        uint64_t r = next_rand(&rnd) % 10;
        char k64[32], v64[48], e64[48], body[512];
        key_b64(op.key, k64);
        op.value = ((uint64_t)(id + 1) << 32) | ++seq;
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
        tu_http(c->m[via].s.port, "POST", path, body, &resp);
        op.complete_ns = now_ns();
        size_t bl = resp.body ? strlen(resp.body) : 0;
        if (resp.status == 200 &&
            (bl < 12 || strncmp(resp.body, "{\"header\":", 10) != 0 || resp.body[bl - 1] != '}')) {
            /* Not a whole answer: the record would say nothing true. Counted as unanswered. */
            fprintf(stderr, "client %u: a 200 without a whole body: [%s]\n", id, resp.body);
            resp.status = -2;
        }
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

static void nemesis(struct campaign *c, uint64_t *rnd)
{
    int64_t end = tu_now_ms() + run_ms();
    int first = (int)(next_rand(rnd) % 4);
    tu_sleep_ms(1500);
    /* Every kind once, from a kind the seed picks; then kinds at random while time is left. */
    for (int round = 0; round < 100000 && (round < 4 || tu_now_ms() < end - 4000); round++) {
        int l = leader(c, 10000);
        ck_assert_msg(l >= 0, "no leader before a fault");
        int kind = round < 4 ? (first + round) % 4 : (int)(next_rand(rnd) % 4);
        int who = kind % 2 == 0 ? l : (l + 1 + (int)(next_rand(rnd) % 2)) % MEMBERS;
        struct member *m = &c->m[who];
        c->faults[kind]++;
        fprintf(stderr, "fault: %s %s (%s)\n", kind < 2 ? "kill -9" : "pause", m->name,
                kind % 2 == 0 ? "the leader" : "a follower");
        if (kind < 2) {
            const char *argv[16];
            member_argv(c, who, argv);
            tu_server_kill(&m->s);
            tu_sleep_ms(1000 + (int)(next_rand(rnd) % 1000));
            tu_server_restart(&m->s, argv);
        } else {
            kill(m->s.pid, SIGSTOP);
            m->paused = true;
            tu_sleep_ms(1500 + (int)(next_rand(rnd) % 1500)); /* > the election timeout */
            kill(m->s.pid, SIGCONT);
            m->paused = false;
        }
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
        key_b64(op->key, k64);
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

/* Every member: the same revision and hash, after a linearizable read each. */
static void same_data(struct campaign *c)
{
    char first[128] = "";
    for (int i = 0; i < MEMBERS; i++) {
        free(tu_post(c->m[i].s.port, "/v3/kv/range", "{\"key\":\"AA==\"}", NULL));
        char *h = tu_post(c->m[i].s.port, "/v3/maintenance/hash", "{}", NULL);
        char hash[128];
        const char *p = strstr(h, "\"hash\":");
        snprintf(hash, sizeof(hash), "%ld/%.30s", tu_json_num(h, "revision", -1), p ? p : "?");
        free(h);
        if (!first[0])
            strcpy(first, hash);
        ck_assert_msg(strcmp(hash, first) == 0, "member %d: %s, member 0: %s", i, hash, first);
    }
}

START_TEST(campaign)
{
    struct campaign *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    c->ops = calloc(MAX_OPS, sizeof(*c->ops));
    ck_assert_ptr_nonnull(c->ops);
    pthread_mutex_init(&c->mu, NULL);
    const char *env = getenv("METASTORE_FAULT_SEED");
    c->seed = env && *env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
    fprintf(stderr, "fault campaign: seed %" PRIu64 " (METASTORE_FAULT_SEED replays it)\n",
            c->seed);
    uint64_t rnd = c->seed | 1;
    c->keys = (uint32_t)(run_ms() / 5000);
    c->keys = c->keys < 4 ? 4 : c->keys > KEYS_MAX ? KEYS_MAX : c->keys;
    start(c);
    pthread_t th[CLIENTS];
    void *args[CLIENTS][2];
    for (int i = 0; i < CLIENTS; i++) {
        args[i][0] = c;
        args[i][1] = (void *)(uintptr_t)i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, client, args[i]), 0);
    }
    nemesis(c, &rnd);
    atomic_store(&c->stop, true);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(th[i], NULL);
    int l = leader(c, 20000);
    ck_assert_int_ge(l, 0);
    size_t ok = 0, info = 0;
    for (size_t i = 0; i < c->n_ops; i++)
        c->ops[i].outcome == LC_OK ? ok++ : info++;
    struct lc_result lin, rev;
    ck_assert_int_eq(lc_check(c->ops, c->n_ops, NULL, &lin), 0);
    ck_assert_int_eq(lc_check_revisions(c->ops, c->n_ops, &rev), 0);
    size_t lost = lost_writes(c, l);
    fprintf(stderr,
            "fault campaign: %zu operations, %zu acknowledged, %zu indeterminate; faults: %d kill "
            "leader, %d kill follower, %d pause leader, %d pause follower; linearizable: %s, "
            "revisions: %s, lost acknowledged writes: %zu\n",
            c->n_ops, ok, info, c->faults[0], c->faults[1], c->faults[2], c->faults[3],
            lc_verdict_name(lin.verdict), lc_verdict_name(rev.verdict), lost);
    if (lin.verdict != LC_PASS)
        lc_result_print(&lin, c->ops, c->n_ops, stderr);
    if (rev.verdict != LC_PASS)
        lc_result_print(&rev, c->ops, c->n_ops, stderr);
    ck_assert_msg(lin.verdict == LC_PASS && rev.verdict == LC_PASS && lost == 0,
                  "seed %" PRIu64 ": the history breaks a guarantee (above)", c->seed);
    ck_assert_int_gt(ok, 100);
    same_data(c);
    lc_result_fini(&lin);
    lc_result_fini(&rev);
    for (int i = 0; i < MEMBERS; i++)
        tu_server_stop(&c->m[i].s);
    pthread_mutex_destroy(&c->mu);
    free(c->ops);
    free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fault");
    TCase *tc = tcase_create("campaign");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, campaign);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}

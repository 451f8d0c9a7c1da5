/* srv_lease.c - the server side of leases: the lessor's state kept in step with the log and
 * bucket "lease", attachments kept in step with applied events, and the expiry timer.
 *
 * Grant and revoke are log entries (deterministic on every member). Keepalive and expiry are
 * the primary's business and change only expiry times. Expired leases are proposed for
 * revocation at most SRV_LEASE_REVOKE_BATCH per loop turn (etcd revokes 1000/s), so a mass
 * expiry never holds the loop; each revoke deletes its keys in one revision.
 *
 * Keepalive and time-to-live are the leader's (its lessor knows the expiries): they are not log
 * entries. A member that does not lead asks the leader over the peer port (an application
 * message, etcd's /leases and /leases/internal) and answers with the leader's view. A request
 * is asked again when the leader changes or its answer is late, and fails at the request
 * timeout ("no leader" if none was known, as etcd's waitLeader, else "request timed out").
 */
#include "srv_int.h"

#include "metastore/clock.h"
#include "metastore/log.h"

#include <stdlib.h>
#include <string.h>

#define SRV_LEASE_REVOKE_BATCH 500
#define SRV_LEASE_RETRY_MS     3000 /* etcd expiredLeaseRetryInterval */
#define LEASE_OVERHEAD         64   /* etcd leaseOverhead, for the quota */

static void lease_key(int64_t id, uint8_t out[8])
{
    be64_put(out, (uint64_t)id);
}

static void lease_arm(struct srv *s)
{
    uint64_t next = lease_mgr_next_expiry(s->lease.lessor);
    if (next == UINT64_MAX) {
        evtimer_del(s->lease.ev);
        return;
    }
    uint64_t now = clock_now_ms();
    uint64_t wait = next > now ? next - now : 0;
    struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
    evtimer_add(s->lease.ev, &tv);
}

#ifdef MS_PLANT_FOLLOWER_LEASE_EXPIRY
/* PLANTED BUG (-Dplant=follower_lease_expiry, for tests/fault only): every member's lessor
 * stays primary and expires leases on its own clock; one that does not lead revokes an expired
 * lease in its own store at once (its keys deleted locally, not through Raft), although the
 * leader's lessor, which the keepalives renew, still holds it. Keepalives and time-to-lives are
 * still answered by the leader only. */
static bool plant_revoke_here(struct srv *s, int64_t id)
{
    if (s->node.role == RAFT_LEADER)
        return false;
    struct srv_lease_req r = {.id = id};
    int64_t rev;
    ms_err e = srv_apply_lease_revoke(s, &r, &rev);
    log_warn("PLANTED BUG: lease %lld expired on a follower and is revoked locally: %s",
             (long long)id, ms_err_name(e));
    return true;
}
#endif

/* The lessor answers keepalives and time-to-lives here. */
static bool primary_here(const struct srv *s)
{
#ifdef MS_PLANT_FOLLOWER_LEASE_EXPIRY
    if (s->node.role != RAFT_LEADER)
        return false; /* PLANTED BUG: its lessor is primary for the expiries only */
#endif
    return lease_mgr_is_primary(s->lease.lessor);
}

static void on_lease(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    int64_t ids[SRV_LEASE_REVOKE_BATCH];
    size_t n = lease_mgr_expired(s->lease.lessor, clock_now_ms(), SRV_LEASE_RETRY_MS, ids,
                                 SRV_LEASE_REVOKE_BATCH);
    for (size_t i = 0; i < n; i++) {
#ifdef MS_PLANT_FOLLOWER_LEASE_EXPIRY
        if (plant_revoke_here(s, ids[i]))
            continue;
#endif
        struct srv_req r = {.type = SRV_REQ_LEASE_REVOKE, .u.lease = {.id = ids[i]}};
        ms_err e = s->hooks.propose(s, &r);
        if (e)
            log_warn("lease %lld expired but its revoke could not be proposed: %s",
                     (long long)ids[i], ms_err_name(e));
    }
    if (n == SRV_LEASE_REVOKE_BATCH) {
        /* More are due: continue next turn, after the I/O of this one. */
        struct timeval now = {0, 0};
        evtimer_add(s->lease.ev, &now);
        return;
    }
    lease_arm(s);
}

static bool lease_exists_cb(void *ctx, int64_t lease)
{
    return lease_mgr_exists(ctx, lease);
}

static ms_err attach_cb(void *ctx, const struct kv_kv *kv)
{
    struct srv *s = ctx;
    if (lease_mgr_exists(s->lease.lessor, kv->lease))
        return lease_mgr_attach(s->lease.lessor, kv->lease, kv->key, kv->key_len);
    /* A key whose lease is gone would be deleted by that lease's revoke, which is applied
     * already; keep going rather than refuse to start. */
    log_warn("key of %zu bytes names lease %lld, which does not exist", kv->key_len,
             (long long)kv->lease);
    return MS_OK;
}

ms_err srv_lease_open(struct srv *s)
{
    int64_t min_ttl = (int64_t)((3 * s->cfg.election_ms / 2 + 999) / 1000);
    s->lease.lessor = lease_mgr_create(min_ttl);
    s->lease.ev = evtimer_new(s->base, on_lease, s);
    if (!s->lease.lessor || !s->lease.ev)
        return MS_E_NOMEM;
    struct be_cursor *c;
    struct be_val k, v;
    ms_err e = be_cursor_open(s->wtxn, BE_BUCKET_LEASE, &c);
    if (e)
        return e;
    uint64_t now = clock_now_ms();
    for (e = be_cursor_seek(c, NULL, 0, &k, &v); e == MS_OK; e = be_cursor_next(c, &k, &v)) {
        if (k.len != 8 || v.len != 8) {
            e = MS_E_DATA_CORRUPT;
            break;
        }
        int64_t granted;
        e = lease_mgr_grant(s->lease.lessor, (int64_t)be64_get(k.p), (int64_t)be64_get(v.p), now,
                            &granted);
        if (e)
            break;
    }
    be_cursor_close(c);
    if (e != MS_E_NOT_EXIST)
        return e;
    /* No member expires leases until the node sees it lead (srv_lease_promote). */
    lease_mgr_demote(s->lease.lessor);
#ifdef MS_PLANT_FOLLOWER_LEASE_EXPIRY
    lease_mgr_promote(s->lease.lessor, now, 0); /* PLANTED BUG: every member expires leases */
    lease_arm(s);
#endif
    kv_set_lease_check(s->kv, lease_exists_cb, s->lease.lessor);
    /* Keys name only leases that exist (a revoke deletes its keys): none, nothing to walk. */
    if (lease_mgr_count(s->lease.lessor) == 0)
        return MS_OK;
    return kv_foreach_leased(s->kv, s->wtxn, attach_cb, s);
}

ms_err srv_lease_reload(struct srv *s)
{
    struct srv_lease_ask *asks = s->lease.asks;
    uint64_t id_gen = s->lease.id_gen;
    s->lease.asks = NULL;
    srv_lease_close(s);
    s->lease.asks = asks;
    s->lease.id_gen = id_gen;
    return srv_lease_open(s);
}

void srv_lease_close(struct srv *s)
{
    srv_lease_asks_fini(s);
    lease_mgr_destroy(s->lease.lessor);
    s->lease.lessor = NULL;
    if (s->lease.ev)
        event_free(s->lease.ev);
    s->lease.ev = NULL;
}

void srv_lease_promote(struct srv *s, uint64_t extend_ms)
{
    /* Every expiry starts again from now, plus extend_ms (etcd Promote): nothing expires
     * because the server was down or the leader changed. */
    lease_mgr_promote(s->lease.lessor, clock_now_ms(), extend_ms);
    lease_arm(s);
}

void srv_lease_demote(struct srv *s)
{
#ifdef MS_PLANT_FOLLOWER_LEASE_EXPIRY
    return; /* PLANTED BUG: a former leader goes on expiring leases on its own clock */
#endif
    lease_mgr_demote(s->lease.lessor);
    evtimer_del(s->lease.ev);
}

static void lease_events(struct srv *s, const struct kv_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct kv_event *e = &ev[i];
        if (e->has_prev && e->prev.lease && e->prev.lease != e->kv.lease)
            lease_mgr_detach(s->lease.lessor, e->prev.lease, e->kv.key, e->kv.key_len);
        if (e->type == KV_EVENT_PUT && e->kv.lease &&
            lease_mgr_attach(s->lease.lessor, e->kv.lease, e->kv.key, e->kv.key_len) != MS_OK)
            log_error("cannot attach a key to lease %lld", (long long)e->kv.lease);
    }
}

ms_err srv_write_finish(struct srv *s, struct kv_write *w, ms_err e)
{
    if (e) {
        srv_check_apply_error(e);
        kv_write_abort(w);
        return e;
    }
    struct kv_event *ev;
    size_t n_ev;
    kv_write_end(w, &ev, &n_ev);
    if (n_ev) {
        lease_events(s, ev, n_ev);
        srv_events_applied(s, kv_current_rev(s->kv), ev, n_ev);
    }
    return MS_OK;
}

int64_t srv_lease_new_id(struct srv *s)
{
    /* etcd idutil: member bits, then time, then a counter; positive; never reused while the
     * lease exists. */
    if (!s->lease.id_gen)
        s->lease.id_gen =
            ((s->member_id & 0xffff) << 48) | ((clock_wall_ms() << 8) & 0xffffffffffffULL);
    int64_t id;
    do
        id = (int64_t)(++s->lease.id_gen & (uint64_t)INT64_MAX);
    while (id == 0 || lease_mgr_exists(s->lease.lessor, id));
    return id;
}

size_t srv_lease_cost(void)
{
    return LEASE_OVERHEAD;
}

ms_err srv_apply_lease_grant(struct srv *s, const struct srv_lease_req *r,
                             struct srv_lease_resp *out)
{
    int64_t granted;
    if (r->id == 0)
        return MS_E_LEASE_NOT_FOUND; /* IDs are assigned before proposing */
    ms_err e = lease_mgr_grant(s->lease.lessor, r->id, r->ttl, clock_now_ms(), &granted);
    if (e)
        return e;
    uint8_t k[8], v[8];
    lease_key(r->id, k);
    be64_put(v, (uint64_t)granted);
    if ((e = be_put(s->wtxn, BE_BUCKET_LEASE, k, 8, v, 8)) != MS_OK) {
        lease_mgr_revoke(s->lease.lessor, r->id);
        return e;
    }
    out->id = r->id;
    out->ttl = granted;
    lease_arm(s);
    return MS_OK;
}

struct key_list {
    struct arena *a;
    const uint8_t **keys;
    size_t *lens;
    size_t n;
    size_t cap;
    bool oom;
};

static bool collect_key(void *ctx, const uint8_t *key, size_t klen)
{
    struct key_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        const uint8_t **k = arena_alloc(l->a, cap * sizeof(*k));
        size_t *ln = arena_alloc(l->a, cap * sizeof(*ln));
        if (!k || !ln) {
            l->oom = true;
            return false;
        }
        if (l->n) {
            memcpy(k, l->keys, l->n * sizeof(*k));
            memcpy(ln, l->lens, l->n * sizeof(*ln));
        }
        l->keys = k;
        l->lens = ln;
        l->cap = cap;
    }
    l->keys[l->n] = arena_memdup(l->a, key, klen);
    l->lens[l->n] = klen;
    if (!l->keys[l->n]) {
        l->oom = true;
        return false;
    }
    l->n++;
    return true;
}

ms_err srv_apply_lease_revoke(struct srv *s, const struct srv_lease_req *r, int64_t *revision)
{
    if (!lease_mgr_exists(s->lease.lessor, r->id))
        return MS_E_LEASE_NOT_FOUND;
    /* Delete the attached keys in one write: one revision, one watch message. */
    struct key_list kl = {.a = s->scratch};
    lease_mgr_keys(s->lease.lessor, r->id, collect_key, &kl);
    if (kl.oom)
        return MS_E_NOMEM;
    ms_err e = MS_OK;
    if (kl.n) {
        struct kv_write *w;
        if ((e = kv_write_begin(s->kv, s->wtxn, s->scratch, &w)) != MS_OK)
            return e;
        for (size_t i = 0; i < kl.n && !e; i++) {
            struct kv_del_req d = {.span = {.key = kl.keys[i], .key_len = kl.lens[i]}};
            struct kv_del_resp dr;
            e = kv_write_del(w, &d, &dr);
        }
        if ((e = srv_write_finish(s, w, e)) != MS_OK)
            return e;
    }
    uint8_t k[8];
    lease_key(r->id, k);
    e = be_del(s->wtxn, BE_BUCKET_LEASE, k, 8);
    if (e && e != MS_E_NOT_EXIST)
        return e;
    lease_mgr_revoke(s->lease.lessor, r->id);
    s->ctr.leases_revoked++;
    *revision = kv_current_rev(s->kv);
    return MS_OK;
}

/* Keepalive on the leader: *ttl is the granted TTL, or 0 if the lease is unknown or expired. */
static ms_err lease_renew(struct srv *s, int64_t id, int64_t *ttl)
{
    *ttl = 0;
    ms_err e = lease_mgr_renew(s->lease.lessor, id, clock_now_ms(), ttl);
    if (e == MS_E_LEASE_NOT_FOUND) {
        *ttl = 0;
        return MS_OK;
    }
    if (!e)
        lease_arm(s);
    return e;
}

ms_err srv_lease_keys(struct srv *s, int64_t id, struct arena *a, const uint8_t ***keys,
                      size_t **lens, size_t *n)
{
    struct key_list kl = {.a = a};
    lease_mgr_keys(s->lease.lessor, id, collect_key, &kl);
    if (kl.oom)
        return MS_E_NOMEM;
    *keys = kl.keys;
    *lens = kl.lens;
    *n = kl.n;
    return MS_OK;
}

void srv_lease_each_key(struct srv *s, int64_t id, lease_key_fn fn, void *ctx)
{
    lease_mgr_keys(s->lease.lessor, id, fn, ctx);
}

bool srv_lease_alive(struct srv *s, int64_t id)
{
    struct lease_info li;
    return lease_mgr_get(s->lease.lessor, id, clock_now_ms(), &li) && li.remaining_ms > 0;
}

ms_err srv_lease_list(struct srv *s, struct arena *a, int64_t **ids, size_t *n)
{
    size_t count = lease_mgr_count(s->lease.lessor);
    *ids = count ? arena_alloc(a, count * sizeof(**ids)) : NULL;
    if (count && !*ids)
        return MS_E_NOMEM;
    *n = lease_mgr_list(s->lease.lessor, 0, *ids, count);
    return MS_OK;
}

/* ---- keepalive and time-to-live on any member ---- */

/* A request waiting for its answer (the caller's id in the wait table). */
struct srv_lease_ask {
    struct srv_lease_ask *next;
    uint64_t rid;
    int64_t lease;
    enum srv_req_type kind; /* SRV_REQ_LEASE_KEEPALIVE or SRV_REQ_LEASE_TTL */
    uint64_t deadline_ms;
    uint64_t sent_to; /* the leader it was last sent to (0: not sent) */
    uint64_t sent_ms;
    bool leader_seen; /* a leader was known while it waited */
};

/* Application messages between members: kind, request id, lease, then for answers the error
 * and the two TTLs. Big-endian. */
enum ask_msg { ASK_KEEPALIVE = 1, ASK_TTL = 2, ANSWER_KEEPALIVE = 3, ANSWER_TTL = 4 };
#define ASK_LEN      17
#define ANSWER_LEN   37
#define ASK_RETRY_MS 500

/* The leader's answer to (kind, lease): *ttl and *granted as the results say. */
static ms_err answer_here(struct srv *s, enum srv_req_type kind, int64_t lease, int64_t *ttl,
                          int64_t *granted)
{
    *ttl = *granted = 0;
    if (!primary_here(s))
        return MS_E_NOT_LEADER;
    if (kind == SRV_REQ_LEASE_KEEPALIVE)
        return lease_renew(s, lease, ttl);
    struct lease_info li;
    if (!lease_mgr_get(s->lease.lessor, lease, clock_now_ms(), &li)) {
        *ttl = -1;
        return MS_OK;
    }
    *ttl = (int64_t)(li.remaining_ms / 1000);
    *granted = li.ttl;
    return MS_OK;
}

static void complete(struct srv *s, const struct srv_lease_ask *a, ms_err e, int64_t ttl,
                     int64_t granted)
{
    struct wait_entry we;
    if (!wait_remove(&s->waits, a->rid, &we) || !we.done)
        return;
    struct srv_result res = {.type = a->kind,
                             .revision = kv_current_rev(s->kv),
                             .u.lease = {.id = a->lease, .ttl = ttl, .granted = granted}};
    we.done(we.ctx, e, e ? NULL : &res);
}

void srv_lease_ask(struct srv *s, uint64_t rid, const struct srv_req *req, uint64_t timeout_ms)
{
    struct srv_lease_ask *a = calloc(1, sizeof(*a));
    if (!a) {
        struct srv_lease_ask none = {.rid = rid, .kind = req->type};
        complete(s, &none, MS_E_NOMEM, 0, 0);
        return;
    }
    a->rid = rid;
    a->lease = req->u.lease.id;
    a->kind = req->type;
    a->deadline_ms = clock_now_ms() + timeout_ms;
    a->next = s->lease.asks;
    s->lease.asks = a;
}

/* Handle one waiting request; false when it is answered (free it). */
static bool pump_one(struct srv *s, struct srv_lease_ask *a, uint64_t now)
{
    int64_t ttl, granted;
    if (!wait_find(&s->waits, a->rid))
        return false; /* cancelled */
    if (primary_here(s)) {
        ms_err e = answer_here(s, a->kind, a->lease, &ttl, &granted);
        complete(s, a, e, ttl, granted);
        return false;
    }
    uint64_t lead = s->hooks.leader(s);
    a->leader_seen = a->leader_seen || lead;
    if (now >= a->deadline_ms) {
        complete(s, a, a->leader_seen ? MS_E_TIMEOUT : MS_E_NO_LEADER, 0, 0);
        return false;
    }
    if (lead && (lead != a->sent_to || now >= a->sent_ms + ASK_RETRY_MS)) {
        uint8_t m[ASK_LEN];
        m[0] = a->kind == SRV_REQ_LEASE_KEEPALIVE ? ASK_KEEPALIVE : ASK_TTL;
        be64_put(m + 1, a->rid);
        be64_put(m + 9, (uint64_t)a->lease);
        if (s->hooks.send_app(s, lead, m, sizeof(m)) == MS_OK) {
            a->sent_to = lead;
            a->sent_ms = now;
        }
    }
    return true;
}

void srv_lease_pump(struct srv *s)
{
    if (!s->lease.asks)
        return;
    /* Take the list: completions may submit new requests, which queue on the empty one. */
    struct srv_lease_ask *list = s->lease.asks, *keep = NULL;
    s->lease.asks = NULL;
    uint64_t now = clock_now_ms();
    while (list) {
        struct srv_lease_ask *a = list;
        list = a->next;
        if (pump_one(s, a, now)) {
            a->next = keep;
            keep = a;
        } else {
            free(a);
        }
    }
    while (keep) {
        struct srv_lease_ask *a = keep;
        keep = a->next;
        a->next = s->lease.asks;
        s->lease.asks = a;
    }
}

void srv_lease_on_app(struct srv *s, uint64_t from, const uint8_t *p, size_t len)
{
    if (len == ASK_LEN && (p[0] == ASK_KEEPALIVE || p[0] == ASK_TTL)) {
        int64_t ttl, granted;
        enum srv_req_type kind =
            p[0] == ASK_KEEPALIVE ? SRV_REQ_LEASE_KEEPALIVE : SRV_REQ_LEASE_TTL;
        ms_err e = answer_here(s, kind, (int64_t)be64_get(p + 9), &ttl, &granted);
        uint8_t m[ANSWER_LEN];
        m[0] = p[0] == ASK_KEEPALIVE ? ANSWER_KEEPALIVE : ANSWER_TTL;
        memcpy(m + 1, p + 1, 16); /* request id, lease */
        be32_put(m + 17, (uint32_t)e);
        be64_put(m + 21, (uint64_t)ttl);
        be64_put(m + 29, (uint64_t)granted);
        if (s->hooks.send_app(s, from, m, sizeof(m)) != MS_OK)
            log_debug("lease: the answer to %016llx was dropped", (unsigned long long)from);
        return;
    }
    if (len != ANSWER_LEN || (p[0] != ANSWER_KEEPALIVE && p[0] != ANSWER_TTL)) {
        log_warn("lease: a message of %zu bytes from %016llx is not understood", len,
                 (unsigned long long)from);
        return;
    }
    uint64_t rid = be64_get(p + 1);
    uint32_t e = be32_get(p + 17);
    for (struct srv_lease_ask **pp = &s->lease.asks; *pp; pp = &(*pp)->next) {
        struct srv_lease_ask *a = *pp;
        if (a->rid != rid)
            continue;
        if (e == MS_E_NOT_LEADER || e >= MS_ERR_COUNT_) {
            a->sent_to = 0; /* it no longer leads: ask the next leader */
            return;
        }
        *pp = a->next;
        complete(s, a, (ms_err)e, (int64_t)be64_get(p + 21), (int64_t)be64_get(p + 29));
        free(a);
        return;
    }
}

bool srv_lease_asks_waiting(const struct srv *s)
{
    return s->lease.asks != NULL;
}

void srv_lease_asks_fini(struct srv *s)
{
    while (s->lease.asks) {
        struct srv_lease_ask *a = s->lease.asks;
        s->lease.asks = a->next;
        free(a);
    }
}

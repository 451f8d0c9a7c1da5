/* srv_lockop.c - the requests of etcd's lock and election services (v3lock, v3election), one
 * model for every front door: a request runs as a sequence of steps (a session lease, txns
 * and ranges on the name's prefix "name/", srv_lock.c's waits), each started from the previous
 * one's completion, as etcd 3.4's services run them on its concurrency package (mutex.go,
 * election.go, key.go, session.go).
 *
 * Owns struct srv_lockops: every request in flight, by the id its caller holds. A request
 * holds at most one step with the server at a time (its id in step); cancelling the request
 * cancels that step (a waiting lock or campaign gives its place up through srv_lock.c) and
 * frees it. Entry point beside srv.c: it submits through srv_submit like a front door.
 */
#include "srv_int.h"

#include "metastore/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_TTL 60 /* etcd concurrency.NewSession's default TTL */

struct srv_lockop {
    struct srv *s;
    uint64_t id;   /* the caller's handle */
    uint64_t step; /* the request or wait running for it now (0: none) */
    enum srv_lock_op op;
    srv_lock_fn done;
    void *ctx;
    struct arena *a; /* the request's copies */
    struct auth_caller caller;
    const uint8_t *name;
    size_t name_len;
    const uint8_t *value;
    size_t value_len;
    uint8_t *prefix; /* name + "/" */
    size_t prefix_len;
    const uint8_t *key; /* name/<lease in hex>, the leader key or the unlock key given */
    size_t key_len;
    int64_t lease;
    int64_t rev;         /* the key's create revision */
    int64_t hdr_rev;     /* campaign: its first txn's revision (the answer's header) */
    struct srv_req req;  /* the step's request (a range is borrowed until its completion) */
    struct kv_cmp cmp;   /* the txn's compare ... */
    struct kv_op ops[4]; /* ... and its ops */
};

static void op_free(struct srv_lockop *o)
{
    arena_destroy(o->a);
    free(o);
}

/* The request ends: done hears of it, then it is freed. */
static void finish(struct srv_lockop *o, ms_err err, const struct srv_lock_result *res)
{
    wait_remove(&o->s->lockops.ids, o->id, NULL);
    o->done(o->ctx, err, res);
    op_free(o);
}

static void finish_rev(struct srv_lockop *o, int64_t revision)
{
    struct srv_lock_result res = {.op = o->op, .revision = revision};
    finish(o, MS_OK, &res);
}

/* Submit o->req as the caller's own request (its permissions checked now and when it
 * applies), completed by fn. */
static ms_err submit(struct srv_lockop *o, srv_done_fn fn)
{
    struct srv *s = o->s;
    ms_err e = srv_auth_check(s, &o->caller, &o->req);
    o->req.checked = true;
    o->req.caller = o->caller;
    if (!e)
        e = srv_submit(s, &o->req, fn, o, &o->step);
    if (e)
        o->step = 0;
    return e;
}

/* A step's completion: the step is over; err ends the request. */
static bool step_ok(struct srv_lockop *o, ms_err err)
{
    o->step = 0;
    if (err)
        finish(o, err, NULL);
    return err == MS_OK;
}

/* A later step could not start: the request ends with its error. */
static void next(struct srv_lockop *o, ms_err e)
{
    if (e)
        finish(o, e, NULL);
}

/* The session's key, "name/" and the lease in hex as Go's %x writes an int64. */
static ms_err own_key(struct srv_lockop *o)
{
    char hex[24];
    int n = o->lease < 0 ? snprintf(hex, sizeof(hex), "-%llx", -(unsigned long long)o->lease)
                         : snprintf(hex, sizeof(hex), "%llx", (unsigned long long)o->lease);
    uint8_t *k = arena_alloc(o->a, o->prefix_len + (size_t)n);
    if (!k)
        return MS_E_NOMEM;
    memcpy(k, o->prefix, o->prefix_len);
    memcpy(k + o->prefix_len, hex, (size_t)n);
    o->key = k;
    o->key_len = o->prefix_len + (size_t)n;
    return MS_OK;
}

/* A range of the first-created key under the prefix (etcd WithFirstCreate). */
static ms_err first_create(struct srv_lockop *o, struct kv_range_req *out)
{
    uint8_t *end = arena_alloc(o->a, o->prefix_len);
    if (!end)
        return MS_E_NOMEM;
    memset(out, 0, sizeof(*out));
    kv_span_prefix(&out->span, o->prefix, o->prefix_len, end);
    out->sort_order = KV_SORT_ASCEND;
    out->sort_target = KV_SORT_CREATE;
    out->limit = 1;
    return MS_OK;
}

/* A txn in o->req: if the caller's key was created at rev (0: does not exist), then the n_then
 * ops from o->ops, else the n_else after them. */
static void txn(struct srv_lockop *o, int64_t rev, size_t n_then, size_t n_else)
{
    o->cmp = (struct kv_cmp){.span = {.key = o->key, .key_len = o->key_len},
                             .target = KV_CMP_CREATE,
                             .result = KV_CMP_EQUAL,
                             .set = KV_CMP_CREATE,
                             .number = rev};
    o->req = (struct srv_req){.type = SRV_REQ_TXN,
                              .u.txn = {.cmps = &o->cmp,
                                        .n_cmps = 1,
                                        .success = o->ops,
                                        .n_success = n_then,
                                        .failure = o->ops + n_then,
                                        .n_failure = n_else}};
}

static struct kv_op own_put(const struct srv_lockop *o)
{
    return (struct kv_op){.type = KV_OP_PUT,
                          .u.put = {.key = o->key,
                                    .key_len = o->key_len,
                                    .value = o->value,
                                    .value_len = o->value_len,
                                    .lease = o->lease}};
}

static struct kv_op own_get(const struct srv_lockop *o)
{
    return (struct kv_op){.type = KV_OP_RANGE,
                          .u.range.span = {.key = o->key, .key_len = o->key_len}};
}

/* ---- lock and campaign: the waits, then the answer ---- */

/* The lock or campaign is won at revision rev (its waits are over). */
static void won(struct srv_lockop *o, int64_t rev)
{
    if (!srv_lease_alive(o->s, o->lease)) {
        /* etcd 3.4 would answer here with a key its expired lease already lost (#11456). */
        finish(o, MS_E_LEASE_NOT_FOUND, NULL);
        return;
    }
    struct srv_lock_result res = {
        .op = o->op,
        .revision = o->op == SRV_LOCK_LOCK ? rev : o->hdr_rev,
        .leader = {o->name, o->name_len, o->key, o->key_len, o->rev, o->lease}};
    finish(o, MS_OK, &res);
}

static void on_waited(void *ctx, ms_err err, int64_t revision)
{
    struct srv_lockop *o = ctx;
    if (step_ok(o, err))
        won(o, revision);
}

/* Wait for every key created before ours under the prefix to go (etcd waitDeletes). */
static ms_err wait_deletes(struct srv_lockop *o)
{
    ms_err e = srv_wait_deletes(o->s, o->prefix, o->prefix_len, o->key, o->key_len, o->rev,
                                on_waited, o, &o->step);
    if (e)
        o->step = 0;
    return e;
}

static void on_lock_txn(void *ctx, ms_err err, const struct srv_result *res)
{
    struct srv_lockop *o = ctx;
    if (!step_ok(o, err))
        return;
    const struct kv_txn_resp *t = &res->u.txn;
    o->rev = res->revision;
    if (!t->succeeded) /* this session holds or waits already: reuse its key */
        o->rev = t->resps[0].u.range.n_kvs ? t->resps[0].u.range.kvs[0].create_revision : 0;
    const struct kv_range_resp *owner = &t->resps[1].u.range;
    if (owner->n_kvs == 0 || owner->kvs[0].create_revision == o->rev) {
        won(o, res->revision);
        return;
    }
    next(o, wait_deletes(o));
}

/* etcd Mutex.Lock's txn: create the key under the lease unless it exists, and read the
 * first-created key of the prefix (the holder) either way. */
static ms_err lock(struct srv_lockop *o)
{
    ms_err e = own_key(o);
    if (e)
        return e;
    memset(o->ops, 0, sizeof(o->ops));
    o->ops[0].type = KV_OP_PUT;
    o->ops[0].u.put = (struct kv_put_req){.key = o->key, .key_len = o->key_len, .lease = o->lease};
    o->ops[1].type = KV_OP_RANGE;
    if ((e = first_create(o, &o->ops[1].u.range)) != MS_OK)
        return e;
    o->ops[2] = own_get(o);
    o->ops[3] = o->ops[1];
    txn(o, 0, 2, 2);
    return submit(o, on_lock_txn);
}

static void on_campaign_proclaim(void *ctx, ms_err err, const struct srv_result *res)
{
    struct srv_lockop *o = ctx;
    if (!err && !res->u.txn.succeeded)
        err = MS_E_ELECTION_NOT_LEADER;
    if (step_ok(o, err))
        next(o, wait_deletes(o));
}

/* Put the value on the key if it is still the one created at o->rev (etcd Election.Proclaim). */
static ms_err proclaim_txn(struct srv_lockop *o, srv_done_fn fn)
{
    o->ops[0] = own_put(o);
    txn(o, o->rev, 1, 0);
    return submit(o, fn);
}

static void on_campaign_txn(void *ctx, ms_err err, const struct srv_result *res)
{
    struct srv_lockop *o = ctx;
    if (!step_ok(o, err))
        return;
    const struct kv_txn_resp *t = &res->u.txn;
    o->rev = o->hdr_rev = res->revision;
    if (!t->succeeded && t->resps[0].u.range.n_kvs) {
        /* The session campaigns already: keep its key, and its place; a new value is
         * proclaimed. */
        const struct kv_kv *kv = &t->resps[0].u.range.kvs[0];
        o->rev = kv->create_revision;
        if (kv->value_len != o->value_len ||
            (kv->value_len && memcmp(kv->value, o->value, kv->value_len) != 0)) {
            next(o, proclaim_txn(o, on_campaign_proclaim));
            return;
        }
    }
    next(o, wait_deletes(o));
}

/* etcd Election.Campaign's txn: create the key with the value unless it exists, else read it. */
static ms_err campaign(struct srv_lockop *o)
{
    ms_err e = own_key(o);
    if (e)
        return e;
    o->ops[0] = own_put(o);
    o->ops[1] = own_get(o);
    txn(o, 0, 1, 1);
    return submit(o, on_campaign_txn);
}

/* ---- proclaim, resign, unlock, leader ---- */

static void on_proclaim(void *ctx, ms_err err, const struct srv_result *res)
{
    struct srv_lockop *o = ctx;
    if (!err && !res->u.txn.succeeded)
        err = MS_E_ELECTION_NOT_LEADER;
    if (step_ok(o, err))
        finish_rev(o, res->revision);
}

/* Resign, unlock: the header of the write. */
static void on_written(void *ctx, ms_err err, const struct srv_result *res)
{
    struct srv_lockop *o = ctx;
    if (step_ok(o, err))
        finish_rev(o, res->revision);
}

/* Delete the key if it is still the one created at o->rev (etcd Election.Resign: not being the
 * leader is no error). */
static ms_err resign(struct srv_lockop *o)
{
    o->ops[0] =
        (struct kv_op){.type = KV_OP_DELETE, .u.del.span = {.key = o->key, .key_len = o->key_len}};
    txn(o, o->rev, 1, 0);
    return submit(o, on_written);
}

/* etcd's lock server deletes the key given, whatever it is. */
static ms_err unlock(struct srv_lockop *o)
{
    o->req = (struct srv_req){.type = SRV_REQ_DELETE,
                              .u.del.span = {.key = o->key, .key_len = o->key_len}};
    return submit(o, on_written);
}

static void on_leader(void *ctx, ms_err err, const struct srv_result *res)
{
    struct srv_lockop *o = ctx;
    if (!err && res->u.range.n_kvs == 0)
        err = MS_E_ELECTION_NO_LEADER;
    if (!step_ok(o, err))
        return;
    struct srv_lock_result r = {.op = o->op, .revision = res->revision, .kv = &res->u.range.kvs[0]};
    finish(o, MS_OK, &r);
}

/* etcd Election.Leader: the first-created key under the prefix. */
static ms_err leader(struct srv_lockop *o)
{
    o->req.type = SRV_REQ_RANGE;
    ms_err e = first_create(o, &o->req.u.range);
    return e ? e : submit(o, on_leader);
}

/* ---- the session, then the operation ---- */

static ms_err run(struct srv_lockop *o)
{
    switch (o->op) {
    case SRV_LOCK_LOCK:
        return lock(o);
    case SRV_ELECT_CAMPAIGN:
        return campaign(o);
    case SRV_ELECT_PROCLAIM:
        return proclaim_txn(o, on_proclaim);
    case SRV_ELECT_RESIGN:
        return resign(o);
    case SRV_LOCK_UNLOCK:
        return unlock(o);
    case SRV_ELECT_LEADER:
        return leader(o);
    }
    return MS_E_BAD_REQUEST;
}

static void on_session(void *ctx, ms_err err, const struct srv_result *res)
{
    struct srv_lockop *o = ctx;
    if (!step_ok(o, err))
        return;
    o->lease = res->u.lease.id;
    next(o, run(o));
}

/* etcd's services open a session on the lease given; with none they grant one of 60 s that
 * nobody keeps alive (the session is orphaned at once). Leader needs no session (lease -1). */
static ms_err start(struct srv_lockop *o)
{
    if (o->lease || o->op == SRV_LOCK_UNLOCK || o->op == SRV_ELECT_LEADER)
        return run(o);
    o->req = (struct srv_req){.type = SRV_REQ_LEASE_GRANT, .u.lease = {.ttl = SESSION_TTL}};
    return submit(o, on_session);
}

/* A copy of p[0..n) in o's arena (NULL only on OOM; an empty string is not NULL). */
static const uint8_t *copy(struct srv_lockop *o, const uint8_t *p, size_t n, bool *oom)
{
    uint8_t *c = arena_alloc(o->a, n ? n : 1);
    if (!c) {
        *oom = true;
        return NULL;
    }
    if (n)
        memcpy(c, p, n);
    return c;
}

/* o with req's fields copied; NULL on OOM. */
static struct srv_lockop *op_create(struct srv *s, const struct srv_lock_req *req)
{
    struct srv_lockop *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    if (!(o->a = arena_create(512))) {
        free(o);
        return NULL;
    }
    o->s = s;
    o->op = req->op;
    bool oom = false;
    const struct srv_leader_key *l = &req->leader;
    bool by_leader = req->op == SRV_ELECT_PROCLAIM || req->op == SRV_ELECT_RESIGN;
    o->name_len = by_leader ? l->name_len : req->name_len;
    o->name = copy(o, by_leader ? l->name : req->name, o->name_len, &oom);
    o->value_len = req->value_len;
    o->value = copy(o, req->value, req->value_len, &oom);
    o->lease = req->lease;
    if (by_leader && req->has_leader) {
        o->key_len = l->key_len;
        o->key = copy(o, l->key, l->key_len, &oom);
        o->rev = l->rev;
        o->lease = l->lease;
    } else if (req->op == SRV_LOCK_UNLOCK) {
        o->key_len = req->key_len;
        o->key = copy(o, req->key, req->key_len, &oom);
    }
    o->caller = req->caller;
    if (req->caller.has_user)
        o->caller.user.p = copy(o, req->caller.user.p, req->caller.user.len, &oom);
    o->prefix_len = o->name_len + 1;
    o->prefix = arena_alloc(o->a, o->prefix_len);
    if (oom || !o->prefix) {
        op_free(o);
        return NULL;
    }
    if (o->name_len)
        memcpy(o->prefix, o->name, o->name_len);
    o->prefix[o->name_len] = '/';
    return o;
}

ms_err srv_lock_submit(struct srv *s, const struct srv_lock_req *req, srv_lock_fn done, void *ctx,
                       uint64_t *id)
{
    if ((req->op == SRV_ELECT_PROCLAIM || req->op == SRV_ELECT_RESIGN) && !req->has_leader)
        return MS_E_ELECTION_NO_LEADER_KEY;
    struct srv_lockop *o = op_create(s, req);
    if (!o)
        return MS_E_NOMEM;
    o->done = done;
    o->ctx = ctx;
    o->id = ++s->next_id;
    struct wait_entry *w = wait_add(&s->lockops.ids, o->id);
    if (!w) {
        op_free(o);
        return MS_E_NOMEM;
    }
    w->ctx = o;
    ms_err e = start(o);
    if (e) {
        wait_remove(&s->lockops.ids, o->id, NULL);
        op_free(o);
        return e;
    }
    *id = o->id;
    return MS_OK;
}

ms_err srv_election_observe(struct srv *s, const uint8_t *name, size_t name_len,
                            const struct auth_caller *caller, srv_leader_fn fn, void *ctx,
                            uint64_t *id)
{
    /* "name/", and the end of its range after it */
    uint8_t *prefix = malloc(2 * (name_len + 1));
    if (!prefix)
        return MS_E_NOMEM;
    if (name_len)
        memcpy(prefix, name, name_len);
    prefix[name_len] = '/';
    /* etcd's Observe reads the prefix as the caller (its Get and Watch). */
    struct srv_req rq = {.type = SRV_REQ_RANGE};
    kv_span_prefix(&rq.u.range.span, prefix, name_len + 1, prefix + name_len + 1);
    ms_err e = srv_auth_check(s, caller, &rq);
    if (!e)
        e = srv_observe(s, prefix, name_len + 1, fn, ctx, id);
    free(prefix);
    return e;
}

bool srv_lockop_cancel(struct srv *s, uint64_t id)
{
    struct wait_entry w;
    if (!wait_remove(&s->lockops.ids, id, &w))
        return false;
    struct srv_lockop *o = w.ctx;
    if (o->step)
        srv_cancel(s, o->step);
    op_free(o);
    return true;
}

size_t srv_lockop_count(const struct srv *s)
{
    return s->lockops.ids.n;
}

ms_err srv_lockop_init(struct srv *s)
{
    return wait_init(&s->lockops.ids) ? MS_OK : MS_E_NOMEM;
}

void srv_lockop_fini(struct srv *s)
{
    struct wait *w = &s->lockops.ids;
    for (size_t i = 0; i < w->cap; i++)
        if (w->slots[i].id)
            op_free(w->slots[i].ctx);
    wait_fini(w);
}

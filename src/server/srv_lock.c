/* srv_lock.c - the waits of the lock and election services (etcd v3lock, v3election): a lock
 * or campaign waiting for the keys created before its own to go, and election observers.
 *
 * Owns struct srv_locks: every waiter, a hash table of the keys they watch, the queue of
 * waiters that must look again, and the loop event that serves that queue. Applied events
 * arrive from srv_events_applied (srv_watch.c); a deletion only marks the waiters of that key
 * due, and the lookups (kv ranges over the applied state) and completions run from the queue's
 * event, after the ready step. A waiter watches one key at a time besides its own (the
 * predecessor with the largest create revision below its own, as etcd's waitDeletes does), so a
 * deletion wakes one waiter, not every one queued. Calls nothing above it; proposals (the
 * delete of a cancelled waiter's key) go up through hooks.propose.
 */
#include "srv_int.h"

#include "metastore/log.h"

#include <stdlib.h>
#include <string.h>

#define DUE_BUDGET 512 /* waiters served per loop turn */

enum waiter_kind { WAIT_DELETES, WAIT_OBSERVE };

/* A key a waiter watches, linked in the table's bucket of its hash. */
struct srv_lock_key {
    struct srv_lock_key *next;
    struct srv_waiter *w;
    const uint8_t *key;
    size_t key_len;
    uint64_t hash;
    bool linked;
};

struct srv_waiter {
    uint64_t id;
    enum waiter_kind kind;
    const uint8_t *prefix; /* in the same allocation, after the struct */
    size_t prefix_len;
    const uint8_t *own; /* WAIT_DELETES: the caller's key, created at own_rev */
    size_t own_len;
    int64_t own_rev;
    uint8_t *watched; /* the predecessor, or the observed leader (owned) */
    size_t watched_len;
    struct srv_lock_key own_in;
    struct srv_lock_key watch_in;
    bool due;
    bool on_prefix; /* WAIT_OBSERVE: no leader, waiting for the first put under prefix */
    ms_err fail;
    srv_wait_fn done;
    srv_leader_fn leader;
    void *ctx;
    struct srv_waiter *all_prev, *all_next; /* every waiter */
    struct srv_waiter *due_prev, *due_next;
    struct srv_waiter *pfx_prev, *pfx_next;
};

static uint64_t key_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool table_grow(struct srv_locks *l)
{
    size_t cap = l->cap ? l->cap * 2 : 64;
    struct srv_lock_key **b = calloc(cap, sizeof(*b));
    if (!b)
        return false;
    for (size_t i = 0; i < l->cap; i++) {
        struct srv_lock_key *k = l->buckets[i];
        while (k) {
            struct srv_lock_key *next = k->next;
            k->next = b[k->hash & (cap - 1)];
            b[k->hash & (cap - 1)] = k;
            k = next;
        }
    }
    free(l->buckets);
    l->buckets = b;
    l->cap = cap;
    return true;
}

static bool key_link(struct srv_locks *l, struct srv_lock_key *k)
{
    if (l->n_keys >= l->cap && !table_grow(l))
        return false;
    k->hash = key_hash(k->key, k->key_len);
    struct srv_lock_key **b = &l->buckets[k->hash & (l->cap - 1)];
    k->next = *b;
    *b = k;
    k->linked = true;
    l->n_keys++;
    return true;
}

static void key_unlink(struct srv_locks *l, struct srv_lock_key *k)
{
    if (!k->linked)
        return;
    struct srv_lock_key **pp = &l->buckets[k->hash & (l->cap - 1)];
    while (*pp != k)
        pp = &(*pp)->next;
    *pp = k->next;
    k->next = NULL;
    k->linked = false;
    l->n_keys--;
}

static void due_unlink(struct srv_locks *l, struct srv_waiter *w)
{
    if (!w->due)
        return;
    if (w->due_prev)
        w->due_prev->due_next = w->due_next;
    else
        l->due_head = w->due_next;
    if (w->due_next)
        w->due_next->due_prev = w->due_prev;
    else
        l->due_tail = w->due_prev;
    w->due_prev = w->due_next = NULL;
    w->due = false;
}

static void prefix_unlink(struct srv_locks *l, struct srv_waiter *w)
{
    if (!w->on_prefix)
        return;
    if (w->pfx_prev)
        w->pfx_prev->pfx_next = w->pfx_next;
    else
        l->prefix_waiters = w->pfx_next;
    if (w->pfx_next)
        w->pfx_next->pfx_prev = w->pfx_prev;
    w->pfx_prev = w->pfx_next = NULL;
    w->on_prefix = false;
}

static void mark_due(struct srv *s, struct srv_waiter *w, ms_err fail)
{
    struct srv_locks *l = &s->locks;
    if (fail && !w->fail)
        w->fail = fail;
    if (w->due)
        return;
    w->due = true;
    w->due_next = NULL;
    w->due_prev = l->due_tail;
    if (l->due_tail)
        l->due_tail->due_next = w;
    else
        l->due_head = w;
    l->due_tail = w;
    event_active(l->due_ev, EV_TIMEOUT, 1);
}

/* Unlink w from everything and free it. Its callback is not called. */
static void waiter_free(struct srv *s, struct srv_waiter *w)
{
    struct srv_locks *l = &s->locks;
    wait_remove(&l->ids, w->id, NULL);
    if (w->all_prev)
        w->all_prev->all_next = w->all_next;
    else
        l->all = w->all_next;
    if (w->all_next)
        w->all_next->all_prev = w->all_prev;
    key_unlink(l, &w->own_in);
    key_unlink(l, &w->watch_in);
    due_unlink(l, w);
    prefix_unlink(l, w);
    free(w->watched);
    free(w);
    l->n_waiters--;
}

/* Watch key k[0..n) (copied) instead of the one watched before. */
static bool watch_key(struct srv *s, struct srv_waiter *w, const uint8_t *k, size_t n)
{
    key_unlink(&s->locks, &w->watch_in);
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy)
        return false;
    memcpy(copy, k, n);
    free(w->watched);
    w->watched = copy;
    w->watched_len = n;
    w->watch_in.key = copy;
    w->watch_in.key_len = n;
    return key_link(&s->locks, &w->watch_in);
}

static struct srv_waiter *waiter_create(struct srv *s, enum waiter_kind kind, const uint8_t *prefix,
                                        size_t prefix_len, const uint8_t *own, size_t own_len,
                                        uint64_t *id)
{
    struct srv_locks *l = &s->locks;
    struct srv_waiter *w = calloc(1, sizeof(*w) + prefix_len + own_len);
    if (!w)
        return NULL;
    uint8_t *p = (uint8_t *)(w + 1);
    memcpy(p, prefix, prefix_len);
    if (own_len)
        memcpy(p + prefix_len, own, own_len);
    w->kind = kind;
    w->prefix = p;
    w->prefix_len = prefix_len;
    w->own = p + prefix_len;
    w->own_len = own_len;
    w->own_in.w = w;
    w->watch_in.w = w;
    w->id = ++s->next_id;
    struct wait_entry *e = wait_add(&l->ids, w->id);
    if (!e) {
        free(w);
        return NULL;
    }
    e->ctx = w;
    w->all_next = l->all;
    if (w->all_next)
        w->all_next->all_prev = w;
    l->all = w;
    l->n_waiters++;
    *id = w->id;
    return w;
}

ms_err srv_wait_deletes(struct srv *s, const uint8_t *prefix, size_t prefix_len, const uint8_t *own,
                        size_t own_len, int64_t own_rev, srv_wait_fn done, void *ctx, uint64_t *id)
{
    struct srv_waiter *w = waiter_create(s, WAIT_DELETES, prefix, prefix_len, own, own_len, id);
    if (!w)
        return MS_E_NOMEM;
    w->own_rev = own_rev;
    w->done = done;
    w->ctx = ctx;
    w->own_in.key = w->own;
    w->own_in.key_len = own_len;
    if (!key_link(&s->locks, &w->own_in)) {
        waiter_free(s, w);
        return MS_E_NOMEM;
    }
    mark_due(s, w, MS_OK); /* the first lookup, from the loop */
    return MS_OK;
}

ms_err srv_observe(struct srv *s, const uint8_t *prefix, size_t prefix_len, srv_leader_fn fn,
                   void *ctx, uint64_t *id)
{
    struct srv_waiter *w = waiter_create(s, WAIT_OBSERVE, prefix, prefix_len, NULL, 0, id);
    if (!w)
        return MS_E_NOMEM;
    w->leader = fn;
    w->ctx = ctx;
    mark_due(s, w, MS_OK);
    return MS_OK;
}

bool srv_lock_cancel(struct srv *s, uint64_t id)
{
    struct wait_entry *e = wait_find(&s->locks.ids, id);
    if (!e)
        return false;
    struct srv_waiter *w = e->ctx;
    if (w->kind == WAIT_DELETES && !w->fail) {
        /* The caller gave up its place: delete its key if it is still the one it created, as
         * etcd's Mutex.Lock and Election.Campaign do when their context ends. */
        struct kv_cmp cmp = {.span = {.key = w->own, .key_len = w->own_len},
                             .target = KV_CMP_CREATE,
                             .result = KV_CMP_EQUAL,
                             .set = KV_CMP_CREATE,
                             .number = w->own_rev};
        struct kv_op del = {.type = KV_OP_DELETE,
                            .u.del = {.span = {.key = w->own, .key_len = w->own_len}}};
        struct srv_req req = {
            .type = SRV_REQ_TXN,
            .u.txn = {.cmps = &cmp, .n_cmps = 1, .success = &del, .n_success = 1}};
        ms_err pe = s->hooks.propose(s, &req);
        if (pe)
            log_warn("the key of a cancelled lock wait could not be deleted: %s", ms_err_name(pe));
    }
    waiter_free(s, w);
    return true;
}

/* A range over the applied state into the waits' arena (reset by the caller). */
static ms_err lookup(struct srv *s, const struct kv_span *span, int64_t sort_order,
                     int64_t max_create, bool keys_only, struct kv_range_resp *out)
{
    struct kv_range_req req = {.span = *span,
                               .limit = 1,
                               .sort_order = sort_order,
                               .sort_target = sort_order ? KV_SORT_CREATE : KV_SORT_KEY,
                               .keys_only = keys_only,
                               .max_create_revision = max_create};
    s->locks.lookups++;
    return kv_range(s->kv, s->wtxn, &req, s->locks.a, out);
}

/* One round of etcd's waitDeletes for w: its own key must still be the one it created; then
 * watch the key with the largest create revision below it, or finish if there is none.
 * Returns true when w is finished (its callback must be called). */
static bool deletes_round(struct srv *s, struct srv_waiter *w, ms_err *err)
{
    struct kv_range_resp r;
    struct kv_span own = {.key = w->own, .key_len = w->own_len};
    ms_err e = lookup(s, &own, KV_SORT_NONE, 0, true, &r);
    if (!e && (r.n_kvs == 0 || r.kvs[0].create_revision != w->own_rev))
        e = MS_E_LEASE_NOT_FOUND; /* its lease expired or was revoked */
    if (e) {
        *err = e;
        return true;
    }
    uint8_t *end = arena_alloc(s->locks.a, w->prefix_len ? w->prefix_len : 1);
    if (!end) {
        *err = MS_E_NOMEM;
        return true;
    }
    struct kv_span pfx;
    kv_span_prefix(&pfx, w->prefix, w->prefix_len, end);
    if ((e = lookup(s, &pfx, KV_SORT_DESCEND, w->own_rev - 1, true, &r)) != MS_OK) {
        *err = e;
        return true;
    }
    if (r.n_kvs == 0) {
        *err = MS_OK;
        return true;
    }
    if (!watch_key(s, w, r.kvs[0].key, r.kvs[0].key_len)) {
        *err = MS_E_NOMEM;
        return true;
    }
    return false;
}

/* An observer looks for the leader: report it and watch it, or wait for the first put. */
static void observe_round(struct srv *s, struct srv_waiter *w)
{
    key_unlink(&s->locks, &w->watch_in);
    uint8_t *end = arena_alloc(s->locks.a, w->prefix_len ? w->prefix_len : 1);
    struct kv_range_resp r;
    struct kv_span pfx;
    ms_err e = MS_E_NOMEM;
    if (end) {
        kv_span_prefix(&pfx, w->prefix, w->prefix_len, end);
        e = lookup(s, &pfx, KV_SORT_ASCEND, 0, false, &r);
    }
    if (e) {
        /* Try again next turn rather than lose the observer. */
        log_warn("election observer lookup failed: %s", ms_err_name(e));
        mark_due(s, w, MS_OK);
        return;
    }
    if (r.n_kvs == 0) {
        w->on_prefix = true;
        w->pfx_prev = NULL;
        w->pfx_next = s->locks.prefix_waiters;
        if (w->pfx_next)
            w->pfx_next->pfx_prev = w;
        s->locks.prefix_waiters = w;
        return;
    }
    if (!watch_key(s, w, r.kvs[0].key, r.kvs[0].key_len)) {
        mark_due(s, w, MS_OK);
        return;
    }
    w->leader(w->ctx, kv_current_rev(s->kv), &r.kvs[0]);
}

static void srv_on_lock_due(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    struct srv_locks *l = &s->locks;
    (void)fd;
    (void)what;
    for (int n = 0; n < DUE_BUDGET && l->due_head; n++) {
        struct srv_waiter *w = l->due_head;
        due_unlink(l, w);
        if (w->kind == WAIT_OBSERVE) {
            observe_round(s, w);
            arena_reset(l->a);
            continue;
        }
        ms_err err = w->fail;
        bool finished = err || deletes_round(s, w, &err);
        arena_reset(l->a);
        if (!finished)
            continue;
        srv_wait_fn done = w->done;
        void *ctx = w->ctx;
        waiter_free(s, w);
        l->granted += err == MS_OK;
        done(ctx, err, kv_current_rev(s->kv));
    }
    if (l->due_head)
        event_active(l->due_ev, EV_TIMEOUT, 1);
}

static bool has_prefix(const struct kv_kv *kv, const struct srv_waiter *w)
{
    return kv->key_len >= w->prefix_len && memcmp(kv->key, w->prefix, w->prefix_len) == 0;
}

void srv_lock_events(struct srv *s, int64_t rev, const struct kv_event *ev, size_t n)
{
    struct srv_locks *l = &s->locks;
    if (!l->n_waiters)
        return;
    for (size_t i = 0; i < n; i++) {
        const struct kv_event *e = &ev[i];
        uint64_t h = key_hash(e->kv.key, e->kv.key_len);
        struct srv_lock_key *first = l->cap ? l->buckets[h & (l->cap - 1)] : NULL;
        for (struct srv_lock_key *k = first; k; k = k->next) {
            if (k->hash != h || k->key_len != e->kv.key_len ||
                memcmp(k->key, e->kv.key, k->key_len) != 0)
                continue;
            struct srv_waiter *w = k->w;
            if (k == &w->own_in) {
                if (e->type == KV_EVENT_DELETE)
                    mark_due(s, w, MS_E_LEASE_NOT_FOUND);
            } else if (e->type == KV_EVENT_DELETE) {
                l->wakeups++;
                mark_due(s, w, MS_OK);
            } else if (w->kind == WAIT_OBSERVE && !w->due) {
                w->leader(w->ctx, rev, &e->kv); /* the leader proclaimed a new value */
            }
        }
        if (e->type != KV_EVENT_PUT)
            continue;
        /* Observers without a leader take the first key put under their prefix (etcd reports
         * it with the header revision set to the key's). */
        struct srv_waiter *next;
        for (struct srv_waiter *w = l->prefix_waiters; w; w = next) {
            next = w->pfx_next;
            if (!has_prefix(&e->kv, w))
                continue;
            prefix_unlink(l, w);
            if (!watch_key(s, w, e->kv.key, e->kv.key_len)) {
                mark_due(s, w, MS_OK);
                continue;
            }
            w->leader(w->ctx, e->kv.mod_revision, &e->kv);
        }
    }
}

void srv_lock_stats(const struct srv *s, struct srv_lock_stats *out)
{
    out->waiters = s->locks.n_waiters;
    out->keys = s->locks.n_keys;
    out->wakeups = s->locks.wakeups;
    out->lookups = s->locks.lookups;
    out->granted = s->locks.granted;
}

ms_err srv_lock_init(struct srv *s)
{
    struct srv_locks *l = &s->locks;
    if (!wait_init(&l->ids) || !(l->a = arena_create(4096)) ||
        !(l->due_ev = event_new(s->base, -1, 0, srv_on_lock_due, s)))
        return MS_E_NOMEM;
    return MS_OK;
}

void srv_lock_fini(struct srv *s)
{
    struct srv_locks *l = &s->locks;
    while (l->all)
        waiter_free(s, l->all);
    if (l->due_ev)
        event_free(l->due_ev);
    wait_fini(&l->ids);
    arena_destroy(l->a);
    free(l->buckets);
    memset(l, 0, sizeof(*l));
}

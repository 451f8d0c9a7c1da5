/* srv_apply.c - the state machine: committed entries applied to the store, the backend's
 * transaction committed, and the writers of those entries answered.
 *
 * Entries arrive in index order from the Raft node (srv_node.c), durable and committed. Each is
 * applied inside the one write txn (a request that fails leaves nothing behind), and the batch's
 * last index and term, the consistent index, go into the same txn: a restart resumes after it.
 * Conf changes take effect here, when applied, and the configuration they leave is recorded in
 * the same txn too.
 *
 * The backend txn is committed once per batch on the memory backend (no I/O) and on a timer or
 * after SRV_COMMIT_ENTRIES entries on LMDB (its fsync is amortised; the WAL holds the entries
 * meanwhile). WAL segments are released only below what the backend holds durably.
 */
#include "srv_int.h"

#include "metastore/grow.h"
#include "metastore/log.h"
#include "metastore/raft_codec.h"

#include <stdlib.h>
#include <string.h>

#include "metastore/clock.h"

#define COMPACT_BUDGET     10000
#define SRV_COMMIT_ENTRIES 10000 /* LMDB: commit at the latest after this many entries */
#define SRV_COMMIT_MS      100   /* ... or this often */

void srv_commit(struct srv *s)
{
    uint64_t t0 = clock_now_ns();
    ms_err e = be_txn_commit(s->wtxn);
    s->wtxn = NULL;
    if (e)
        ms_fatal("backend commit failed: %s", ms_err_name(e));
    if ((e = be_txn_begin(s->be, NULL, true, &s->wtxn)) != MS_OK)
        ms_fatal("cannot begin a backend transaction: %s", ms_err_name(e));
    metrics_hist_observe(&s->ctr.backend_commit_seconds, (double)(clock_now_ns() - t0) / 1e9);
    s->ctr.backend_commits++;
    if (!s->lazy_commit)
        return;
    /* LMDB now holds everything applied durably: WAL segments below it can go. */
    s->committed = s->applied;
    /* The entry at the committed index stays: its term is the log's base at the next start. */
    if (s->node.wal && (e = wal_release_before(s->node.wal, s->committed)) != MS_OK)
        log_warn("wal: releasing old segments failed: %s", ms_err_name(e));
}

void srv_on_commit(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    if (s->applied > s->committed)
        srv_commit(s);
}

/* After applying up to s->applied: commit now or arm the timer. */
static void maybe_commit(struct srv *s)
{
    if (!s->lazy_commit) {
        srv_commit(s);
        return;
    }
    if (s->applied - s->committed >= SRV_COMMIT_ENTRIES) {
        srv_commit(s);
        return;
    }
    if (!evtimer_pending(s->commit_ev, NULL)) {
        struct timeval tv = {0, SRV_COMMIT_MS * 1000};
        evtimer_add(s->commit_ev, &tv);
    }
}

/* The batch up to index (of term) is applied: record it in the same txn as its changes. */
static void put_consistent_index(struct srv *s, uint64_t index, uint64_t term)
{
    ms_err e = be_put_u64(s->wtxn, BE_BUCKET_META, SRV_META_CONSISTENT_INDEX, index);
    if (!e)
        e = be_put_u64(s->wtxn, BE_BUCKET_META, SRV_META_CONSISTENT_TERM, term);
    if (e)
        ms_fatal("cannot record the applied index: %s", ms_err_name(e));
    s->applied = index;
    s->applied_term = term;
}

void srv_check_apply_error(ms_err e)
{
    /* Requests are checked before anything is written (as etcd's apply does), so an error
     * here is either a client error with nothing written, or the backend failing under us,
     * after which the store's state is unknown: stop, as etcd does. The WAL replays the
     * entry at the next start. */
    switch (e) {
    case MS_E_NOMEM:
    case MS_E_NO_SPACE:
    case MS_E_IO:
    case MS_E_DATA_CORRUPT:
    case MS_E_INTERNAL:
        ms_fatal("applying an entry failed in the backend: %s", ms_err_name(e));
    default:
        return;
    }
}

ms_err srv_apply(struct srv *s, uint64_t index, const struct srv_req *req, struct srv_result *res)
{
    ms_err e;
    (void)index;
    memset(res, 0, sizeof(*res));
    res->type = req->type;
    if (req->type == SRV_REQ_ALARM) {
        res->revision = kv_current_rev(s->kv);
        return srv_apply_alarm(s, &req->u.alarm, &res->u.alarm);
    }
    /* While NOSPACE is raised, writes that add data fail (etcd applierV3Capped). */
    if (srv_has_alarm(s, SRV_ALARM_NOSPACE) && srv_request_cost(req) > 0)
        return MS_E_NO_SPACE;
    if (req->type == SRV_REQ_LEASE_GRANT) {
        res->revision = kv_current_rev(s->kv);
        return srv_apply_lease_grant(s, &req->u.lease, &res->u.lease);
    }
    if (req->type == SRV_REQ_LEASE_REVOKE) {
        res->revision = kv_current_rev(s->kv);
        return srv_apply_lease_revoke(s, &req->u.lease, &res->revision);
    }
    if (req->type == SRV_REQ_COMPACT) {
        e = kv_compact(s->kv, s->wtxn, req->u.compact.revision);
        res->revision = kv_current_rev(s->kv);
        if (!e) {
            struct timeval now = {0, 0};
            evtimer_add(s->compact_ev, &now);
        }
        return e;
    }
    struct kv_write *w;
    if ((e = kv_write_begin(s->kv, s->wtxn, s->scratch, &w)) != MS_OK)
        return e;
    switch (req->type) {
    case SRV_REQ_PUT:
        e = kv_write_put(w, &req->u.put, &res->u.put);
        break;
    case SRV_REQ_DELETE:
        e = kv_write_del(w, &req->u.del, &res->u.del);
        break;
    case SRV_REQ_TXN:
        e = kv_write_txn(w, &req->u.txn, &res->u.txn);
        break;
    default:
        e = MS_E_BAD_REQUEST;
        break;
    }
    if ((e = srv_write_finish(s, w, e)) == MS_OK)
        res->revision = kv_current_rev(s->kv);
    return e;
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
        srv_lease_events(s, ev, n_ev);
        srv_events_applied(s, kv_current_rev(s->kv), ev, n_ev);
    }
    return MS_OK;
}


static void push_done(struct srv *s, uint64_t id, ms_err err, struct srv_result *res)
{
    struct srv_done *d = ms_grow(s->dones, &s->cap_dones, s->n_dones + 1, sizeof(*d), 64);
    if (!d) {
        /* Cannot remember the completion: the caller gets an error now rather than never. */
        struct wait_entry we;
        if (wait_remove(&s->waits, id, &we) && we.done)
            we.done(we.ctx, MS_E_NOMEM, NULL);
        return;
    }
    s->dones = d;
    s->dones[s->n_dones++] = (struct srv_done){.id = id, .err = err, .res = res};
}

static void count_request(struct srv *s, const struct srv_req *req, ms_err e)
{
    s->ctr.proposals_applied++;
    if (e)
        s->ctr.proposals_failed++;
    switch (req->type) {
    case SRV_REQ_PUT:
        s->ctr.puts++;
        break;
    case SRV_REQ_DELETE:
        s->ctr.deletes++;
        break;
    case SRV_REQ_TXN:
        s->ctr.txns++;
        break;
    default:
        break;
    }
}

/* A normal entry: decode the request, apply it, and remember the answer for its writer. */
static void apply_request(struct srv *s, const struct raft_entry *ent)
{
    struct srv_req req;
    uint64_t id;
    struct srv_result local, *res = &local;
    if (!srv_entry_decode(ent->data, ent->len, s->scratch, &id, &req))
        ms_fatal("log entry %llu does not decode", (unsigned long long)ent->index);
    if (wait_find(&s->waits, id)) {
        res = arena_alloc(s->scratch, sizeof(*res));
        if (!res)
            res = &local;
    }
    ms_err e = srv_apply(s, ent->index, &req, res);
    count_request(s, &req, e);
    if (res == &local) {
        if (wait_find(&s->waits, id))
            push_done(s, id, MS_E_NOMEM, NULL);
        return;
    }
    if (req.type == SRV_REQ_COMPACT && !e && req.u.compact.physical && kv_compact_pending(s->kv)) {
        /* Answer once the old records are gone (etcd waits for physical compaction). */
        if (srv_push_id(&s->compact_waiters, &s->n_compact_waiters, &s->cap_compact_waiters, id))
            return;
    }
    push_done(s, id, e, res);
}

/* A membership change takes effect when applied (RAFT.md §3.2 rule 4); the configuration it
 * leaves is recorded with the applied index, so a restart starts from it. */
static void apply_conf_change(struct srv *s, const struct raft_entry *ent)
{
    struct raft_conf_change cc;
    struct raft_conf_state cs;
    if (raft_cc_decode(ent->data, ent->len, &cc) != MS_OK)
        ms_fatal("conf change entry %llu does not decode", (unsigned long long)ent->index);
    if (raft_apply_conf_change(s->node.raft, &cc, &cs) != MS_OK) {
        log_warn("conf change entry %llu (%d on %016llx) is refused: it would leave no voter",
                 (unsigned long long)ent->index, (int)cc.type, (unsigned long long)cc.node_id);
        return;
    }
    ms_err e = srv_conf_put(s->wtxn, &cs);
    if (e)
        ms_fatal("cannot record the configuration: %s", ms_err_name(e));
}

static void complete_dones(struct srv *s)
{
    for (size_t i = 0; i < s->n_dones; i++) {
        struct wait_entry we;
        if (!wait_remove(&s->waits, s->dones[i].id, &we) || !we.done)
            continue;
        if (we.fail)
            we.done(we.ctx, we.fail, NULL);
        else
            we.done(we.ctx, s->dones[i].err, s->dones[i].err ? NULL : s->dones[i].res);
    }
    s->n_dones = 0;
}

void srv_apply_committed(struct srv *s, const struct raft_entry *ents, size_t n)
{
    size_t applied = 0;
    for (size_t i = 0; i < n; i++) {
        const struct raft_entry *ent = &ents[i];
        if (ent->index <= s->applied)
            continue; /* the bootstrap's entries come back once they are persisted */
        if (ent->type == RAFT_ENTRY_CONF_CHANGE)
            apply_conf_change(s, ent);
        else if (ent->len)
            apply_request(s, ent); /* empty entries are a new leader's no-op */
        applied++;
    }
    if (!applied)
        return;
    s->ctr.proposals_committed += applied;
    put_consistent_index(s, ents[n - 1].index, ents[n - 1].term);
    maybe_commit(s);
    complete_dones(s);
}

ms_err srv_conf_put(struct be_txn *t, const struct raft_conf_state *cs)
{
    struct buf b;
    buf_init(&b);
    struct raft_snapshot_meta m = {.conf = *cs};
    raft_snapshot_meta_encode(&m, &b);
    ms_err e = buf_failed(&b) ? MS_E_NOMEM
                              : be_put(t, BE_BUCKET_META, (const uint8_t *)SRV_META_CONF_STATE,
                                       strlen(SRV_META_CONF_STATE), b.p, b.len);
    buf_fini(&b);
    return e;
}

ms_err srv_conf_get(struct be_txn *t, struct raft_conf_state *cs, bool *found)
{
    struct be_val v;
    struct raft_snapshot_meta m;
    ms_err e = be_get(t, BE_BUCKET_META, (const uint8_t *)SRV_META_CONF_STATE,
                      strlen(SRV_META_CONF_STATE), &v);
    *found = false;
    if (e == MS_E_NOT_EXIST)
        return MS_OK;
    if (e)
        return e;
    *found = true;
    if (raft_snapshot_meta_decode(v.p, v.len, &m) != MS_OK)
        return MS_E_DATA_CORRUPT;
    *cs = m.conf;
    return MS_OK;
}
void srv_on_compact(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    ms_err e;
    if (srv_copy_running(s)) {
        /* Records a copy still has to read must stay: resume once it is done. */
        struct timeval later = {0, 10000};
        evtimer_add(s->compact_ev, &later);
        return;
    }
    bool done = kv_compact_step(s->kv, s->wtxn, COMPACT_BUDGET, &e);
    if (e)
        ms_fatal("compaction failed: %s", ms_err_name(e));
    if (!done) {
        struct timeval now = {0, 0};
        evtimer_add(s->compact_ev, &now);
        return;
    }
    srv_commit(s);
    for (size_t i = 0; i < s->n_compact_waiters; i++) {
        struct wait_entry we;
        if (!wait_remove(&s->waits, s->compact_waiters[i], &we) || !we.done)
            continue;
        struct srv_result res = {.type = SRV_REQ_COMPACT, .revision = kv_current_rev(s->kv)};
        we.done(we.ctx, MS_OK, &res);
    }
    s->n_compact_waiters = 0;
}

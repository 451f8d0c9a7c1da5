/* srv_ready.c - the once-per-turn ready step (DESIGN.md §1) and the apply of entries.
 *
 * Order inside one step: take the batch of proposals and append them to the WAL with the hard
 * state. If no sync is in flight, write them and start one fdatasync for everything unsynced
 * (the durability point: group commit); then serve the reads queued before the step. Reads
 * never wait for a sync: every write already answered is applied. When the sync completes
 * (srv_on_synced; at once where syncs cannot be asynchronous), apply its entries in index
 * order inside the write txn (each entry in a nested txn, so a failed entry leaves nothing
 * behind) with the consistent index, complete their writers, and start the next sync for what
 * was appended meanwhile. Callbacks may submit new work: it lands in the next step.
 *
 * The backend txn is committed once per step on the memory backend (no I/O) and on a timer or
 * after SRV_COMMIT_ENTRIES entries on LMDB (its fsync is amortised; the WAL holds the entries
 * meanwhile). WAL segments are released only below what the backend holds durably.
 * The one-member log here is the seam the raft core replaces: it "commits" every proposal.
 */
#include "srv_int.h"

#include "metastore/grow.h"
#include "metastore/log.h"

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
    if (s->wal && (e = wal_release_before(s->wal, s->committed + 1)) != MS_OK)
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

static void put_consistent_index(struct srv *s, uint64_t index)
{
    ms_err e = be_put_u64(s->wtxn, BE_BUCKET_META, SRV_META_CONSISTENT_INDEX, index);
    if (e)
        ms_fatal("cannot record the applied index: %s", ms_err_name(e));
    s->applied = index;
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

ms_err srv_read(struct srv *s, const struct srv_req *req, struct srv_result *res)
{
    memset(res, 0, sizeof(*res));
    res->type = req->type;
    if (req->type == SRV_REQ_RANGE) {
        ms_err e = kv_range(s->kv, s->wtxn, &req->u.range, s->scratch, &res->u.range);
        res->revision = res->u.range.revision;
        return e;
    }
    /* A read-only txn: a write that changes nothing. */
    struct kv_write *w;
    ms_err e = kv_write_begin(s->kv, s->wtxn, s->scratch, &w);
    if (e)
        return e;
    e = kv_write_txn(w, &req->u.txn, &res->u.txn);
    if (e) {
        kv_write_abort(w);
        return e;
    }
    struct kv_event *ev;
    size_t n_ev;
    kv_write_end(w, &ev, &n_ev);
    res->revision = res->u.txn.revision;
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

/* Append the batch and the hard state to the WAL (buffered) and queue it for the next sync.
 * The entries' bytes move to the unsynced queue. */
static void append_batch(struct srv *s, struct srv_entry *batch, size_t n)
{
    struct raft_entry *ents = arena_alloc(s->scratch, n * sizeof(*ents));
    if (!ents)
        ms_fatal("out of memory persisting %zu entries", n);
    for (size_t i = 0; i < n; i++)
        ents[i] = (struct raft_entry){.term = s->term,
                                      .index = batch[i].index,
                                      .type = RAFT_ENTRY_NORMAL,
                                      .len = batch[i].len,
                                      .data = batch[i].data};
    struct raft_hard_state hs = {
        .term = s->term, .vote = s->member_id, .commit = batch[n - 1].index};
    ms_err e = wal_append(s->wal, &hs, ents, n);
    if (e)
        ms_fatal("wal: cannot append entries %llu..%llu: %s", (unsigned long long)batch[0].index,
                 (unsigned long long)batch[n - 1].index, ms_err_name(e));
    struct srv_entry *v = ms_grow(s->unsynced, &s->cap_unsynced, s->n_unsynced + n, sizeof(*v), 64);
    if (!v)
        ms_fatal("out of memory queueing %zu entries", n);
    s->unsynced = v;
    memcpy(s->unsynced + s->n_unsynced, batch, n * sizeof(*batch));
    s->n_unsynced += n;
    s->ctr.ready_batches++;
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

ms_err srv_recover(struct srv *s, const struct wal_log *log)
{
    size_t replayed = 0;
    for (size_t i = 0; i < log->n_entries; i++) {
        const struct raft_entry *ent = &log->entries[i];
        if (ent->index <= s->applied || ent->type != RAFT_ENTRY_NORMAL || !ent->len)
            continue;
        struct srv_req req;
        struct srv_result res;
        uint64_t id;
        if (!srv_entry_decode(ent->data, ent->len, s->scratch, &id, &req)) {
            log_error("wal: entry %llu does not decode", (unsigned long long)ent->index);
            return MS_E_DATA_CORRUPT;
        }
        srv_apply(s, ent->index, &req, &res);
        put_consistent_index(s, ent->index);
        replayed++;
        if (replayed % 10000 == 0) {
            srv_commit(s);
            arena_reset(s->scratch);
        }
    }
    if (replayed)
        log_info("replayed %zu entries from the WAL up to index %llu", replayed,
                 (unsigned long long)s->applied);
    arena_reset(s->scratch);
    return MS_OK;
}

static void apply_batch(struct srv *s, struct srv_entry *batch, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct srv_req req;
        uint64_t id;
        struct srv_result local, *res = &local;
        if (!srv_entry_decode(batch[i].data, batch[i].len, s->scratch, &id, &req))
            ms_fatal("log entry %llu does not decode", (unsigned long long)batch[i].index);
        if (wait_find(&s->waits, id)) {
            res = arena_alloc(s->scratch, sizeof(*res));
            if (!res)
                res = &local;
        }
        ms_err e = srv_apply(s, batch[i].index, &req, res);
        put_consistent_index(s, batch[i].index);
        count_request(s, &req, e);
        if (res == &local) {
            if (wait_find(&s->waits, id))
                push_done(s, id, MS_E_NOMEM, NULL);
            continue;
        }
        if (req.type == SRV_REQ_COMPACT && !e && req.u.compact.physical &&
            kv_compact_pending(s->kv)) {
            /* Answer once the old records are gone (etcd waits for physical compaction). */
            if (srv_push_id(&s->compact_waiters, &s->n_compact_waiters, &s->cap_compact_waiters,
                            id))
                continue;
        }
        push_done(s, id, e, res);
    }
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

static void serve_reads(struct srv *s, const uint64_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct wait_entry we;
        if (!wait_remove(&s->waits, ids[i], &we) || !we.done)
            continue;
        struct srv_result res;
        ms_err e = srv_read(s, we.req, &res);
        s->ctr.ranges += we.req->type == SRV_REQ_RANGE;
        we.done(we.ctx, e, e ? NULL : &res);
    }
}

/* The first n unsynced entries are durable: apply them, answer their writers, drop them. */
static void apply_durable(struct srv *s, size_t n)
{
    s->ctr.proposals_committed += n;
    apply_batch(s, s->unsynced, n);
    maybe_commit(s);
    complete_dones(s);
    for (size_t i = 0; i < n; i++)
        free(s->unsynced[i].data);
    memmove(s->unsynced, s->unsynced + n, (s->n_unsynced - n) * sizeof(*s->unsynced));
    s->n_unsynced -= n;
}

/* Start the sync of every unsynced entry (none is in flight). Entries durable on return are
 * applied at once. */
static void sync_start(struct srv *s)
{
    if (!s->n_unsynced)
        return;
    bool started;
    ms_err e = wal_sync_begin(s->wal, &started);
    if (e)
        ms_fatal("wal: cannot persist entries %llu..%llu: %s",
                 (unsigned long long)s->unsynced[0].index,
                 (unsigned long long)s->unsynced[s->n_unsynced - 1].index, ms_err_name(e));
    if (started)
        s->n_in_flight = s->n_unsynced;
    else
        apply_durable(s, s->n_unsynced);
}

void srv_on_synced(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    bool done;
    ms_err e = wal_sync_end(s->wal, &done);
    if (e)
        ms_fatal("wal: cannot persist entries up to %llu: %s",
                 (unsigned long long)(s->n_in_flight ? s->unsynced[s->n_in_flight - 1].index : 0),
                 ms_err_name(e));
    if (!done || !s->n_in_flight)
        return;
    size_t n = s->n_in_flight;
    s->n_in_flight = 0;
    apply_durable(s, n);
    sync_start(s);
    arena_reset(s->scratch);
    srv_copy_poll(s);
}

void srv_on_ready(evutil_socket_t fd, short what, void *arg)
{
    struct srv *s = arg;
    (void)fd;
    (void)what;
    s->ready_pending = false;

    /* Take this turn's batch; callbacks below may submit into fresh arrays. */
    struct srv_entry *batch = s->log;
    size_t n_batch = s->n_log;
    uint64_t *reads = s->reads;
    size_t n_reads = s->n_reads;
    s->log = NULL;
    s->n_log = s->cap_log = 0;
    s->reads = NULL;
    s->n_reads = s->cap_reads = 0;

    if (n_batch) {
        append_batch(s, batch, n_batch);
        if (!s->n_in_flight)
            sync_start(s);
    }
    serve_reads(s, reads, n_reads);

    free(batch);
    free(reads);
    arena_reset(s->scratch);
    srv_copy_poll(s);
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

/* srv_read.c - reads: ranges and read-only txns, queued by srv_submit and served by the ready
 * step (RAFT.md §3.6).
 *
 * A single voter serves a linearizable read at the end of the step that follows it, from the
 * applied state: every write that was answered is applied, so a read that starts after an
 * answer sees it. Reads queued during a step wait for the next one.
 *
 * A member with peers parks each step's linearizable reads as one batch, tagged with a ReadIndex
 * context the node hands to the core (etcd batches its reads the same way). One round at a
 * time, as etcd's linearizableReadLoop: batches parked while a round is under way wait, then
 * ask together with one context when it ends (confirmed, failed or expired), so that a round
 * serves every read that arrived during the one before. Each batch keeps its own deadline. When the
 * core confirms the context with the commit index a quorum acknowledged, the batch is served as
 * soon as this member has applied up to that index. A batch not confirmed within
 * SRV_READ_RETRY_MS is asked for again (etcd readIndexRetryTime), one unconfirmed when the
 * leader changes fails with "leader changed", and one older than the request timeout fails with
 * "request timed out". A serializable range is answered from the local state at once.
 */
#include "srv_int.h"

#include "metastore/grow.h"

#include <stdlib.h>
#include <string.h>

struct srv_read_batch {
    struct srv_read_batch *next;
    uint64_t ctx;   /* with asked; batches asked together share it */
    uint64_t index; /* confirmed commit index, with confirmed */
    bool asked;     /* its ReadIndex was requested */
    bool confirmed;
    uint64_t asked_ms; /* the ReadIndex request was last sent */
    uint64_t born_ms;
    uint64_t *ids;
    size_t n;
};

static ms_err read_now(struct srv *s, const struct srv_req *req, struct srv_result *res)
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

/* Answer the reader of id (if it still waits) from the applied state. */
static void serve_one(struct srv *s, uint64_t id)
{
    struct wait_entry we;
    if (!wait_remove(&s->waits, id, &we) || !we.done)
        return;
    struct srv_result res;
    ms_err e = read_now(s, we.req, &res);
    s->ctr.ranges += we.req->type == SRV_REQ_RANGE;
    we.done(we.ctx, e, e ? NULL : &res);
}

static void fail_ids(struct srv *s, const uint64_t *ids, size_t n, ms_err err)
{
    for (size_t i = 0; i < n; i++) {
        struct wait_entry we;
        if (wait_remove(&s->waits, ids[i], &we) && we.done)
            we.done(we.ctx, err, NULL);
    }
}

bool srv_reads_push(struct srv *s, uint64_t id)
{
    return srv_push_id(&s->reads.ids, &s->reads.n, &s->reads.cap, id);
}

void srv_reads_take(struct srv *s, struct srv_reads *out)
{
    out->ids = s->reads.ids;
    out->n = s->reads.n;
    out->cap = s->reads.cap;
    s->reads.ids = NULL;
    s->reads.n = s->reads.cap = 0;
}

void srv_reads_serve(struct srv *s, struct srv_reads *r)
{
    for (size_t i = 0; i < r->n; i++)
        serve_one(s, r->ids[i]);
    free(r->ids);
    r->ids = NULL;
    r->n = r->cap = 0;
}

bool srv_reads_park(struct srv *s, struct srv_reads *r, uint64_t ctx, uint64_t now_ms)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++) {
        struct wait_entry *we = wait_find(&s->waits, r->ids[i]);
        if (!we)
            continue; /* cancelled */
        if (we->req->type == SRV_REQ_RANGE && we->req->u.range.serializable)
            serve_one(s, r->ids[i]);
        else
            r->ids[n++] = r->ids[i];
    }
    struct srv_read_batch *b = n ? calloc(1, sizeof(*b)) : NULL;
    if (!b) {
        fail_ids(s, r->ids, n, MS_E_NOMEM);
        free(r->ids);
    } else {
        b->born_ms = now_ms;
        b->ids = r->ids;
        b->n = n;
        s->reads.n_unasked++;
        if (s->reads.tail)
            s->reads.tail->next = b;
        else
            s->reads.head = b;
        s->reads.tail = b;
    }
    r->ids = NULL;
    r->n = r->cap = 0;
    /* One round at a time: batches parked while one is under way wait for it to end, then
     * ask together, so that a round serves every read that arrived during the one before. */
    if (s->reads.n_asking || !s->reads.n_unasked)
        return false;
    for (b = s->reads.head; b; b = b->next)
        if (!b->asked) {
            b->asked = true;
            b->ctx = ctx;
            b->asked_ms = now_ms;
        }
    s->reads.n_asking = s->reads.n_unasked;
    s->reads.n_unasked = 0;
    return true;
}

void srv_reads_confirm(struct srv *s, uint64_t ctx, uint64_t index)
{
    for (struct srv_read_batch *b = s->reads.head; b; b = b->next)
        if (b->asked && b->ctx == ctx && !b->confirmed) {
            b->confirmed = true;
            b->index = index;
            s->reads.n_asking--;
        }
}

/* Unlink and free the batches done() picks: their readers are served (err MS_OK) or get err. */
static void sweep(struct srv *s, bool (*done)(struct srv *, const struct srv_read_batch *, void *),
                  void *arg, ms_err err)
{
    struct srv_read_batch **pp = &s->reads.head, *last = NULL;
    while (*pp) {
        struct srv_read_batch *b = *pp;
        if (!done(s, b, arg)) {
            last = b;
            pp = &b->next;
            continue;
        }
        *pp = b->next;
        if (!b->asked)
            s->reads.n_unasked--;
        else if (!b->confirmed)
            s->reads.n_asking--;
        if (err)
            fail_ids(s, b->ids, b->n, err);
        else
            for (size_t i = 0; i < b->n; i++)
                serve_one(s, b->ids[i]);
        free(b->ids);
        free(b);
    }
    s->reads.tail = last;
}

static bool is_servable(struct srv *s, const struct srv_read_batch *b, void *arg)
{
    (void)arg;
    return b->confirmed && b->index <= srv_applied(s);
}

static bool is_unconfirmed(struct srv *s, const struct srv_read_batch *b, void *arg)
{
    (void)s;
    (void)arg;
    return b->asked && !b->confirmed;
}

static bool is_old(struct srv *s, const struct srv_read_batch *b, void *arg)
{
    (void)s;
    return b->born_ms <= *(const uint64_t *)arg;
}

void srv_reads_serve_applied(struct srv *s)
{
    if (s->reads.head)
        sweep(s, is_servable, NULL, MS_OK);
}

void srv_reads_leader_changed(struct srv *s)
{
    if (s->reads.head)
        sweep(s, is_unconfirmed, NULL, MS_E_LEADER_CHANGED);
}

size_t srv_reads_due(struct srv *s, uint64_t now_ms, uint64_t *ctxs, size_t max)
{
    size_t n = 0;
    for (struct srv_read_batch *b = s->reads.head; b; b = b->next) {
        if (!b->asked || b->confirmed || b->asked_ms + SRV_READ_RETRY_MS > now_ms)
            continue;
        if (n && ctxs[n - 1] == b->ctx) {
            b->asked_ms = now_ms; /* asked together with the one before */
            continue;
        }
        if (n == max)
            break;
        b->asked_ms = now_ms;
        ctxs[n++] = b->ctx;
    }
    return n;
}

void srv_reads_expire(struct srv *s, uint64_t now_ms, uint64_t timeout_ms)
{
    if (s->reads.head && now_ms >= timeout_ms) {
        uint64_t born_before = now_ms - timeout_ms;
        sweep(s, is_old, &born_before, MS_E_TIMEOUT);
    }
}

bool srv_reads_may_ask(const struct srv *s)
{
    return !s->reads.n_asking && s->reads.n_unasked;
}

bool srv_reads_waiting(const struct srv *s)
{
    return s->reads.head != NULL;
}

void srv_reads_fini(struct srv *s)
{
    /* The server is going away: callers are dropped without a call (srv_destroy). */
    while (s->reads.head) {
        struct srv_read_batch *b = s->reads.head;
        s->reads.head = b->next;
        free(b->ids);
        free(b);
    }
    free(s->reads.ids);
    memset(&s->reads, 0, sizeof(s->reads));
}

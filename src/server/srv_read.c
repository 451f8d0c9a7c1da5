/* srv_read.c - reads: ranges and read-only txns, queued by srv_submit and served at the end of
 * the ready step.
 *
 * A single voter serves a linearizable read at once, from the applied state: every write that
 * was answered is applied, so a read that starts after an answer sees it. Reads queued during
 * a step wait for the next one (they are taken at its start). With peers, a read will wait here
 * for its ReadIndex instead (RAFT.md §3.6).
 */
#include "srv_int.h"

#include <stdlib.h>
#include <string.h>

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

bool srv_reads_push(struct srv *s, uint64_t id)
{
    return srv_push_id(&s->reads.ids, &s->reads.n, &s->reads.cap, id);
}

void srv_reads_take(struct srv *s, struct srv_reads *out)
{
    *out = s->reads;
    memset(&s->reads, 0, sizeof(s->reads));
}

void srv_reads_serve(struct srv *s, struct srv_reads *r)
{
    for (size_t i = 0; i < r->n; i++) {
        struct wait_entry we;
        if (!wait_remove(&s->waits, r->ids[i], &we) || !we.done)
            continue;
        struct srv_result res;
        ms_err e = read_now(s, we.req, &res);
        s->ctr.ranges += we.req->type == SRV_REQ_RANGE;
        we.done(we.ctx, e, e ? NULL : &res);
    }
    free(r->ids);
    memset(r, 0, sizeof(*r));
}

void srv_reads_fini(struct srv *s)
{
    free(s->reads.ids);
    memset(&s->reads, 0, sizeof(s->reads));
}
